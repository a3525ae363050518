"""A run's search under a budget: the exact combiner over a cost model, then, for latency, Optuna refinement with
real measurements and the finalists re-measured together.

1. The combiner gives the exact optimum of the summed block ratings under the predicted budget, and the whole front.
2. Optuna refines near the budget (``hwnas.search.refine``): its objective is the rating, its constraint the latency
   measured on the target; the study lives in SQLite in the run (resumable) or any RDB URL several workers share.
3. The combiner's pick and Optuna's best finalists are measured again in one interleaved pass
   (``hwnas.search.remeasure``); when none measures within the budget, cheaper points of the exact front join them.
   The best-rated finalist measured within the budget is chosen.

With ``naswot_candidates`` K, the K best-rated points of the exact front under the budget join the finalists, and the
choice among those that fit is by the mean rank of rating and NASWOT at initialisation (``hwnas.search.proxies``),
which together order architectures at least as well as the better of the two alone on both ranking benchmarks
(``benchmarks/docs/rank_scores.md``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.run import RunDir
from hwnas.search.combiner import Combiner
from hwnas.search.costs import CostModel, counted_cost, latency_cost
from hwnas.search.plot import plot_front
from hwnas.search.proxies import NASWOT_IMAGES, NaswotChoice
from hwnas.search.refine import StudySettings, best_feasible, finalists, refine, study_name
from hwnas.search.remeasure import measurer, perturbation_warning, remeasure_together, step_down
from hwnas.search.result import Chosen, Finalist, Measured, SearchResult, SteppedDown
from hwnas.supernet.ratings import Ratings, open_ratings
from profilers import Protocol, get_runtime
from profilers import drift as drift_policy
from profilers.files import atomic_write_json
from profilers.predictor import LatencyPredictor
from profilers.table import LatencyTable
from profilers.targets import Target, open_target

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchSettings:
    """How to search: ``objective`` (``latency``, ``macs`` or ``params``), ``refine_trials`` Optuna trials with real
    measurements (0: the combiner alone), ``multi_objective`` (NSGA-II over rating and measured ms), the study's
    ``storage`` URL (default: SQLite in the run), where to measure (``target``: None for this machine, a URL or
    ``adb:SERIAL``; ``token`` for an agent) and the measurement ``protocol``; ``naswot_candidates`` K > 0 chooses
    among the K best-rated front points under the budget (and the latency search's finalists) by the mean rank of
    rating and NASWOT."""

    objective: str = "latency"
    refine_trials: int = 20
    multi_objective: bool = False
    storage: str | None = None
    stale_after_s: float = 60.0
    target: None | str | Target = None
    token: str | None = None
    protocol: Protocol = field(default_factory=Protocol)
    naswot_candidates: int = 0


@dataclass
class _Measuring:
    """A latency search's table, predictor, target and measurement protocol."""

    table: LatencyTable
    table_path: Path
    predictor: LatencyPredictor
    target: Target
    protocol: Protocol


def search(run: RunDir, table_path: Path | None, budget: float, settings: SearchSettings | None = None,
           show_progress: bool = True) -> SearchResult:
    """Search the run's space under ``budget`` (ms for latency, millions for MACs/params); writes ``result.json``,
    ``front.json`` and ``front.png`` in ``RUN/search/OBJECTIVE-BUDGET/``."""
    settings = settings or SearchSettings()
    space = run.space
    ratings = open_ratings(run)
    measuring = _open_measuring(run, table_path, settings) if settings.objective == "latency" else None
    cost = latency_cost(measuring.predictor) if measuring else counted_cost(space, settings.objective)
    combiner = Combiner(space, ratings.blocks, cost.unit_cost, cost.base)
    best = _best_under(combiner, cost, budget, table_path)
    refinement = None
    near = [p.arch for p in combiner.near(budget, settings.naswot_candidates)] if settings.naswot_candidates else []
    images = _naswot_images(run) if near else None
    if measuring is None:
        chosen = Chosen(best.arch, best.rating, best.cost, "combiner")
        if images is not None:
            choice = NaswotChoice.among(space, near, ratings.of, images)
            pick = next(p for p in combiner.front if p.arch == choice.pick)
            chosen = Chosen(pick.arch, pick.rating, pick.cost, "combiner + NASWOT", naswot=choice.table)
    else:
        candidates: list[Hashable] = list(dict.fromkeys([best.arch, *near]))
        if settings.refine_trials > 0:
            refinement, more = _refine(run, combiner, ratings, measuring, budget, settings, show_progress)
            candidates = list(dict.fromkeys(candidates + more))
        chosen = _choose_measured(run, combiner, ratings, measuring, budget, candidates, best.arch, images)
    return _finish(run, combiner, ratings, cost, budget, chosen, measuring, refinement)


def _naswot_images(run: RunDir) -> Any:
    """The training images NASWOT reads for the run's data."""
    from hwnas.data import load_data

    return load_data(run.config.data, run.space.resolution).tensors("train", NASWOT_IMAGES)[0]


def _open_measuring(run: RunDir, table_path: Path | None, settings: SearchSettings) -> _Measuring:
    if table_path is None:
        raise ValueError("a latency search needs --table (made by 'hwnas profile')")
    table = LatencyTable.load(table_path, run.space)
    meta = table.metadata
    runtime = get_runtime(str(meta["runtime"]), int(meta["threads"]), str(meta["precision"]))
    target = open_target(runtime, settings.target, settings.token)
    other_machine = table.machine_warning(target.device())  # an unreachable target fails here, before the study
    if other_machine:
        log.warning("%s", other_machine)
    return _Measuring(table, Path(table_path), LatencyPredictor(table, run.space), target, settings.protocol)


def _best_under(combiner: Combiner, cost: CostModel, budget: float, table_path: Path | None) -> Any:
    space = combiner.space
    if cost.name == "latency" and combiner.min_cost <= 0:
        raise ValueError(f"latency table {table_path} predicts {combiner.min_cost:.4g} ms for the cheapest "
                         f"architecture of {space.name}: its calibration was fitted on too few or too noisy networks "
                         f"(or by an hwnas older than the non-negative fit); re-profile it on a quiet machine with "
                         f"--calibrate 10 or more")
    try:
        return combiner.best_under(budget)
    except ValueError:
        raise ValueError(f"budget {budget:g} {cost.unit} is below the cheapest architecture of {space.name}: "
                         f"{combiner.min_cost:.4g} {cost.unit} predicted; raise --budget") from None


def _refine(run: RunDir, combiner: Combiner, ratings: Ratings, measuring: _Measuring, budget: float,
            settings: SearchSettings, show_progress: bool) -> tuple[dict[str, Any], list[Hashable]]:
    """Optuna's refinement: its summary and its finalists."""
    space = run.space
    storage = settings.storage or f"sqlite:///{run.search_db.resolve()}"
    table_digest = hashlib.sha1(measuring.table_path.read_bytes()).hexdigest()
    name = study_name(space, table_digest, budget, settings.multi_objective, ratings)
    study = refine(combiner, ratings, budget, measurer(space, measuring.target, settings.protocol),
                   StudySettings(storage, name, settings.refine_trials, multi_objective=settings.multi_objective,
                                 stale_after_s=settings.stale_after_s),
                   show_progress=show_progress)
    states = [t.state.name for t in study.trials]
    summary = {"study": name, "storage": storage, "trials": states.count("COMPLETE") + states.count("FAIL"),
               "complete": states.count("COMPLETE"), "failed": states.count("FAIL"),
               "best_trial": best_feasible(study, budget),
               "errors": [t.user_attrs["error"] for t in study.trials if "error" in t.user_attrs]}
    return summary, finalists(study, space, budget)


def _choose_measured(run: RunDir, combiner: Combiner, ratings: Ratings, measuring: _Measuring, budget: float,
                     candidates: list[Hashable], combiner_pick: Hashable, naswot_images: Any = None) -> Chosen:
    """Re-measure the finalists together (stepping down when none fits) and take the best-rated that fits (with
    ``naswot_images``: the best by the mean rank of rating and NASWOT among those that fit)."""
    space, predict, protocol = run.space, measuring.predictor.predict, measuring.protocol
    log.info("re-measuring %d finalists together", len(candidates))
    measured, ratios = remeasure_together(space, candidates, measuring.target, protocol, predict, run.scratch)
    stepped = None
    if not any(measured[a] <= budget for a in candidates):
        # the finalists sat at the budget's edge and the machine reads slower than the table: measure the best
        # architectures expected to fit at this reading, together with the finalists (one pass, alike drift)
        ratio = drift_policy.least_perturbed(ratios)
        added = step_down(combiner, budget, ratio, exclude=candidates)
        if added:
            log.info("no finalist measured within %g ms (the machine read %.2fx the table): re-measuring with %d "
                     "cheaper architectures", budget, ratio, len(added))
            candidates = candidates + added
            measured, more = remeasure_together(space, candidates, measuring.target, protocol, predict,
                                                run.scratch)
            ratios += more
            stepped = SteppedDown(ratio, added)
    feasible = [a for a in candidates if measured[a] <= budget]
    choice = NaswotChoice.among(space, feasible, ratings.of, naswot_images) if feasible and naswot_images is not None \
        else None
    # by rating alone, equal ratings (twins pooled) go to the faster one
    pick = (choice.pick if choice is not None else min(feasible, key=lambda a: (ratings.of(a), measured[a]))
            if feasible else min(candidates, key=measured.__getitem__))
    if not feasible:
        log.warning("no architecture measured within the %g ms budget on this pass (fastest %.4g ms, taken); rerun "
                    "the search on a quiet machine, or raise --budget-ms", budget, measured[pick])
    warning = perturbation_warning(ratios)
    if warning:
        log.warning("%s", warning)
    source = ("combiner" if pick == combiner_pick
              else "combiner, stepped down" if stepped and pick in stepped.added
              else "optuna refinement" if choice is None else "front near the budget or refinement")
    result = Measured(predict(pick), measured[pick], measured[pick] <= budget,
                      [Finalist(a, ratings.of(a), measured[a]) for a in candidates], ratios, stepped, warning)
    return Chosen(pick, ratings.of(pick), predict(pick), source + (" + NASWOT" if choice else ""), result,
                  naswot=choice.table if choice else None)


def _finish(run: RunDir, combiner: Combiner, ratings: Ratings, cost: CostModel, budget: float, chosen: Chosen,
            measuring: _Measuring | None, refinement: dict[str, Any] | None) -> SearchResult:
    """The result with its files written: result.json, front.json and the front's plot."""
    space, objective = run.space, cost.name
    info = space.info(chosen.arch)
    front = [{"arch": str(p.arch), "cost": p.cost, "rating": p.rating} for p in combiner.front]
    folder = run.search_folder(objective, budget)
    result = SearchResult(
        space=space.name, objective=objective, budget=budget, unit=cost.unit, chosen=chosen, params=info["params"],
        macs=info["macs"], timm_arch_def=space.to_timm_arch_def(chosen.arch),
        table=str(measuring.table_path) if measuring else None,
        table_metadata=measuring.table.metadata if measuring else None, ratings=str(ratings.source),
        rating_seeds=ratings.seeds, rating_families=ratings.families(), refinement=refinement,
        front_size=len(front),
        files={"result": str(folder / "result.json"), "front": str(folder / "front.json"),
               "plot": str(folder / "front.png")})
    record = result.to_dict()
    record.pop("files")
    atomic_write_json(folder / "result.json", record)
    atomic_write_json(folder / "front.json", front)
    plot_front(front, budget, record["chosen"], cost.unit, folder / "front.png",
               f"{space.name}: exact front under the {objective} table, budget {budget:g} {cost.unit}")
    return result

