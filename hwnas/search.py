"""Search under a budget: the exact combiner over the latency table, then Optuna with real measurements.

1. The combiner gives the exact optimum of the summed block ratings under the predicted budget, and the whole front.
2. Optuna refines near the budget: the study is seeded with the combiner's best points under the budget (enqueued),
   each block's choice is a categorical over a neighbourhood (the candidates on that block's Pareto fronts plus the
   seeds'), the objective is the rating and the constraint is the latency *measured* on the target. The study lives
   in SQLite in the run directory (resumable) or any RDB URL (``--storage``) that several workers share. A trial
   whose measurement fails is recorded as failed with its error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.combiner import Combiner, FrontPoint
from profilers import Protocol, Runtime
from profilers.predictor import LatencyPredictor
from search_spaces import LatencyUnit, SearchSpace, count_macs

OBJECTIVES = ("latency", "macs", "params")


@dataclass
class CostModel:
    """An additive cost over latency units and how a budget in user units maps to it."""

    name: str
    unit: str
    unit_cost: Callable[[LatencyUnit], float]
    base: float


def latency_cost(predictor: LatencyPredictor) -> CostModel:
    """Calibrated predicted latency, additive over units: the combiner's costs are predicted milliseconds."""
    return CostModel("latency", "ms", lambda u: predictor.calibrated_unit_cost(u.key), predictor.calibrated_base)


def counted_cost(space: SearchSpace, what: str) -> CostModel:
    """MACs or parameters (in millions), counted on each unit's module, as DNA searched by FLOPs/params."""
    if what not in ("macs", "params"):
        raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {what!r}")

    def cost(unit: LatencyUnit) -> float:
        module = space.build_unit(unit)
        if what == "params":
            return sum(p.numel() for p in module.parameters()) / 1e6
        return count_macs(module, space.unit_input(unit)) / 1e6

    return CostModel(what, f"M{what}", cost, 0.0)


def neighbourhood(combiner: Combiner, seeds: Sequence[FrontPoint]) -> list[list[str]]:
    """Per block: candidates on any of the block's per-state Pareto fronts, plus the seeds' choices."""
    space = combiner.space
    choices: list[dict[str, None]] = [dict() for _ in range(space.num_blocks)]
    for seed in seeds:
        for block, candidate in enumerate(space.blocks_of(seed.arch)):
            choices[block][str(candidate)] = None
    for block, table in enumerate(combiner.blocks):
        for per_output in table["per_state"].values():
            for indices, _, _ in per_output.values():
                for index in indices:
                    choices[block][str(table["candidates"][int(index)])] = None
    return [list(c) for c in choices]


def study_name(space: SearchSpace, table_path: Path, budget_ms: float, multi_objective: bool,
               ratings: Sequence[Mapping[str, float]]) -> str:
    """A study per (space, table, ratings, budget, mode), so reruns resume and workers meet.

    The ratings are part of the name: a study stores each trial's rating and searches a neighbourhood drawn from
    them, so after ``hwnas rate`` changes them (supernets trained further), or for another run sharing ``--storage``,
    resuming the old study would refine stale ratings. Such a search starts its own study; the old one stays."""
    table = hashlib.sha1(Path(table_path).read_bytes()).hexdigest()[:10]
    rated = hashlib.sha1(json.dumps([dict(sorted(block.items())) for block in ratings]).encode()).hexdigest()[:8]
    return f"{space.name}-{table}-r{rated}-{budget_ms:g}ms-{'nsga2' if multi_objective else 'tpe'}"


