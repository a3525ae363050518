"""The long stages of a run, each resumable from the run directory: teacher, distillation, rating."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from hwnas.data import load_data
from hwnas.devices import resolve_device
from hwnas.distill import (
    DistillConfig,
    check_same_teacher,
    checkpoint_path,
    distill_block,
    file_digest,
    load_supernet,
)
from hwnas.distill_seeds import (
    SCORE,
    block_scores,
    combine_seed_ratings,
    combined_ratings,
    open_seed_run,
    seed_runs,
    source_run,
)
from hwnas.features import TeacherFeatures
from hwnas.rating import DEFAULT_MAX_CANDIDATES, deeper_worse, rate_block, rating_summary, undertrained_warning
from hwnas.rating_pool import pool_equivalent, pooled_counts
from hwnas.run import RunDir
from hwnas.teacher import (
    TeacherStages,
    check_teacher,
    largest_arch,
    load_teacher,
    save_teacher,
    space_teacher,
    timm_teacher,
)
from hwnas.training import TrainConfig, train_classifier
from profilers._files import atomic_write_json, read_json


def teacher_path(run: RunDir) -> Path:
    """The run's teacher checkpoint (a distillation seed's is its parent run's)."""
    return source_run(run).file("teacher.pt")


def train_teacher(
    run: RunDir, arch: str | None = None, timm_name: str | None = None, pretrained: bool = False,
    config: TrainConfig | None = None, show_progress: bool = True, train: bool = True, device: str = "cpu",
) -> dict[str, Any]:
    """Train (or resume) the run's teacher on ``device`` and report its test accuracy; ``train=False`` registers it
    as it is (a pretrained timm model, or an untrained space member)."""
    if run.config.get("seed_of"):
        raise ValueError(f"{run.path} is a distillation seed of {source_run(run).path} and uses its teacher: train "
                         "the teacher there")
    space = run.space
    if timm_name is not None:
        teacher = timm_teacher(timm_name, space, pretrained=pretrained)
    else:
        teacher = space_teacher(space, space.parse(arch) if arch else largest_arch(space))
    check_teacher(teacher, space)
    _check_one_teacher(run, teacher.description)
    bundle = load_data(run.config["data"], space.resolution)
    config = config or TrainConfig()
    result: dict[str, Any] = {"teacher": teacher.description, "data": bundle.name}
    if train and not pretrained:
        trained = train_classifier(teacher, bundle, config, run.file("teacher_training.pt"),
                                   show_progress=show_progress, label="teacher", device=device)
        result.update(trained)
    save_teacher(teacher, teacher_path(run), {"result": result})
    return result


def _check_one_teacher(run: RunDir, description: dict[str, Any]) -> None:
    """A run trains one teacher: ValueError when it already has (or is training) another one, whose training
    checkpoint would otherwise be loaded into this one and whose supernets would be mixed with its features. Records
    the teacher before training, so a killed training resumes only for the same teacher."""
    recorded = run.config.get("teacher")
    files = [p.name for p in (teacher_path(run), run.file("teacher_training.pt")) if p.exists()]
    wanted = json.loads(json.dumps(description))
    if files and recorded is not None and recorded != wanted:
        raise ValueError(f"run {run.path} already has the teacher {recorded.get('name')} ({', '.join(files)}); "
                         f"training or registering another ({wanted.get('name')}) would mix the two. Use a new run "
                         f"(--run), or move {', '.join(files)} (and the supernet/ and ratings/ distilled from it) out "
                         f"of {run.path} first")
    run.update(teacher=wanted)


def open_teacher(run: RunDir) -> TeacherStages:
    """The run's teacher (FileNotFoundError says how to make one)."""
    return load_teacher(teacher_path(run), run.space)


def _features(run: RunDir, teacher: TeacherStages, cache: bool, show_progress: bool,
              device: torch.device) -> TeacherFeatures:
    bundle = load_data(run.config["data"], run.space.resolution)
    return TeacherFeatures(teacher, bundle, source_run(run).path / "cache" if cache else None, show_progress=show_progress,
                           device=device)


def _blocks(run: RunDir, block: int | None) -> list[int]:
    count = run.space.num_blocks
    if block is None:
        return list(range(count))
    if not 0 <= block < count:
        raise ValueError(f"--block must be in 0..{count - 1} for {run.space.name}, got {block}")
    return [block]


