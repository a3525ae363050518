"""Block supernets shared among workers: each (seed, block) is trained by whoever holds its claim.

A claim is an exclusive ``flock`` on ``supernet/blockN.lock`` in the run folder, so workers on one machine or on
several machines sharing the run folder (NFS v4 and other file systems with POSIX locks) never train the same block
at once. The lock file names its holder (``host:pid``) for the messages of those waiting. A worker killed mid-block
lets go of its claim with its process; its last epoch checkpoint stays, and the next worker to claim the block
resumes from it.

``hwnas distill --block any`` starts a worker that takes the next unclaimed, unfinished block of every seed, waits
while the only unfinished blocks are claimed by others (one of them may die), and stops when all are trained.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

POLL_S = 2.0
T = TypeVar("T")


def holder_of(lock: Path) -> str:
    """Who holds (or last held) a claim, as its lock file says."""
    try:
        return lock.read_text().strip() or "another worker"
    except OSError:
        return "another worker"


@contextlib.contextmanager
def claim(lock: Path, wait: bool = True, what: str = "") -> Iterator[bool]:
    """Hold the claim ``lock`` for the ``with`` body; yields True when held. With ``wait`` it blocks until the
    holder lets go (saying so once); without, it yields False at once when another worker holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as handle:
        held = _try(handle)
        if not held and wait:
            log.info("%s is being trained by %s: waiting for it", what or lock.name, holder_of(lock))
            fcntl.flock(handle, fcntl.LOCK_EX)
            held = True
        if held:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{socket.gethostname()}:{os.getpid()}\n")
            handle.flush()
        try:
            yield held
        finally:
            if held and fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _try(handle: Any) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass(frozen=True)
class Job:
    """One block of one distillation seed: its claim's lock file and whether it is already trained."""

    name: str
    lock: Path
    done: Callable[[], bool]
    ready: Callable[[], bool] = lambda: True  # whether it can start now (a teacher-free block: its predecessors done)


def take_any(jobs: Sequence[Job], train: Callable[[int], T], poll_s: float = POLL_S) -> list[T]:
    """Train every job not yet done, each under its claim, skipping those other workers hold; wait (polling) while
    only claimed jobs are left. Returns what ``train(index)`` returned for the jobs this worker trained."""
    results: list[T] = []
    waiting_said = False
    while True:
        left = [i for i, job in enumerate(jobs) if not job.done()]
        if not left:
            return results
        took = False
        for index in [i for i in left if jobs[i].ready()]:
            with claim(jobs[index].lock, wait=False) as held:
                if held and not jobs[index].done():
                    results.append(train(index))
                    took = True
        if not took:
            if not waiting_said:
                log.info("every unfinished block is being trained by another worker (%s) or waits for the blocks "
                         "before it: waiting",
                         ", ".join(f"{jobs[i].name} by {holder_of(jobs[i].lock)}" for i in left))
                waiting_said = True
            time.sleep(poll_s)
