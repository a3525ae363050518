"""Benchmark: other scores from the same block supernets, judged on a ranking result's stand-alone accuracies.

hwnas rates an architecture by the sum of its blocks' ``l1_rel`` (DNA's scale-free feature error, each block fed the
teacher's features). Is a better score hiding in the same supernets? Each variant below is computed for the
architectures of an earlier ranking result (default ``ranking_wide``: 30 architectures, 3 stand-alone seeds each) and
ranked against that result's seed-averaged test accuracies, so no child is trained again:

- ``l1_rel sum`` (hwnas's score) and ``mse_rel sum`` (DNA's alternative, MSE / var);
- ``z-scored l1_rel sum``: each block's scores standardised over the architectures first, so no block dominates;
- ``stitched``: the architecture's student blocks chained (each fed the previous student block's output, adapted to
  the teacher's width; BatchNorm re-estimated along the chain) under the teacher's head, scored by validation
  accuracy, cross-entropy and KL divergence to the teacher's outputs: the whole student, errors compounding;
- ``swap KL``: for each block, the teacher with only that stage replaced by the candidate, KL divergence of its
  outputs to the teacher's, summed over blocks: each block's error weighted by what it does to the prediction;
- ``calibrated block weights``: a ridge regression from the six block scores (and MACs) to accuracy, fitted on the
  other architectures and predicting each one left out (DONNA's accuracy predictor; needs trained architectures);
- MACs, as the do-nothing proxy.

Needs the hwnas run the ranking made (``--run``, default ``runs/bench-ranking-lr/run`` as ``run_all.sh`` makes it);
when it is missing, the teacher is trained and the supernets distilled and rated with the ranking's defaults
(about 20 minutes on 2 cores), then reused. The result's own stored ratings (from the ranking run's supernets)
are scored too: the two distillations' difference is the rating's own noise.

    python benchmarks/rating_variants.py --result benchmarks/results/ranking/ranking_wide.json

Results and their history: ``benchmarks/docs/rating_variants.md``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import ROOT, print_table, refuse, result_path, shown_path, write_result
from scipy.stats import kendalltau, spearmanr
from torch import nn

from hwnas.supernet.rating import recalibrate_and_run

SPACE = "mbconv-tiny"


def path_modules(supernet: Any, state: Hashable, candidate: Any) -> list[nn.Module]:
    """The modules one candidate's path runs through: input adapter, its layers, output adapter."""
    return [supernet.adapters_in[supernet._state_key(state)], *supernet.candidate_layers(candidate, state),
            supernet.output_adapter(candidate)]


class SupernetScorer:
    """The run's teacher, cached features and block supernets, with the whole-network scores of an architecture."""

    def __init__(self, run_path: Path, calibration_samples: int) -> None:
        from hwnas.data import load_data
        from hwnas.run import open_run
        from hwnas.supernet.distill import load_supernet
        from hwnas.supernet.features import TeacherFeatures
        from hwnas.supernet.teacher import open_teacher

        self.run = open_run(run_path)
        self.space = self.run.space
        self.teacher = open_teacher(self.run).eval()
        bundle = load_data(self.run.config.data, self.space.resolution)
        self.features = TeacherFeatures(self.teacher, bundle, self.run.path / "cache", show_progress=False)
        count = self.features.size("val")
        self.held_out = torch.arange(count)
        self.calibration = torch.arange(min(calibration_samples, self.features.size("train")))
        self.labels = torch.tensor([int(bundle.datasets["val"][i][1]) for i in range(count)])
        self.supernets = [load_supernet(self.run, self.teacher, b, self.features.teacher_digest)[0]
                          for b in range(self.space.num_blocks)]
        with torch.no_grad():
            logits = self.teacher.head(self.features.get("val", self.space.num_blocks, self.held_out))
        self.teacher_log_probs = F.log_softmax(logits, 1)
        self.teacher_val_accuracy = float((logits.argmax(1) == self.labels).float().mean())

    def _kl(self, logits: torch.Tensor) -> float:
        return float(F.kl_div(F.log_softmax(logits, 1), self.teacher_log_probs, log_target=True,
                              reduction="batchmean"))

    def _block(self, block: int, state: Hashable, candidate: Any, calibration: torch.Tensor, held_out: torch.Tensor,
               ) -> tuple[torch.Tensor, torch.Tensor]:
        path = nn.Sequential(*path_modules(self.supernets[block], state, candidate))  # = path_forward
        return recalibrate_and_run(path, calibration, held_out)

    @torch.no_grad()
    def stitched(self, arch: Hashable) -> dict[str, float]:
        """The student blocks chained under the teacher's head: validation accuracy, cross-entropy, KL to teacher."""
        state = self.space.initial_state()
        calibration = self.features.get("train", 0, self.calibration)
        held_out = self.features.get("val", 0, self.held_out)
        for block, candidate in enumerate(self.space.blocks_of(arch)):
            calibration, held_out = self._block(block, state, candidate, calibration, held_out)
            state = self.space.block_output_state(block, candidate)
        logits = self.teacher.head(held_out)
        return {"accuracy": float((logits.argmax(1) == self.labels).float().mean()),
                "cross_entropy": float(F.cross_entropy(logits, self.labels)), "kl": self._kl(logits)}

    @torch.no_grad()
    def swap_kl(self, arch: Hashable) -> float:
        """Sum over blocks of KL(teacher || teacher with that one stage replaced by the architecture's block)."""
        state, total = self.space.initial_state(), 0.0
        for block, candidate in enumerate(self.space.blocks_of(arch)):
            _, h = self._block(block, state, candidate, self.features.get("train", block, self.calibration),
                               self.features.get("val", block, self.held_out))
            for stage in list(self.teacher.stages)[block + 1:]:
                h = stage(h)
            total += self._kl(self.teacher.head(h))
            state = self.space.block_output_state(block, candidate)
        return total