def distill(run: RunDir, block: int | None = None, config: DistillConfig | None = None, cache: bool = True,
            show_progress: bool = True, device: str = "cpu", seeds: int = 1) -> list[dict[str, Any]]:
    """Train every block's supernet (or one) on ``device``, resuming from checkpoints. ``seeds`` > 1 trains seeds
    ``config.seed + 1`` ... beside it (``hwnas.distill_seeds``: ``RUN/seeds/seedK``, same teacher and cache); the
    results are the run's own seed's, then each extra seed's."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1 (distillation seeds of the block supernets), got {seeds}")
    blocks, torch_device = _blocks(run, block), resolve_device(device)
    teacher = open_teacher(run)
    features = _features(run, teacher, cache, show_progress, torch_device)
    config = config or DistillConfig()
    run.update(distill=dict(vars(config)) | {"cache": cache})
    results = [distill_block(run, b, teacher, features, config, show_progress, torch_device) | {"seed": config.seed}
               for b in blocks]
    for k in range(1, seeds):
        seed_run, seed_config = open_seed_run(run, k), replace(config, seed=config.seed + k)
        if show_progress:
            print(f"distillation seed {seed_config.seed} ({seed_run.path})", file=sys.stderr)
        seed_run.update(distill=dict(vars(seed_config)) | {"cache": cache})
        results += [distill_block(seed_run, b, teacher, features, seed_config, show_progress, torch_device)
                    | {"seed": seed_config.seed} for b in blocks]
    return results


def ratings_path(run: RunDir) -> Path:
    """The run's assembled ratings file."""
    return run.file("ratings.json")


