"""Kill a long command at a chosen point of its work: what every kill-and-resume test starts from."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable, Sequence


def kill_when(args: Sequence[str], ready: Callable[[], bool], timeout: float = 600, poll: float = 0.2,
              jitter: float = 0.3) -> None:
    """Run ``args``, poll ``ready()`` until it holds, the command ends or ``timeout`` s pass (a cap, not a speed
    target: a loaded machine is slow), then kill the command after a further 0-``jitter`` s (seeded) so the kill lands
    somewhere inside the next piece of work rather than between two."""
    process = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None and not ready():
        time.sleep(poll)
    time.sleep(random.Random(0).uniform(0, jitter))
    process.kill()
    process.wait()
