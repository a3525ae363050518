"""The measurement protocol: warm-up, interleaved rounds over every runner, repeat until the estimate is stable.

Drift on a shared machine (frequency, a neighbour's load) then hits every unit alike, and a unit is never
measured in one burst. Each (runner, round) batch of timed runs is handed to ``on_batch`` so a caller can store it
and a killed measurement loses at most the batch in flight.

Rounds also go on until the measurement has spanned ``min_span_s`` seconds: a shared VM's speed can switch between
states every few seconds (one network read 0.18 ms and 0.28 ms in alternate seconds on the 2-core development VM),
and a measurement shorter than that sees one state only, whichever it was. On such a day the demo's tiny-space
profile, 3-6 rounds in about a second, re-measured its held-out networks 31-61% apart and missed them by 15-16%;
the same rounds made to span 10 s: 0.7% apart and 1.5% off, for 10 s more.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from profilers.stats import STATISTICS, LatencyStats

Runner = Callable[[], object]


@dataclass(frozen=True)
class Protocol:
    """How latency is measured; recorded with every table so numbers can be compared like for like."""

    warmup_runs: int = 10
    runs_per_round: int = 100
    round_budget_s: float = 0.25
    min_runs_per_round: int = 10
    min_rounds: int = 5
    max_rounds: int = 10
    rel_tol: float = 0.01
    statistic: str = "p10"
    seed: int = 0
    min_span_s: float = 10.0
    span_max_rounds: int = 100

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {self.statistic!r}; choose one of: {', '.join(STATISTICS)}")
        if not 1 <= self.min_rounds <= self.max_rounds or self.runs_per_round < 1 or self.min_runs_per_round < 1:
            raise ValueError(f"protocol needs 1 <= min_rounds <= max_rounds and runs >= 1, got {self}")
        if not self.min_span_s >= 0 or self.span_max_rounds < self.max_rounds:
            raise ValueError(f"protocol needs min_span_s >= 0 seconds and span_max_rounds >= max_rounds, got {self}")

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return asdict(self)

    @staticmethod
    def quick() -> Protocol:
        """A short protocol for tests and smoke runs (numbers are noisier)."""
        return Protocol(warmup_runs=3, runs_per_round=20, round_budget_s=0.02, min_runs_per_round=5,
                        min_rounds=2, max_rounds=3, rel_tol=0.05, min_span_s=0.0)


def _time_batch(runner: Runner, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        runner()
        times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def measure(
    runners: Mapping[str, Runner],
    protocol: Protocol,
    done: Mapping[str, list[list[float]]] | None = None,
    on_batch: Callable[[str, int, list[float]], None] | None = None,
    on_round: Callable[[int, int], None] | None = None,
) -> dict[str, LatencyStats]:
    """Measure every runner under ``protocol``; ``done`` holds batches already measured (for resume).

    Returns the statistics of every runner. ``on_batch(key, round, times_ms)`` sees each new batch;
    ``on_round(round, total)`` is told when a round ends (``total``: ``max_rounds``, or the rounds made so far when
    short rounds went past it to span ``min_span_s``).
    """
    runs: dict[str, int] = {}
    for key, runner in runners.items():
        warm = _time_batch(runner, protocol.warmup_runs)
        typical = sorted(warm)[len(warm) // 2] / 1e3 if warm else 1e-3
        budgeted = int(protocol.round_budget_s / max(typical, 1e-6))
        runs[key] = max(protocol.min_runs_per_round, min(protocol.runs_per_round, budgeted))
    timers = {key: (lambda n, r=runner: _time_batch(r, n)) for key, runner in runners.items()}
    return measure_batches(timers, runs, protocol, done, on_batch, on_round)


def measure_batches(
    timers: Mapping[str, Callable[[int], list[float]]],
    runs: Mapping[str, int],
    protocol: Protocol,
    done: Mapping[str, list[list[float]]] | None = None,
    on_batch: Callable[[str, int, list[float]], None] | None = None,
    on_round: Callable[[int, int], None] | None = None,
    rng: random.Random | None = None,
) -> dict[str, LatencyStats]:
    """The rounds of the protocol over batch timers (``timer(n)`` times ``n`` runs and returns their ms): every
    round visits every key once in a shuffled order, until the statistic is stable (after ``min_rounds``) or
    ``max_rounds`` were made, but never before the batches timed in this call span ``min_span_s`` seconds: short
    rounds go on past ``max_rounds`` until then, up to ``span_max_rounds``. Long rounds (a large space, a phone) span
    it in one round and keep the 5-10 rounds. Rounds restored from ``done`` never end it early: a resumed measurement
    still spans ``min_span_s`` of fresh timing."""
    batches: dict[str, list[list[float]]] = {key: [list(b) for b in (done or {}).get(key, [])] for key in timers}
    rng = rng or random.Random(protocol.seed)
    previous: dict[str, float] = {}
    first_fresh: float | None = None
    for round_index in range(protocol.span_max_rounds):
        order = list(timers)
        rng.shuffle(order)
        for key in order:
            if len(batches[key]) > round_index:
                continue  # measured before a restart
            if first_fresh is None:
                first_fresh = time.monotonic()
            times = timers[key](runs[key])
            batches[key].append(times)
            if on_batch is not None:
                on_batch(key, round_index, times)
        made = round_index + 1
        if on_round is not None:
            on_round(made, max(made, protocol.max_rounds))  # short rounds may go past max_rounds
        current = {key: _stat(batches[key], protocol.statistic) for key in timers}
        spanned = protocol.min_span_s == 0 or (
            first_fresh is not None and time.monotonic() - first_fresh >= protocol.min_span_s)
        stable = made >= protocol.min_rounds and bool(previous) and all(
            abs(current[k] - previous[k]) <= protocol.rel_tol * previous[k] for k in timers)
        if spanned and (made >= protocol.max_rounds or stable):
            break
        previous = current
    return {key: LatencyStats.of([t for batch in batches[key] for t in batch]) for key in timers}


def _stat(batches: list[list[float]], statistic: str) -> float:
    return LatencyStats.of([t for batch in batches for t in batch]).get(statistic)
