"""A real PostgreSQL server for tests and benchmarks: the machine's own binaries (Debian's ``postgresql`` package, or
``initdb`` on PATH), a private data folder and port on loopback, stopped afterwards. ``why_not`` says why when none
can run."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def why_not() -> str | None:
    """None when a server can be started here, else the reason."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    if binaries() is None:
        return "no PostgreSQL server binaries (initdb) on this machine (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run the server as"
    return None


@contextlib.contextmanager
def start() -> Iterator[str]:
    """A running server with database ``hwnas``; yields its SQLAlchemy URL (psycopg driver)."""
    bin_dir = binaries()
    folder = Path(tempfile.mkdtemp(prefix="hwnas-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
        entry = pwd.getpwnam("postgres")
        os.chmod(folder, 0o755)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    run = lambda *args: subprocess.run([*as_user, *args], check=True, capture_output=True, text=True,  # noqa: E731
                                       timeout=120)
    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "hwnas", "--no-sync")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w", "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=hwnas dbname=postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE hwnas")
        yield f"postgresql+psycopg://hwnas@127.0.0.1:{port}/hwnas"
    finally:
        with contextlib.suppress(Exception):
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)