def refine(
    space: SearchSpace,
    combiner: Combiner,
    ratings: Sequence[dict[str, float]],
    budget_ms: float,
    measure: Callable[[Hashable], float],
    storage: str,
    name: str,
    trials: int,
    seeds: int = 5,
    multi_objective: bool = False,
    seed: int = 0,
    show_progress: bool = True,
) -> Any:
    """Run (or resume) the Optuna study up to ``trials`` finished trials; returns the study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    starts = combiner.near(budget_ms, min(seeds, trials))
    choices = neighbourhood(combiner, starts)

    # the latency constraint is set on each trial (Trial.set_constraint); both samplers read it from the trials
    if multi_objective:
        sampler: optuna.samplers.BaseSampler = optuna.samplers.NSGAIISampler(seed=seed)
        directions = ["minimize", "minimize"]
    else:
        sampler = optuna.samplers.TPESampler(seed=seed)
        directions = ["minimize"]
    study = _open_study(name, storage, sampler, directions)
    with _claim_lock(storage):
        if not study.trials:
            for point in starts:
                study.enqueue_trial({f"block{b}": str(c) for b, c in enumerate(space.blocks_of(point.arch))})

    def objective(trial: optuna.trial.Trial) -> float | tuple[float, float]:
        picked = [trial.suggest_categorical(f"block{b}", choices[b]) for b in range(space.num_blocks)]
        arch = space.parse("|".join(picked))
        rating = sum(ratings[b][p] for b, p in enumerate(picked))
        trial.set_user_attr("arch", str(arch))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("rating", rating)
        try:
            measured = measure(arch)
        except Exception as error:
            trial.set_user_attr("error", f"{type(error).__name__}: {error}")
            raise
        trial.set_user_attr("measured_ms", measured)
        trial.set_constraint("measured_ms_over_budget", measured - budget_ms)
        if show_progress:
            print(f"trial {trial.number}: rating {rating:.4f}, measured {measured:.3f} ms "
                  f"({'ok' if measured <= budget_ms else 'over budget'})", file=sys.stderr)
        return (rating, measured) if multi_objective else rating

    # ask/tell rather than study.optimize: asking pops an enqueued trial, and on SQLite (no row locks) two workers
    # can pop the same one and both tell it; the claim lock serialises asking. Workers stop when the study holds
    # ``trials`` finished trials (each worker's last trial may overshoot by one).
    while True:
        with _claim_lock(storage):
            if sum(t.state.is_finished() for t in study.get_trials(deepcopy=False)) >= trials:
                break
            trial = study.ask()
        try:
            value = objective(trial)
        except Exception:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        except BaseException:  # interrupted: record the trial as failed, then stop
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, value)
    return study


@contextlib.contextmanager
def _claim_lock(storage: str) -> Iterator[None]:
    """An exclusive lock beside a SQLite database file (workers on one machine); server databases lock rows."""
    prefix = "sqlite:///"
    if not storage.startswith(prefix) or storage == prefix:
        yield
        return
    import fcntl

    with open(f"{storage[len(prefix):]}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_study(name: str, storage: str, sampler: Any, directions: list[str], attempts: int = 5) -> Any:
    """Create or load the study; workers starting together against a new database race to create its schema, and
    the loser retries once the winner's schema is there."""
    import time

    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts):
        try:
            return optuna.create_study(study_name=name, storage=storage, sampler=sampler, directions=directions,
                                       load_if_exists=True)
        except (IntegrityError, OperationalError):
            if attempt + 1 == attempts:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def best_feasible(study: Any, budget_ms: float) -> dict[str, Any] | None:
    """The best-rated completed trial whose measured latency is within budget."""
    import optuna

    feasible = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                and t.user_attrs.get("measured_ms", float("inf")) <= budget_ms]
    if not feasible:
        return None
    trial = min(feasible, key=lambda t: t.user_attrs["rating"])
    return {"trial": trial.number, "arch": trial.user_attrs["arch"], "rating": trial.user_attrs["rating"],
            "measured_ms": trial.user_attrs["measured_ms"]}