def rate(run: RunDir, block: int | None = None, max_candidates: int = DEFAULT_MAX_CANDIDATES,
         calibration_samples: int = 256, show_progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Rate every candidate of every block (or one) on ``device``; assemble ratings.json once every block is rated."""
    blocks, torch_device = _blocks(run, block), resolve_device(device)
    teacher = open_teacher(run)
    features = _features(run, teacher, run.config.get("distill", {}).get("cache", True), show_progress, torch_device)
    held_out = torch.arange(features.size("val"))
    calibration = torch.arange(min(calibration_samples, features.size("train")))
    for b in blocks:
        path = run.file("ratings", f"block{b}.json")
        if path.exists():
            rated_from = read_json(path, "block ratings").get("supernet", {})
            checkpoint = checkpoint_path(run, b)
            check_same_teacher(rated_from, features.teacher_digest, checkpoint, run)
            if not checkpoint.exists() or rated_from.get("sha256") == file_digest(checkpoint):
                continue
            if show_progress:
                print(f"block {b}: its supernet changed since it was rated (trained further or again): rating it "
                      "again", file=sys.stderr)
        supernet, record = load_supernet(run, teacher, b, features.teacher_digest)
        supernet.to(torch_device)
        inputs, targets = (t.to(torch_device) for t in features.pair("val", b, held_out))
        calibration_inputs = features.get("train", b, calibration).to(torch_device)
        ratings, stats = rate_block(supernet, calibration_inputs, inputs, targets, max_candidates, show_progress)
        atomic_write_json(path, {"block": b, "supernet": record, "layer_evaluations": stats.layer_evaluations,
                                 "candidates_scored": stats.candidates,
                                 "deeper_worse": list(deeper_worse(supernet, ratings)), "ratings": ratings})
        if show_progress:
            summary = rating_summary(ratings)
            print(f"block {b}: rated {summary['candidates']} candidates (l1_rel best {summary['best']:.3f}, median "
                  f"{summary['median']:.3f}, worst {summary['worst']:.3f}) with {stats.layer_evaluations} layer "
                  "evaluations", file=sys.stderr)
    summary = assemble_ratings(run)
    if summary.get("undertrained"):
        print(f"warning: {summary['undertrained']}", file=sys.stderr)
    extra = seed_runs(run)
    for seed_run in extra:
        if not all(checkpoint_path(seed_run, b).exists() for b in range(run.space.num_blocks)):
            print(f"{seed_run.path}: not every block is distilled yet, so it is left out of the combined ratings "
                  f"(finish it with 'hwnas distill --run {run.path} --seeds {len(extra) + 1}')", file=sys.stderr)
            continue
        rate(seed_run, block, max_candidates, calibration_samples, show_progress, device)
    summary["rating_seeds"] = combine_seed_ratings(run) if not summary["missing_blocks"] else None
    return summary


def assemble_ratings(run: RunDir) -> dict[str, Any]:
    """ratings.json from the per-block files, with what produced them; incomplete runs say which blocks are missing."""
    space = run.space
    blocks, missing = [], []
    for b in range(space.num_blocks):
        path = run.path / "ratings" / f"block{b}.json"
        if path.exists():
            blocks.append(read_json(path, "block ratings"))
        else:
            missing.append(b)
    summary = {"space": space.name, "space_hash": space.definition_hash(), "teacher": run.config.get("teacher"),
               "data": run.config.get("data"), "distill": run.config.get("distill"), "missing_blocks": missing}
    if not missing:
        checked = [tuple(b["deeper_worse"]) for b in blocks if "deeper_worse" in b]  # absent in older runs
        summary["undertrained"] = undertrained_warning(checked) if len(checked) == len(blocks) else None
        atomic_write_json(ratings_path(run), {
            **summary, "score": "l1_rel",
            "blocks": [{"supernet": b["supernet"], "layer_evaluations": b["layer_evaluations"],
                        "deeper_worse": b.get("deeper_worse"), "ratings": b["ratings"]} for b in blocks],
        })
    return summary


def load_ratings(run: RunDir, score: str = "l1_rel", pooled: bool = True,
                 seeds: bool = True) -> list[dict[str, float]]:
    """Per block: candidate string -> score; FileNotFoundError says how to make them. ``pooled`` (what the search
    uses) gives candidates that compute the same functions their family's mean rating (``hwnas.rating_pool``);
    ``pooled=False`` returns each candidate's own rating as ``ratings.json`` stores it. With ``seeds`` the l1_rel
    score combined over the run's distillation seeds (``ratings_seeds.json``) is used when the run has one."""
    return load_ratings_and_seeds(run, score, pooled, seeds)[0]


def load_ratings_and_seeds(run: RunDir, score: str = "l1_rel", pooled: bool = True,
                           seeds: bool = True) -> tuple[list[dict[str, float]], dict[str, Any] | None]:
    """``load_ratings`` and the record of the combined seeds it used (None: the run's own ratings)."""
    path = ratings_path(run)
    if not path.exists():
        raise FileNotFoundError(f"run {run.path} has no ratings.json; run 'hwnas rate --run {run.path}'")
    data = read_json(path, "ratings file")
    if data.get("space_hash") != run.space.definition_hash():
        raise ValueError(f"{path} rates another definition of {run.space.name}; re-run 'hwnas rate'")
    combined = combined_ratings(run) if seeds and score == SCORE else None
    ratings, record = combined if combined else (block_scores(data, score), None)
    return (pool_equivalent(run.space, ratings) if pooled else ratings), record


def search(
    run: RunDir,
    table_path: Path | None,
    budget: float,
    refine_trials: int = 20,
    target_url: str | None = None,
    token: str | None = None,
    objective: str = "latency",
    storage: str | None = None,
    multi_objective: bool = False,
    protocol: Any = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Exact combiner under the budget, then (latency objective) Optuna refinement with real measurements."""
    from hwnas.combiner import Combiner
    from hwnas.search import (
        best_feasible,
        closest_ratio,
        counted_cost,
        finalists,
        latency_cost,
        measurer,
        perturbation_warning,
        plot_front,
        refine,
        remeasure_together,
        step_down,
        study_name,
    )
    from profilers import Protocol, get_runtime
    from profilers.predictor import LatencyPredictor
    from profilers.profile import make_target
    from profilers.table import LatencyTable

    space = run.space
    ratings, seed_record = load_ratings_and_seeds(run)
    predictor = runtime = target = None
    if objective == "latency":
        if table_path is None:
            raise ValueError("a latency search needs --table (made by 'hwnas profile')")
        latency_table = LatencyTable.load(table_path, space)
        predictor = LatencyPredictor(latency_table, space)
        cost = latency_cost(predictor)
        meta = latency_table.metadata
        runtime = get_runtime(str(meta["runtime"]), int(meta["threads"]), str(meta["precision"]))
        target = make_target(runtime, target_url, token)
    else:
        cost = counted_cost(space, objective)
    combiner = Combiner(space, ratings, cost.unit_cost, cost.base)
    if objective == "latency" and combiner.min_cost <= 0:
        raise ValueError(f"latency table {table_path} predicts {combiner.min_cost:.4g} ms for the cheapest "
                         f"architecture of {space.name}: its calibration was fitted on too few or too noisy networks "
                         f"(or by an hwnas older than the non-negative fit); re-profile it on a quiet machine with "
                         f"--calibrate 10 or more")
    try:
        best = combiner.best_under(budget)
    except ValueError:
        raise ValueError(f"budget {budget:g} {cost.unit} is below the cheapest architecture of {space.name}: "
                         f"{combiner.min_cost:.4g} {cost.unit} predicted; raise --budget") from None
    front = [{"arch": str(p.arch), "cost": p.cost, "rating": p.rating}
             for p in combiner.front]
    chosen: dict[str, Any] = {"arch": str(best.arch), "rating": best.rating, "cost": best.cost,
                              "source": "combiner"}
    refinement = None
    if objective == "latency":
        protocol = protocol or Protocol()
        candidates = [chosen["arch"]]
        if refine_trials > 0:
            storage = storage or f"sqlite:///{run.file('search.db').resolve()}"
            name = study_name(space, Path(table_path), budget, multi_objective, ratings)
            measure = measurer(space, runtime, target, protocol)
            study = refine(space, combiner, ratings, budget, measure, storage, name, refine_trials,
                           multi_objective=multi_objective, show_progress=show_progress)
            states = [t.state.name for t in study.trials]
            refinement = {"study": name, "storage": storage, "trials": states.count("COMPLETE") + states.count("FAIL"),
                          "complete": states.count("COMPLETE"), "failed": states.count("FAIL"),
                          "best_trial": best_feasible(study, budget),
                          "errors": [t.user_attrs["error"] for t in study.trials if "error" in t.user_attrs]}
            candidates = list(dict.fromkeys(candidates + finalists(study, budget)))
        if show_progress:
            print(f"re-measuring {len(candidates)} finalists together", file=sys.stderr)
        measured, ratios = remeasure_together(space, candidates, target, protocol, predictor.predict,
                                              tempfile_dir(run))
        stepped_down = None
        if not any(measured[a] <= budget for a in candidates):
            # the finalists sat at the budget's edge and the machine reads slower than the table: measure the best
            # architectures expected to fit at this reading, together with the finalists (one pass, alike drift)
            ratio = closest_ratio(ratios)
            added = step_down(combiner, budget, ratio, exclude=candidates)
            if added:
                if show_progress:
                    print(f"no finalist measured within {budget:g} ms (the machine read {ratio:.2f}x the table): "
                          f"re-measuring with {len(added)} cheaper architectures", file=sys.stderr)
                candidates += added
                measured, more = remeasure_together(space, candidates, target, protocol, predictor.predict,
                                                    tempfile_dir(run))
                ratios += more
                stepped_down = {"ratio": ratio, "added": added}
        rating_of = {a: sum(ratings[b][str(c)] for b, c in enumerate(space.blocks_of(space.parse(a))))
                     for a in candidates}
        feasible = [a for a in candidates if measured[a] <= budget]
        # equal ratings (twins pooled by rating_pool): the faster one
        pick = (min(feasible, key=lambda a: (rating_of[a], measured[a])) if feasible
                else min(candidates, key=measured.get))
        if not feasible:
            print(f"warning: no architecture measured within the {budget:g} ms budget on this pass (fastest "
                  f"{measured[pick]:.4g} ms, taken); rerun the search on a quiet machine, or raise --budget-ms",
                  file=sys.stderr)
        chosen = {"arch": pick, "rating": rating_of[pick], "cost": predictor.predict(space.parse(pick)),
                  "source": "combiner" if pick == str(best.arch) else (
                      "combiner, stepped down" if stepped_down and pick in stepped_down["added"]
                      else "optuna refinement"),
                  "predicted_ms": predictor.predict(space.parse(pick)), "measured_ms": measured[pick],
                  "within_budget": measured[pick] <= budget,
                  "finalists": {a: {"rating": rating_of[a], "measured_ms": measured[a]} for a in candidates},
                  "finalist_passes_measured_over_predicted": ratios, "stepped_down": stepped_down,
                  "measurement_warning": perturbation_warning(ratios)}
        if chosen["measurement_warning"]:
            print(f"warning: {chosen['measurement_warning']}", file=sys.stderr)
    arch = space.parse(chosen["arch"])
    info = space.info(arch)
    result = {
        "space": space.name, "objective": objective, "budget": budget, "unit": cost.unit, "chosen": chosen,
        "timm_arch_def": space.to_timm_arch_def(arch) if hasattr(space, "to_timm_arch_def") else None,
        "params": info["params"], "macs": info["macs"], "table": str(table_path) if table_path else None,
        "table_metadata": predictor.table.metadata if predictor else None,
        "ratings": seed_record["file"] if seed_record else str(ratings_path(run)), "rating_seeds": seed_record,
        "rating_families": pooled_counts(space, ratings),
        "refinement": refinement, "front_size": len(front),
    }
    folder = run.path / "search" / f"{objective}-{budget:g}"
    atomic_write_json(folder / "result.json", result)
    atomic_write_json(folder / "front.json", front)
    plot_front(front, budget, chosen, cost.unit, folder / "front.png",
               f"{space.name}: exact front under the {objective} table, budget {budget:g} {cost.unit}")
    result["files"] = {"result": str(folder / "result.json"), "front": str(folder / "front.json"),
                       "plot": str(folder / "front.png")}
    return result


def tempfile_dir(run: RunDir) -> Path:
    """A scratch folder inside the run (for exported models being measured)."""
    folder = run.path / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
