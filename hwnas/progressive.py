"""DNA+'s progressive rounds: the searched architecture, scaled up to the teacher's own cost, becomes the next teacher.

Round k, with the run's current teacher:

1. distil the block supernets from the teacher and rate every candidate (``hwnas distill``, ``hwnas rate``; both
   resume);
2. search at the user's budget and train that child with distillation from the teacher: the round's answer;
3. search at the teacher's own cost (the best-rated member that costs no more than the teacher) and train it the
   same way: the scaled-up candidate;
4. when the scaled-up child beats the teacher's validation accuracy by more than ``min_gain``, it becomes the teacher
   of round k + 1 (``hwnas.supernet.teacher.set_teacher``: the previous teacher and what was distilled, rated and
   searched from it move to ``RUN/teachers/DIGEST/``); otherwise the rounds stop: the teacher stopped improving.

Each finished round is recorded in ``RUN/progressive/progress.json`` (atomically) before its teacher is promoted, so a
killed run resumes at the step it reached; children train in ``RUN/progressive/roundK/`` (not shared with
``hwnas train``'s children, which another teacher may have distilled). ``progress.png`` plots the rounds.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwnas.data import load_data
from hwnas.run import RunDir
from hwnas.search.budgeted import SearchSettings, search
from hwnas.search.costs import OBJECTIVES, CostModel, arch_cost, counted_cost, latency_cost
from hwnas.ship.child import train_child
from hwnas.supernet.distill import DistillConfig, distill
from hwnas.supernet.ratings import rate
from hwnas.supernet.teacher import open_teacher, set_teacher
from hwnas.training import TrainConfig, evaluate
from profilers.files import atomic_write_json, read_json
from profilers.predictor import LatencyPredictor
from profilers.table import LatencyTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProgressiveSettings:
    """``rounds`` in all (a rerun with more rounds goes on where it stopped), the user's ``budget`` under
    ``objective`` (``table`` for latency), the children's ``child_epochs`` (distilled from the teacher with
    ``distill_weight``), the supernets' recipe, and ``min_gain``: how much validation accuracy (a fraction) the
    scaled-up child must gain over the teacher to replace it."""

    rounds: int
    budget: float
    objective: str = "macs"
    table: Path | None = None
    child_epochs: int = 30
    distill_weight: float = 0.5
    distill: DistillConfig = field(default_factory=DistillConfig)
    min_gain: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.budget <= 0 or self.child_epochs < 1 or not -1 < self.min_gain < 1:
            raise ValueError(f"progressive rounds need --rounds >= 1, --budget > 0, --child-epochs >= 1 and "
                             f"-1 < --min-gain < 1; got {self.rounds}, {self.budget}, {self.child_epochs}, "
                             f"{self.min_gain}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.objective == "latency" and self.table is None:
            raise ValueError("progressive rounds under a latency budget need --table (made by 'hwnas profile')")


def progress_file(run: RunDir) -> Path:
    """Where the rounds are recorded."""
    return run.file("progressive", "progress.json")


def progressive(run: RunDir, settings: ProgressiveSettings, show_progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the rounds; returns the record of every round and why the rounds stopped."""
    if run.config.seed_of:
        raise ValueError(f"{run.path} is a distillation seed; run the rounds on its parent run")
    space = run.space
    record = _open_record(run, settings)
    cost = _cost_model(run, settings)
    bundle = load_data(run.config.data, space.resolution)
    _finish_promotion(run, record)
    while len(record["rounds"]) < settings.rounds and record.get("stopped") is None:
        k = len(record["rounds"]) + 1
        teacher = open_teacher(run)
        if teacher.description.get("kind") != "space":
            raise ValueError(f"the teacher of {run.path} ({teacher.description.get('name')}) is not a member of "
                             f"{space.name}: progressive rounds scale members of the space; train one with "
                             "'hwnas teacher train --arch ...' first")
        teacher_arch = space.parse(teacher.description["arch"])
        teacher_val = evaluate(teacher, bundle, "val")
        log.info("round %d: teacher %s, validation accuracy %.4f", k, teacher_arch, teacher_val)
        distill(run, config=settings.distill, show_progress=show_progress, device=settings.device)
        rate(run, show_progress=show_progress, device=settings.device)
        searched = _search_and_train(run, settings, settings.budget, k, "searched", show_progress)
        teacher_cost = arch_cost(space, cost, teacher_arch)
        scaled = _search_and_train(run, settings, teacher_cost, k, "scaled", show_progress, trained=searched)
        gain = scaled["val_accuracy"] - teacher_val
        same = scaled["arch"] == str(teacher_arch)
        promoted = gain > settings.min_gain and not same
        record["rounds"].append({
            "round": k, "teacher": {"arch": str(teacher_arch), "val_accuracy": teacher_val,
                                    "test_accuracy": evaluate(teacher, bundle, "test"), "cost": teacher_cost},
            "searched": searched, "scaled": scaled, "gain": gain, "promoted": promoted})
        if same:
            record["stopped"] = f"round {k}: the best-rated member at the teacher's cost is the teacher itself"
        elif not promoted:
            record["stopped"] = (f"round {k}: the scaled-up child ({scaled['val_accuracy']:.4f}) did not beat the "
                                 f"teacher ({teacher_val:.4f}) by more than {settings.min_gain:g}")
        _save(run, record)
        log.info("round %d: searched %s (val %.4f); scaled %s (val %.4f vs teacher %.4f): %s", k, searched["arch"],
                 searched["val_accuracy"], scaled["arch"], scaled["val_accuracy"], teacher_val,
                 "the next teacher" if promoted else "the rounds stop")
        _finish_promotion(run, record)
    if record.get("stopped") is None and len(record["rounds"]) >= settings.rounds:
        record["finished"] = f"{settings.rounds} rounds done"
    _save(run, record)
    return record