def leave_one_out(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Each architecture's accuracy predicted by a ridge regression fitted on all the others (alpha by CV)."""
    from sklearn.linear_model import RidgeCV

    predictions = np.zeros(len(target))
    for i in range(len(target)):
        keep = np.arange(len(target)) != i
        model = RidgeCV(alphas=np.logspace(-4, 2, 25)).fit(features[keep], target[keep])
        predictions[i] = model.predict(features[i:i + 1])[0]
    return predictions


def correlation(scores: list[float] | np.ndarray, accuracies: list[float]) -> dict[str, float]:
    """Kendall tau and Spearman rho (a higher score should mean a higher accuracy)."""
    return {"kendall_tau": float(kendalltau(scores, accuracies).statistic),
            "spearman_rho": float(spearmanr(scores, accuracies).statistic)}


def plot(path: Path, taus: dict[str, float], ceiling: float | None, title: str) -> None:
    """A horizontal bar per score, with the noise ceiling (what a perfect score would reach)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(taus)
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(names) + 1.2))
    axis.barh(names[::-1], [taus[n] for n in names[::-1]], color="tab:blue")
    if ceiling is not None:
        axis.axvline(ceiling, color="tab:red", linestyle="--", label=f"noise ceiling {ceiling:.3f}")
        axis.legend(loc="lower right")
    axis.set_xlabel("Kendall tau against seed-averaged stand-alone test accuracy")
    axis.set_title(title, fontsize=10)
    axis.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_arguments() -> tuple[argparse.Namespace, dict[str, Any]]:
    """The command line, checked before any work (a bad argument exits 2 with what is accepted): the options and
    the ranking result."""
    from profilers.files import read_json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--result", type=Path, default=ROOT / "benchmarks" / "results" / "ranking" / "ranking_wide.json",
                        help="a ranking benchmark result: its architectures and stand-alone accuracies")
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "bench-ranking-lr" / "run",
                        help="the hwnas run with the distilled block supernets (made when missing)")
    parser.add_argument("--calibration-samples", type=int, default=512,
                        help="training images that re-estimate BatchNorm along each path")
    parser.add_argument("--teacher-epochs", type=int, default=None,
                        help="when --run is missing: the teacher's epochs (default: the result's, 20)")
    parser.add_argument("--block-scores-only", action="store_true",
                        help="only the scores read from the block ratings (l1_rel, mse_rel, z-scored, calibrated "
                             "block weights, MACs): skips the stitched and swap-KL passes, about 18 s per architecture "
                             "on 2 cores, so a 100-architecture result is scored in seconds")
    parser.add_argument("--name", default="rating_variants")
    args = parser.parse_args()
    if not args.result.exists():
        parser.error(f"no ranking result at {args.result}; run benchmarks/ranking.py first or pass --result")
    if args.teacher_epochs is not None and args.teacher_epochs < 1:
        parser.error(f"--teacher-epochs must be >= 1, got {args.teacher_epochs}")
    if args.calibration_samples < 16:
        parser.error(f"--calibration-samples must be >= 16 (BatchNorm needs a batch), got {args.calibration_samples}")
    result = read_json(args.result, "ranking result")
    for key in ("archs", "test_accuracy", "macs", "data"):
        if key not in result:
            parser.error(f"{args.result} has no {key!r}: it is not a ranking benchmark result")
    if not (args.run / "ratings.json").exists() and args.run.name != "run":
        parser.error(f"{args.run} has no ratings.json; a missing run is made as WORK/run (the ranking's layout): "
                     "pass --run WORK/run, or rate that run first with 'hwnas rate --run'")
    return args, result


def rate_missing_run(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Teacher, distillation and rating of ``--run`` with the ranking result's recipe, when it is not rated yet."""
    if (args.run / "ratings.json").exists():
        return
    from ranking import hwnas_stage

    print(f"{args.run} has no rated supernets: training the teacher, distilling and rating (the ranking's "
          "defaults)", flush=True)
    recipe = result.get("recipe", {})
    distill = result.get("distill") or {}
    teacher_epochs = args.teacher_epochs or int(result.get("teacher_epochs", 20))
    hwnas_stage(str(args.run.parent), result["data"], teacher_epochs,
                int(result.get("distill_epochs", 10)), float(distill.get("lr", 0.02)),
                bool(recipe.get("augment", True)), float(recipe.get("augment_strength") or 1.0),
                recipe.get("grad_clip", 1.0), "cpu")


def variant_scores(scorer: SupernetScorer, archs: list[Any], result: dict[str, Any], block_scores_only: bool
                   ) -> tuple[dict[str, Any], np.ndarray, list[dict[str, float]]]:
    """Every rating variant's score of ``archs`` (higher should mean more accurate), the per-block l1_rel ratings
    they come from, and the stitched passes' measurements (none with ``block_scores_only``)."""
    from hwnas.supernet.ratings import load_ratings

    space = scorer.space
    l1, mse = load_ratings(scorer.run, "l1_rel", pooled=False), load_ratings(scorer.run, "mse_rel", pooled=False)
    blocks = np.array([[l1[b][str(c)] for b, c in enumerate(space.blocks_of(a))] for a in archs])
    mse_sum = [sum(mse[b][str(c)] for b, c in enumerate(space.blocks_of(a))) for a in archs]
    stitched: list[dict[str, float]] = []
    swap: list[float] = []
    for index, arch in enumerate([] if block_scores_only else archs):
        stitched.append(scorer.stitched(arch))
        swap.append(scorer.swap_kl(arch))
        print(f"  {index + 1}/{len(archs)} {arch}: stitched accuracy {stitched[-1]['accuracy']:.4f}, KL "
              f"{stitched[-1]['kl']:.4f}; swap KL {swap[-1]:.4f}", flush=True)
    macs = np.array(result["macs"], dtype=float)
    standardised = (blocks - blocks.mean(0)) / np.where(blocks.std(0) > 0, blocks.std(0), 1)
    target = np.array(result["test_accuracy"])
    scores: dict[str, Any] = {
        "l1_rel sum (hwnas)": -blocks.sum(1),
        "l1_rel sum, the ranking run's supernets": [-r for r in result["ratings"]],
        "mse_rel sum": [-m for m in mse_sum],
        "z-scored l1_rel sum": -standardised.sum(1),
        **({} if block_scores_only else {
            "stitched accuracy": [s["accuracy"] for s in stitched],
            "stitched cross-entropy": [-s["cross_entropy"] for s in stitched],
            "stitched KL to teacher": [-s["kl"] for s in stitched],
            "swap KL sum": [-s for s in swap]}),
        "calibrated block weights (leave-one-out)": leave_one_out(blocks, target),
        "calibrated block weights + MACs (leave-one-out)": leave_one_out(np.c_[blocks, macs / 1e6], target),
        "MACs (proxy)": macs,
    }
    return scores, blocks, stitched


def main() -> None:
    args, result = parse_arguments()
    torch.set_num_threads(1)
    started = time.perf_counter()
    rate_missing_run(args, result)
    scorer = SupernetScorer(args.run, args.calibration_samples)
    if scorer.run.config.data != result["data"]:
        refuse(f"{args.run} was trained on {scorer.run.config.data}, the result on {result['data']}")
    archs = [scorer.space.parse(a) for a in result["archs"]]
    accuracies = result["test_accuracy"]
    scores, blocks, stitched = variant_scores(scorer, archs, result, args.block_scores_only)
    table = {name: correlation(values, accuracies) for name, values in scores.items()}
    per_block = [correlation(-blocks[:, b], accuracies)["kendall_tau"] for b in range(blocks.shape[1])]
    ceiling = result.get("noise_ceiling_kendall_tau")
    print_table([[name, f"{v['kendall_tau']:.3f}", f"{v['spearman_rho']:.3f}"] for name, v in table.items()],
                ["score", "Kendall tau", "Spearman rho"])
    print(f"each block's l1_rel alone: Kendall tau {', '.join(f'{t:.3f}' for t in per_block)}; noise ceiling of the "
          f"accuracies {ceiling if ceiling is None else round(ceiling, 3)}; this run's teacher "
          f"{scorer.teacher_val_accuracy:.4f} on val")
    png = result_path("rating_variants", args.name, ".png")
    plot(png, {n: v["kendall_tau"] for n, v in table.items()}, ceiling,
         f"{len(archs)} archs of {args.result.stem}, one set of block supernets")
    write_result("rating_variants", args.name, {
        "result": shown_path(args.result),
        "run": str(args.run), "space": SPACE, "data": result["data"], "archs": [str(a) for a in archs],
        "accuracy": accuracies, "accuracy_measure": result.get("accuracy_measure", "test_accuracy"),
        "methods": table, "per_block_kendall_tau": per_block, "noise_ceiling_kendall_tau": ceiling,
        "scores": {name: [float(v) for v in values] for name, values in scores.items()},
        "stitched": stitched, "calibration_samples": args.calibration_samples,
        "teacher_val_accuracy": scorer.teacher_val_accuracy, "wall_s": time.perf_counter() - started,
        "plot": str(png.relative_to(ROOT)),
    })


if __name__ == "__main__":
    main()
