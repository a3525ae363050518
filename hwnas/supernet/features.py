"""Teacher features at every block boundary, computed on the fly or read from a memory-mapped disk cache.

The cache holds, per split, one ``.npy`` file per boundary (stem output, then each stage's output) in the split's
fixed order, written once (atomically, marked complete by ``done.json``, which records the teacher's weights digest);
later epochs index into it and never run the teacher. A cache written by other teacher weights (the teacher trained
again or replaced) is rebuilt. Processes sharing a cache (blocks distilled in parallel) take a lock on the split's
folder while they check and build it: one builds, the others wait and read. It is exact when the training data are
not augmented (the embedded default).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from hwnas.data import DataBundle
from hwnas.supernet.teacher import BlockTeacher
from profilers.files import atomic_write_json
from profilers.progress import progress

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; each process builds into its own temporary files
    fcntl = None  # type: ignore[assignment]


log = logging.getLogger(__name__)


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``folder`` (a ``.lock`` file in it), held for the ``with`` body; blocks until
    another process holding it lets go."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


class TeacherFeatures:
    """Boundary ``k`` features (k = 0 stem output, k = i + 1 output of stage i) for sample indices of a split.

    The teacher runs on ``device``; features come back on that device when computed, on the CPU when cached."""

    def __init__(self, teacher: BlockTeacher, bundle: DataBundle, cache_dir: Path | None = None,
                 batch_size: int = 128, show_progress: bool = True, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.teacher = teacher.to(self.device).eval()
        self.bundle = bundle
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._maps: dict[str, list[np.ndarray]] = {}
        self.teacher_digest = self.teacher.digest()
        self.built: list[str] = []  # the splits whose cache this instance computed (others found it complete)

    def size(self, split: str) -> int:
        """Number of samples in a split."""
        return len(self.bundle.datasets[split])

    def images(self, split: str, indices: torch.Tensor) -> torch.Tensor:
        """The input images of the given samples, on the teacher's device."""
        dataset = self.bundle.datasets[split]
        return torch.stack([dataset[int(i)][0] for i in indices]).to(self.device)

    @torch.no_grad()
    def get(self, split: str, boundary: int, indices: torch.Tensor) -> torch.Tensor:
        """Features at ``boundary`` for ``indices`` of ``split``."""
        if self.cache_dir is not None:
            maps = self._cached(split)
            order = np.asarray(indices)
            return torch.from_numpy(np.ascontiguousarray(maps[boundary][order]))
        h = self.teacher.stem(self.images(split, indices))
        for stage in list(self.teacher.stages)[:boundary]:
            h = stage(h)
        return h

    def pair(self, split: str, block: int, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, target) of block ``block``: the teacher's features before and after its stage."""
        if self.cache_dir is not None:
            return self.get(split, block, indices), self.get(split, block + 1, indices)
        with torch.no_grad():
            h = self.teacher.stem(self.images(split, indices))
            for stage in list(self.teacher.stages)[:block]:
                h = stage(h)
            return h, self.teacher.stages[block](h)

    def _cached(self, split: str) -> list[np.ndarray]:
        if split not in self._maps:
            folder = self.cache_dir / split
            done = folder / "done.json"
            with folder_lock(folder):
                if not done.exists() or json.loads(done.read_text()).get("teacher") != self.teacher_digest:
                    if done.exists():
                        if self.show_progress:
                            log.info("teacher cache (%s): written by other teacher weights; computing it again",
                                     split)
                        done.unlink()
                    self._build(split, folder)
                    self.built.append(split)
                count = json.loads(done.read_text())["boundaries"]
                self._maps[split] = [np.load(folder / f"boundary_{k}.npy", mmap_mode="r") for k in range(count)]
        return self._maps[split]

    @torch.no_grad()
    def _build(self, split: str, folder: Path) -> None:
        """Compute the split's features into the folder; called with the folder's lock held (which created it)."""
        for stale in folder.glob(".boundary_*.npy.tmp"):  # left by a builder that was killed (the lock is ours)
            stale.unlink()
        total = self.size(split)
        maps: list[np.ndarray] = []
        bar = progress(total=total, desc=f"teacher cache ({split})", unit="img", disable=not self.show_progress)
        for start in range(0, total, self.batch_size):
            indices = torch.arange(start, min(start + self.batch_size, total))
            features = self.teacher.features(self.images(split, indices))
            if not maps:
                maps = [np.lib.format.open_memmap(folder / f".boundary_{k}.{os.getpid()}.npy.tmp", mode="w+",
                                                  dtype=np.float32, shape=(total, *f.shape[1:]))
                        for k, f in enumerate(features)]
            for target, feature in zip(maps, features):
                target[start:start + len(indices)] = feature.cpu().numpy()
            bar.update(len(indices))
        bar.close()
        for k, target in enumerate(maps):
            target.flush()
            (folder / f".boundary_{k}.{os.getpid()}.npy.tmp").replace(folder / f"boundary_{k}.npy")
        atomic_write_json(folder / "done.json", {"boundaries": len(maps), "samples": total,
                                                 "teacher": self.teacher_digest})
