"""Atomic file writes: a reader (or a killed writer) never sees half a file."""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_host()}~{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _host() -> str:
    """This host's name as temporary names carry it (with the writer's pid: who may still be writing the file)."""
    return socket.gethostname().replace(".", "-").replace("~", "-")


STALE_AFTER_S = 24 * 3600  # another host's temporary file this old is left over from a killed write


def remove_stale_temporaries(folder: Path, name: str | None = None) -> list[Path]:
    """Remove the temporary files that killed atomic writes (``atomic_write_bytes``) left below ``folder``: this
    host's whose writer process is gone, and another host's older than ``STALE_AFTER_S`` (a shared file system).
    With ``name``, only that file's temporaries directly in ``folder``. Returns what was removed."""
    removed = []
    host = _host()
    found = Path(folder).glob(f".{name}.*.tmp") if name else Path(folder).rglob(".*.tmp")
    for tmp in found:
        writer = next((part for part in tmp.name.split(".") if "~" in part), None)
        if writer is None:
            continue  # not an atomic write's temporary (the feature cache's builders clean their own)
        try:
            age = time.time() - tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        writer_host, _, pid = writer.rpartition("~")
        if age > STALE_AFTER_S or (writer_host == host and pid.isdigit() and not _alive(int(pid))):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_torch_save(payload: Any, path: Path) -> None:
    """``torch.save`` through a temporary file and an atomic rename (checkpoints survive a kill mid-write)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def strict(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, Infinity: not JSON) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict(item) for item in value]
    return value


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented, strict JSON (NaN and Infinity become null), atomically."""
    text = json.dumps(strict(payload), indent=2, default=str, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: Path, what: str) -> Any:
    """Read a JSON file; a missing or corrupt file raises an error naming ``what`` it should have been."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the {what} file")
    try:
        return json.loads(path.read_text(), parse_constant=_not_json)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a valid {what} (corrupt JSON: {error}); recreate it") from error
    except _NotJson as error:
        raise ValueError(f"{path} is not a valid {what} (it holds {error}, which JSON does not allow); recreate "
                         "it") from None


class _NotJson(ValueError):
    """NaN or Infinity in a file read as JSON."""


def _not_json(name: str) -> None:
    raise _NotJson(name)


def file_digest(path: Path) -> str:
    """Short sha256 of a file (ratings record the checkpoints they were made from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
