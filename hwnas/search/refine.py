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
import logging
import os
import socket
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hwnas.search.combiner import Combiner, FrontPoint
from hwnas.supernet.ratings import Ratings
from search_spaces import SearchSpace

log = logging.getLogger(__name__)


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


def study_name(space: SearchSpace, table_digest: str, budget_ms: float, multi_objective: bool,
               ratings: Ratings) -> str:
    """A study per (space, table, ratings, budget, mode), so reruns resume and workers meet.

    The ratings are part of the name: a study stores each trial's rating and searches a neighbourhood drawn from
    them, so after ``hwnas rate`` changes them (supernets trained further), or for another run sharing ``--storage``,
    resuming the old study would refine stale ratings. Such a search starts its own study; the old one stays."""
    return f"{space.name}-{table_digest[:10]}-r{ratings.digest()}-{budget_ms:g}ms-{'nsga2' if multi_objective else 'tpe'}"


@dataclass(frozen=True)
class StudySettings:
    """Where the Optuna study lives and how long it runs: ``storage`` (an RDB URL: SQLite, PostgreSQL...), the study
    ``name``, ``trials`` finished trials in all, ``starts`` front points enqueued first, NSGA-II over (rating,
    measured ms) when ``multi_objective`` (else TPE), the sampler's ``seed``, and ``stale_after_s``: a running
    trial whose worker sent no heartbeat for that long (killed, or its machine lost) is marked failed."""

    storage: str
    name: str
    trials: int
    starts: int = 5
    multi_objective: bool = False
    seed: int = 0
    stale_after_s: float = 60.0