def finalists(study: Any, budget_ms: float, count: int = 6, slack: float = 1.25) -> list[str]:
    """The best-rated completed trials measured within ``slack`` x budget (their first measurement may be off)."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and t.user_attrs.get("measured_ms", float("inf")) <= slack * budget_ms]
    ranked = sorted(done, key=lambda t: t.user_attrs["rating"])
    return list(dict.fromkeys(t.user_attrs["arch"] for t in ranked))[:count]


PERTURBED_TOLERANCE = 0.15  # a measuring pass further than this from the table (median ratio) reads as perturbed


def remeasure_together(
    space: SearchSpace, archs: Sequence[str], target: Any, protocol: Protocol, predict: Callable[[Hashable], float],
    workdir: Path, tolerance: float = PERTURBED_TOLERANCE, attempts: int = 3, pause_s: float = 5.0,
) -> tuple[dict[str, float], list[float]]:
    """Measure the finalists in one interleaved pass, so drift hits them alike.

    When the pass as a whole reads more than ``tolerance`` away from the table (median measured/predicted), the
    machine is taken to be perturbed (a neighbour's load, frequency): wait and measure again, up to ``attempts``
    times, keeping the least perturbed pass. Returns the measurements and each pass's median ratio.
    """
    import statistics
    import time

    best: dict[str, float] = {}
    ratios: list[float] = []
    for attempt in range(attempts):
        items = {a: (space.build(space.parse(a)), space.example_input()) for a in archs}
        stats = target.measure_modules(items, protocol, workdir)
        measured = {a: stats[a].get(protocol.statistic) for a in archs}
        ratio = statistics.median(measured[a] / predict(space.parse(a)) for a in archs)
        if not ratios or abs(ratio - 1) < abs(closest_ratio(ratios) - 1):
            best = measured
        ratios.append(ratio)
        if abs(ratio - 1) <= tolerance:
            break
        if attempt + 1 < attempts:
            time.sleep(pause_s)
    return best, ratios


STEP_DOWN_MARGINS = (1.0, 0.95, 0.9)  # of the budget scaled to the machine's reading: a little room for noise


def step_down(combiner: Combiner, budget: float, ratio: float, exclude: Sequence[str] = (),
              margins: Sequence[float] = STEP_DOWN_MARGINS) -> list[str]:
    """Architectures to measure when no finalist measured within the budget: the machine read ``ratio`` x the table
    (measured over predicted, taken as at least 1), so the exact best under ``budget / ratio`` is the best one
    expected to fit now, and the best under 5% and 10% less leave room for measurement noise. Budgets below the
    cheapest architecture give the cheapest. Architectures in ``exclude`` (measured already) are left out; best
    rated first."""
    found: list[str] = []
    for margin in margins:
        point = combiner.best_under(max(budget * margin / max(ratio, 1.0), combiner.min_cost))
        if str(point.arch) not in exclude and str(point.arch) not in found:
            found.append(str(point.arch))
    return found


def closest_ratio(ratios: Sequence[float]) -> float:
    """The median ratio of the measuring pass that ``remeasure_together`` keeps: the one closest to 1."""
    return min(ratios, key=lambda ratio: abs(ratio - 1))


def perturbation_warning(ratios: Sequence[float], tolerance: float = PERTURBED_TOLERANCE) -> str | None:
    """A warning when no measuring pass of ``remeasure_together`` came within ``tolerance`` of the table (every pass
    read the machine as perturbed), else None: the measured numbers then say more about the machine's load at that
    moment than about the architectures."""
    if not ratios or any(abs(ratio - 1) <= tolerance for ratio in ratios):
        return None
    return (f"every measuring pass read {min(ratios):.2f}-{max(ratios):.2f}x the latency table (tolerance "
            f"{100 * tolerance:.0f}%): the machine was busy or changed its clock while measuring, so the measured "
            "latencies (and the budget check) are not reliable; rerun the search on a quiet machine (ratings, table "
            "and the Optuna study are reused), or re-profile if the machine has changed")


def measurer(space: SearchSpace, runtime: Runtime, target: Any, protocol: Protocol) -> Callable[[Hashable], float]:
    """Measure one architecture end to end (the protocol's statistic, ms)."""

    def measure(arch: Hashable) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            stats = target.measure_modules({str(arch): (space.build(arch), space.example_input())}, protocol, Path(tmp))
        return stats[str(arch)].get(protocol.statistic)

    return measure


def plot_front(front: Sequence[dict[str, Any]], budget: float, chosen: dict[str, Any], unit: str, path: Path,
               title: str) -> None:
    """The Pareto front (cost vs rating) with the budget line and the chosen point, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6, 4))
    axis.step([p["cost"] for p in front], [p["rating"] for p in front], where="post", color="tab:blue",
              label="exact front (predicted)")
    axis.axvline(budget, color="tab:red", linestyle="--", label=f"budget {budget:g} {unit}")
    axis.scatter([chosen["cost"]], [chosen["rating"]], color="tab:red", zorder=3, label="chosen")
    if chosen.get("measured_ms") is not None:
        axis.scatter([chosen["measured_ms"]], [chosen["rating"]], marker="x", color="black", zorder=3,
                     label="chosen, measured")
    axis.set_xlabel(f"{unit}")
    axis.set_ylabel("summed block rating (lower is better)")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