def _open_record(run: RunDir, settings: ProgressiveSettings) -> dict[str, Any]:
    """The recorded rounds, or a new record; ValueError when they were run with another budget or recipe (only
    ``rounds``, ``min_gain`` and the device may change). Rounds that stopped stay stopped."""
    wanted = {k: v for k, v in _jsonable(settings).items() if k not in ("rounds", "min_gain", "device")}
    path = progress_file(run)
    if not path.exists():
        return {"settings": wanted, "rounds": []}
    record = read_json(path, "progressive rounds")
    if record.get("settings") != wanted:
        raise ValueError(f"{path} records rounds run with other settings ({record.get('settings')}); use the same "
                         f"budget, objective and recipes to go on (only --rounds and --min-gain may change), or "
                         f"move {path.parent} away to start over")
    record.pop("finished", None)
    return record


def _finish_promotion(run: RunDir, record: dict[str, Any]) -> None:
    """Make the last round's scaled-up child the teacher if it was promoted and is not yet (a kill between the
    record and the promotion; ``set_teacher`` is idempotent)."""
    if record["rounds"] and record["rounds"][-1]["promoted"]:
        last = record["rounds"][-1]["scaled"]
        result = set_teacher(run, last["arch"], Path(last["weights"]))
        if not result["unchanged"]:
            log.info("the scaled-up child %s is the teacher now; the previous teacher's supernets and ratings: %s",
                     last["arch"], result["moved_to"])


def _search_and_train(run: RunDir, settings: ProgressiveSettings, budget: float, k: int, role: str,
                      show_progress: bool, trained: dict[str, Any] | None = None) -> dict[str, Any]:
    """The best-rated member under ``budget`` (combiner only; a latency search re-measures its pick) and its
    training with distillation from the current teacher (or ``trained``'s, when that is the same member)."""
    found = search(run, settings.table, budget, SearchSettings(objective=settings.objective, refine_trials=0),
                   show_progress=show_progress)
    if trained is not None and trained["arch"] == str(found.chosen.arch):
        return {**trained, "budget": budget}
    config = TrainConfig(epochs=settings.child_epochs, distill_weight=settings.distill_weight)
    folder = run.file("progressive", f"round{k}", role)
    trained = train_child(run, str(found.chosen.arch), config, distill=settings.distill_weight > 0,
                          show_progress=show_progress, device=settings.device, folder=folder)
    return {"arch": str(found.chosen.arch), "budget": budget, "cost": found.chosen.cost,
            "rating": found.chosen.rating, "val_accuracy": trained["history"][-1]["val_accuracy"],
            "test_accuracy": trained["test_accuracy"], "weights": trained["weights"]}


def _cost_model(run: RunDir, settings: ProgressiveSettings) -> CostModel:
    if settings.objective == "latency":
        return latency_cost(LatencyPredictor(LatencyTable.load(settings.table, run.space), run.space))
    return counted_cost(run.space, settings.objective)


def _jsonable(settings: ProgressiveSettings) -> dict[str, Any]:
    values = asdict(settings)
    values["table"] = None if settings.table is None else str(settings.table)
    return values


def _save(run: RunDir, record: dict[str, Any]) -> None:
    path = progress_file(run)
    atomic_write_json(path, record)
    if record["rounds"]:
        plot_rounds(record["rounds"], path.with_name("progress.png"), f"{run.space.name}: DNA+ progressive rounds")


def plot_rounds(rounds: list[dict[str, Any]], path: Path, title: str) -> None:
    """Validation accuracy per round: the teacher, the scaled-up child and the child searched at the budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [r["round"] for r in rounds]
    fig, axis = plt.subplots(figsize=(6, 4))
    axis.plot(ks, [r["teacher"]["val_accuracy"] for r in rounds], "o-", label="teacher")
    axis.plot(ks, [r["scaled"]["val_accuracy"] for r in rounds], "s--", label="scaled-up child (teacher's cost)")
    axis.plot(ks, [r["searched"]["val_accuracy"] for r in rounds], "^-", label="searched child (budget)")
    for r in rounds:
        if r["promoted"]:
            axis.annotate("next teacher", (r["round"], r["scaled"]["val_accuracy"]), fontsize=7,
                          textcoords="offset points", xytext=(4, 4))
    axis.set_xticks(ks)
    axis.set_xlabel("round")
    axis.set_ylabel("validation accuracy")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