def refine(combiner: Combiner, ratings: Ratings, budget_ms: float, measure: Callable[[Hashable], float],
           settings: StudySettings, show_progress: bool = True) -> Any:
    """Run (or resume) the Optuna study up to ``settings.trials`` finished trials; returns the Optuna study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = combiner.space
    starts = combiner.near(budget_ms, min(settings.starts, settings.trials))
    choices = neighbourhood(combiner, starts)
    by_name = [{str(c): c for c in space.block_candidates(b)} for b in range(space.num_blocks)]
    multi_objective = settings.multi_objective

    # the latency constraint is set on each trial (Trial.set_constraint); both samplers read it from the trials
    if multi_objective:
        sampler: optuna.samplers.BaseSampler = optuna.samplers.NSGAIISampler(seed=settings.seed)
        directions = ["minimize", "minimize"]
    else:
        sampler = optuna.samplers.TPESampler(seed=settings.seed)
        directions = ["minimize"]
    opened = _open_study(settings, sampler, directions)
    with _seeding_lock(settings):
        if not opened.trials:
            for point in starts:
                opened.enqueue_trial({f"block{b}": str(c) for b, c in enumerate(space.blocks_of(point.arch))})

    def objective(trial: optuna.trial.Trial) -> float | tuple[float, float]:
        picked = [trial.suggest_categorical(f"block{b}", choices[b]) for b in range(space.num_blocks)]
        arch = space.assemble([by_name[b][p] for b, p in enumerate(picked)])
        rating = ratings.of(arch)
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
            log.info("trial %d: rating %.4f, measured %.3f ms (%s)", trial.number, rating, measured,
                     "ok" if measured <= budget_ms else "over budget")
        return (rating, measured) if multi_objective else rating

    return _run_trials(opened, objective, settings)


def _run_trials(study: Any, objective: Callable[[Any], Any], settings: StudySettings) -> Any:
    """Ask, evaluate and tell until the study holds ``settings.trials`` finished trials."""
    import optuna

    storage, trials = settings.storage, settings.trials
    # ask/tell rather than study.optimize: asking pops an enqueued trial, and on SQLite (no row locks) two workers
    # can pop the same one and both tell it; the claim lock serialises asking (a server database locks the row).
    # Workers stop when the study holds ``trials`` finished trials (each worker's last trial may overshoot by one).
    # Each running trial sends heartbeats; a trial whose worker died is marked failed by the next worker to ask.
    while True:
        with _claim_lock(storage):
            _fail_stale(study, settings.stale_after_s)
            if sum(t.state.is_finished() for t in study.get_trials(deepcopy=False)) >= trials:
                break
            with warnings.catch_warnings():  # "heartbeat ... with Study.optimize": _heartbeat beats for ask/tell
                warnings.simplefilter("ignore", UserWarning)
                trial = study.ask()
        try:
            with _heartbeat(trial):
                value = objective(trial)
        except Exception:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        except BaseException:  # interrupted: record the trial as failed, then stop
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, value)
    return study


def _fail_stale(study: Any, stale_after_s: float) -> None:
    """Mark failed the running trials whose worker stopped sending heartbeats (killed, or its machine lost)."""
    import optuna

    running = {t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
    if not running:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        if trial.number in running:
            log.warning("trial %d lost its worker (no heartbeat for %g s): marked failed", trial.number, stale_after_s)


def _storage(settings: StudySettings) -> Any:
    """The Optuna storage with heartbeats on (a killed worker's trial becomes stale after ``stale_after_s``)."""
    import optuna

    heartbeat = max(1, int(settings.stale_after_s / 4))
    grace = max(heartbeat + 1, int(settings.stale_after_s))
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna; hwnas relies on them as they are
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(settings.storage, heartbeat_interval=heartbeat, grace_period=grace)


@contextlib.contextmanager
def _heartbeat(trial: Any) -> Iterator[None]:
    """Record the trial's heartbeat, at the storage's interval, while its measurement runs (what Optuna's own optimize
    loop does)."""
    import threading

    storage, stop = trial.study._storage, threading.Event()
    interval = storage.get_heartbeat_interval() or 1

    def beat() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a missed beat is retried; the trial goes on
                storage.record_heartbeat(trial._trial_id)
            stop.wait(interval)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


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


@contextlib.contextmanager
def _seeding_lock(settings: StudySettings) -> Iterator[None]:
    """Held while a worker looks whether the study is new and seeds it, so that workers starting together seed it
    once: the file lock on SQLite, a session advisory lock on PostgreSQL (``pg_advisory_lock``) and a named lock on
    MySQL (``GET_LOCK``), keyed by the study's name; other storages are not locked."""
    import zlib

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    dialect = make_url(settings.storage).get_backend_name() if "://" in settings.storage else ""
    if dialect not in ("postgresql", "mysql"):
        with _claim_lock(settings.storage):
            yield
        return
    key = zlib.crc32(f"hwnas-seed:{settings.name}".encode())
    if dialect == "postgresql":
        lock, unlock, name = text("SELECT pg_advisory_lock(:k)"), text("SELECT pg_advisory_unlock(:k)"), {"k": key}
    else:
        lock, unlock, name = text("SELECT GET_LOCK(:k, -1)"), text("SELECT RELEASE_LOCK(:k)"), {"k": str(key)}
    engine = create_engine(settings.storage, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(lock, name)
            try:
                yield
            finally:
                connection.execute(unlock, name)
    finally:
        engine.dispose()


def _open_study(settings: StudySettings, sampler: Any, directions: list[str], attempts: int = 5) -> Any:
    """Create or load the study; workers starting together against a new database race to create its schema, and
    the loser retries once the winner's schema is there. ValueError (password hidden) when the storage cannot be
    used."""
    import time

    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

    for attempt in range(attempts):
        try:
            return optuna.create_study(study_name=settings.name, storage=_storage(settings), sampler=sampler,
                                       directions=directions, load_if_exists=True)
        except (IntegrityError, OperationalError) as error:
            if attempt + 1 == attempts:
                raise ValueError(f"cannot open the Optuna study in {_shown(settings.storage)}: "
                                 f"{' '.join(str(error).split())[:300]}; check the storage URL, that the database is "
                                 "reachable and writable, and its password") from None
            time.sleep(0.5 * (attempt + 1))
        except (SQLAlchemyError, ImportError, ValueError) as error:
            raise ValueError(f"cannot use the Optuna storage {_shown(settings.storage)}: "
                             f"{' '.join(str(error).split())[:300]}") from None
    raise AssertionError("unreachable")


def _shown(storage: str) -> str:
    """A storage URL with its password hidden."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except Exception:
        return "the given --storage URL"


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


def finalists(study: Any, space: SearchSpace, budget_ms: float, count: int = 6, slack: float = 1.25) -> list[Hashable]:
    """The best-rated completed trials' architectures measured within ``slack`` x budget (their first measurement
    may be off)."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
            and t.user_attrs.get("measured_ms", float("inf")) <= slack * budget_ms]
    ranked = sorted(done, key=lambda t: t.user_attrs["rating"])
    return [space.parse(a) for a in list(dict.fromkeys(t.user_attrs["arch"] for t in ranked))[:count]]
