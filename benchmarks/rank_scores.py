"""Benchmark: rating methods and proxies scored side by side against a ranking ground truth, without training.

The ground truth is a ``ground_truth.py`` result (architectures in MACs bands, each trained stand-alone with several
seeds). Scores, each oriented so that higher should mean more accurate:

- size: MACs and parameters (from the ground truth);
- zero-cost proxies at initialisation, computed here for every architecture: synflow (the sum of
  ``|theta * dR/dtheta|`` with ``R`` the output sum of the network with absolute weights on an all-ones input,
  float64, BatchNorm in eval mode) and NASWOT (``log |det K|``, ``K`` the kernel of agreeing activation signs over a
  batch of training images, taken at the input of every activation);
- SPOS (``--spos WORK``): a single-path supernet trained on labels (``spos.py``), each architecture scored by its
  path's validation accuracy;
- hwnas ratings of rated runs of the same space and data (``--run RUN``, repeatable): each run's first
  distillation seed, and its seeds combined (what ``hwnas search`` reads) when it has them. Ratings are l1 scores
  (lower is better), so they enter negated.

For each score: Kendall tau and Spearman rho against the seed-averaged accuracy, the partial tau given MACs (what it
orders beyond size), the mean tau within the MACs bands (where size cannot rank), what a search with the score picks
under MACs budgets (``rank_noise.budgeted_picks``: gain over a random pick and regret, in accuracy points), bootstrap
95% intervals of tau and of the partial tau (same draws for every score), and the score's cost in seconds (for the
proxies: computing it for every architecture; for ratings: the distillation and rating wall time the run recorded).
A partial ground truth (seeds still training) is scored on the architectures trained so far, each with the seeds
it has; the JSON says how many.

    python benchmarks/rank_scores.py --truth benchmarks/results/ground_truth/glyphs.json --run runs/glyphs-dna
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS, print_table, write_result
from rank_noise import bootstrap_taus, budgeted_picks, noise_ceiling_tau, partial_tau, percentile_interval
from scipy.stats import kendalltau, spearmanr
from torch import nn

from hwnas.search.proxies import naswot


def synflow(model: nn.Module, example: torch.Tensor) -> float:
    """Synflow at initialisation (Tanaka et al. 2020; as a NAS proxy, Abdelfattah et al. 2021)."""
    model = model.double().eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.abs_()
    model.zero_grad()
    output = model(torch.ones_like(example, dtype=torch.float64))
    output.sum().backward()
    with torch.no_grad():
        total = sum(float((p * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None)
    return float(np.log(total)) if total > 0 else float("-inf")


def proxy_scores(space: Any, archs: list[Hashable], images: torch.Tensor, seed: int = 0
                 ) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Synflow and NASWOT of every architecture (each built at initialisation with ``seed``) and each proxy's total
    seconds."""
    proxies: dict[str, Callable[[nn.Module], float]] = {
        "synflow (proxy)": lambda m: synflow(m, space.example_input()),
        "NASWOT (proxy)": lambda m: naswot(m, images)}
    scores: dict[str, list[float]] = {name: [] for name in proxies}
    seconds = dict.fromkeys(proxies, 0.0)
    for arch in archs:
        for name, proxy in proxies.items():
            torch.manual_seed(seed)
            model = space.build(arch)
            started = time.perf_counter()
            scores[name].append(proxy(model))
            seconds[name] += time.perf_counter() - started
    return scores, seconds


def rating_scores(run_path: Path, archs: list[Hashable]) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    """A rated run's scores (negated l1: higher is better): its first seed's ratings and, when it has distillation
    seeds, their combination; with the wall seconds its distillation and rating took, where recorded."""
    from hwnas.run import open_run
    from hwnas.supernet.ratings import load_ratings, ratings_path
    from profilers.files import read_json

    run = open_run(run_path)
    label = run_path.name
    own = load_ratings(run, seeds=False)
    scores = {f"hwnas {label} (1 seed)": [-sum(own[b][str(c)] for b, c in enumerate(run.space.blocks_of(a)))
                                          for a in archs]}
    combined = load_ratings(run, seeds=True)
    if combined != own:
        scores[f"hwnas {label} (seeds combined)"] = [
            -sum(combined[b][str(c)] for b, c in enumerate(run.space.blocks_of(a))) for a in archs]
    recorded = read_json(ratings_path(run), "ratings")
    seconds = _recorded_seconds(run.path, recorded)
    return scores, dict.fromkeys(scores, seconds)


def spos_scores(work: Path, data: str, space: Any, archs: list[Hashable], epochs: int,
                ) -> tuple[dict[str, list[float]], dict[str, float]]:
    """SPOS (uniform single-path training on labels, ``spos.py``: entangled weights, AdamW, 5 warm-up epochs on
    the largest path, no augmentation) trained or resumed in ``work`` to ``epochs``; each architecture's score is
    its path's validation accuracy after BatchNorm re-estimation. Seconds: this call's training (0 when the
    checkpoint was complete) plus the scoring."""
    from spos import SPOSConfig, SPOSSupernet, spos_accuracy, train_spos

    from hwnas.data import load_data

    bundle = load_data(data, space.resolution)
    torch.manual_seed(0)
    supernet = SPOSSupernet(space, sharing="entangled")
    config = SPOSConfig(epochs=epochs, sharing="entangled")
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_spos(supernet, bundle, config, work / f"spos_{data}.pt", show_progress=True)
    values = [spos_accuracy(supernet, arch, bundle) for arch in archs]
    return {"SPOS": values}, {"SPOS": time.perf_counter() - started}


def _recorded_seconds(folder: Path, ratings: dict[str, Any]) -> float | None:
    """The wall seconds of the run's whole pipeline when ``rating_methods.py`` timed it (``pipeline_seconds.json``:
    teacher, distillation and rating); else distillation seconds (every block's epochs, from its checkpoint) plus
    rating seconds where the ratings file records them; None when nothing is recorded."""
    from hwnas.devices import load_checkpoint

    timed = folder / "pipeline_seconds.json"
    if timed.exists():
        return float(json.loads(timed.read_text())["total_s"])

    total = 0.0
    for checkpoint in sorted((folder / "supernet").glob("block*.pt")):
        history = load_checkpoint(checkpoint).get("history") or []
        total += sum(float(h.get("seconds", 0.0)) for h in history)
    rated = ratings.get("seconds")
    return total + float(rated) if rated is not None else (total or None)


def within_band_tau(score: list[float], accuracy: list[float], bands: list[int]) -> float | None:
    """Mean Kendall tau over the MACs bands with 3 or more architectures (None when no band has)."""
    taus = []
    for band in sorted(set(bands)):
        inside = [i for i, b in enumerate(bands) if b == band]
        if len(inside) >= 3:
            tau = kendalltau([score[i] for i in inside], [accuracy[i] for i in inside]).statistic
            taus.append(0.0 if tau != tau else float(tau))
    return statistics.fmean(taus) if taus else None


def truth_table(truth: dict[str, Any]) -> tuple[list[int], list[list[float]]]:
    """The architectures trained so far (indices) and, per seed, their accuracies (each architecture's missing seeds
    filled with its mean, so seed-averaged accuracies are the means of the seeds it has)."""
    per_seed = truth["test_accuracy_per_seed"]
    trained = [i for i in range(len(truth["archs"])) if any(s[i] is not None for s in per_seed)]
    filled = []
    for seed in per_seed:
        row = []
        for i in trained:
            have = [s[i] for s in per_seed if s[i] is not None]
            row.append(seed[i] if seed[i] is not None else statistics.fmean(have))
        filled.append(row)
    return trained, filled


def paired_differences(taus: dict[str, np.ndarray], partials: dict[str, np.ndarray],
                       pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """For each pair of scores: the mean over bootstrap draws of their difference in tau and in partial tau given
    MACs, with 95% intervals (the same draws for both, so the interval is of the difference itself: one that excludes
    0 says which rates better)."""
    out = []
    for first, second in pairs:
        tau, partial = taus[first] - taus[second], partials[first] - partials[second]
        out.append({"pair": f"{first} - {second}", "tau": float(tau.mean()), "tau_interval": percentile_interval(tau),
                    "partial_tau": float(partial.mean()), "partial_tau_interval": percentile_interval(partial)})
    return out


def compared_pairs(names: list[str]) -> list[tuple[str, str]]:
    """The pairs worth a paired difference: every two trained scores (hwnas ratings, SPOS), and each rating combined
    with NASWOT against the rating alone and against NASWOT alone."""
    trained = [n for n in names if n.startswith(KEPT) and not n.endswith(COMBINED)]
    pairs = [(first, second) for i, first in enumerate(trained) for second in trained[i + 1:]]
    for name in names:
        if name.endswith(COMBINED):
            pairs += [(name, name.removesuffix(f" {COMBINED}")), (name, NASWOT)]
    return pairs


def load_truth(path: Path, bands: int = 5) -> dict[str, Any]:
    """A ground truth as ``ground_truth.py`` writes it; a ``ranking.py`` result (architectures as strings, MACs and
    params beside them, e.g. ``ranking_100``) is brought to that form, its architectures cut into ``bands`` MACs
    quantile bands."""
    truth = json.loads(path.read_text())
    if truth["archs"] and isinstance(truth["archs"][0], dict):
        return truth
    order = np.argsort(truth["macs"], kind="stable")
    band_of = np.empty(len(order), dtype=int)
    band_of[order] = np.arange(len(order)) * bands // len(order)
    archs = [{"arch": a, "macs": m, "params": p, "band": int(b)}
             for a, m, p, b in zip(truth["archs"], truth["macs"], truth["params"], band_of)]
    trainings = sum(v is not None for seed in truth["test_accuracy_per_seed"] for v in seed)
    return truth | {"archs": archs, "name": path.stem, "trainings_done": trainings, "trainings_planned": trainings,
                    "summary": {"noise_ceiling_kendall_tau": truth.get("noise_ceiling_kendall_tau")}}


NASWOT = "NASWOT (proxy)"
COMBINED = "+ NASWOT"  # a rating combined with NASWOT
KEPT = ("hwnas ", "SPOS")  # scores --rescore takes from an earlier result (what cannot be computed again cheaply)


def parse_arguments() -> argparse.Namespace:
    """The command line, checked before any work (a bad argument exits 2 with what is accepted); ``earlier`` is the
    ``--rescore`` result, read."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--truth", type=Path, default=RESULTS / "ground_truth" / "glyphs.json",
                        help="a ground_truth.py result")
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="a rated hwnas run of the ground truth's space and data (repeatable)")
    parser.add_argument("--spos", type=Path, default=None, metavar="WORK",
                        help="also score SPOS, trained (or resumed) in this folder")
    parser.add_argument("--spos-epochs", type=int, default=40, help="SPOS supernet epochs (default 40)")
    parser.add_argument("--rescore", type=Path, default=None, metavar="RESULT",
                        help="an earlier rank_scores result whose rating and SPOS scores are scored again against "
                             "the ground truth as it is now (its runs need not exist any more)")
    parser.add_argument("--proxy-batch", type=int, default=64, help="training images NASWOT reads")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap draws")
    parser.add_argument("--name", default=None, help="result name (default: the ground truth's)")
    args = parser.parse_args()
    if not args.truth.exists():
        parser.error(f"--truth {args.truth} does not exist; make one with benchmarks/ground_truth.py")
    if args.rescore is not None and not args.rescore.exists():
        parser.error(f"--rescore {args.rescore} does not exist; give a benchmarks/results/rank_scores/*.json")
    if args.proxy_batch < 2 or args.resamples < 1 or args.spos_epochs < 6:
        parser.error("--proxy-batch must be >= 2, --resamples >= 1 and --spos-epochs >= 6 (5 are warm-up)")
    truth = json.loads(args.truth.read_text())
    for run in args.run:
        if not (run / "ratings.json").exists():
            parser.error(f"{run} has no ratings.json; rate it with 'hwnas rate --run {run}'")
        recorded = json.loads((run / "run.json").read_text())
        if (recorded.get("space"), recorded.get("data")) != (truth.get("space"), truth.get("data")):
            parser.error(f"{run} rates {recorded.get('space')} on {recorded.get('data')}; the ground truth is "
                         f"{truth.get('space')} on {truth.get('data')}")
    args.earlier = None if args.rescore is None else json.loads(args.rescore.read_text())
    if args.earlier is not None and ((args.earlier.get("space"), args.earlier.get("data"))
                                     != (truth.get("space"), truth.get("data"))):
        parser.error(f"--rescore {args.rescore} scored {args.earlier.get('space')} on {args.earlier.get('data')}; "
                     f"the ground truth is {truth.get('space')} on {truth.get('data')}")
    trained, _ = scored_rows(load_truth(args.truth), args.earlier)
    if len(trained) < 4:
        parser.error(f"{args.truth} has {len(trained)} trained architectures to score"
                     + (f" that {args.rescore} scored" if args.rescore else "") + "; score it once 4 or more are")
    return args


def scored_rows(truth: dict[str, Any], earlier: dict[str, Any] | None) -> tuple[list[int], list[list[float]]]:
    """``truth_table`` of the ground truth, kept to the architectures an earlier result (``--rescore``) scored."""
    trained, per_seed = truth_table(truth)
    if earlier is None:
        return trained, per_seed
    scored = set(earlier["archs"])
    keep = [k for k, i in enumerate(trained) if truth["archs"][i]["arch"] in scored]
    return [trained[k] for k in keep], [[row[k] for k in keep] for row in per_seed]


def earlier_scores(result: dict[str, Any], archs: list[str]) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    """The rating and SPOS scores of an earlier rank_scores ``result`` for ``archs`` (architecture strings it
    scored), with the seconds it recorded."""
    position = {arch: i for i, arch in enumerate(result["archs"])}
    scores, seconds = {}, {}
    for name, entry in result["scores"].items():
        if name.startswith(KEPT):
            scores[name] = [float("-inf") if entry["values"][position[a]] is None else entry["values"][position[a]]
                            for a in archs]
            seconds[name] = entry.get("seconds")
    return scores, seconds


def scored_noise_ceiling(truth: dict[str, Any], trained: list[int], per_seed: list[list[float]]) -> float | None:
    """Expected tau of a perfect score against the seed means of the scored architectures, each mean carrying the
    noise of the seeds it has (one training's seed variance from the ground truth's summary: a partial ground truth
    gets a provisional ceiling); None before any architecture has two seeds."""
    have = [sum(s[i] is not None for s in truth["test_accuracy_per_seed"]) for i in trained]
    if len(trained) < 3:
        return None
    if min(have) == len(per_seed) >= 2:  # every seed of every architecture: the noise is measured on them
        return noise_ceiling_tau(per_seed)
    seed_std = (truth.get("summary") or {}).get("seed_std")
    if not seed_std:
        return None
    effective = seed_std ** 2 * len(per_seed) * statistics.fmean(1 / n for n in have)
    return noise_ceiling_tau(per_seed, seed_variance=effective)


def collect_scores(args: argparse.Namespace, truth: dict[str, Any], space: Any, trained: list[int]
                   ) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    """Every score of the architectures ``trained`` (indices into the ground truth), with its cost in seconds."""
    from hwnas.data import load_data

    archs = [space.parse(truth["archs"][i]["arch"]) for i in trained]
    bundle = load_data(truth["data"], space.resolution)
    images = torch.stack([bundle.datasets["train"][i][0] for i in range(args.proxy_batch)])
    scores: dict[str, list[float]] = {"MACs (size)": [float(truth["archs"][i]["macs"]) for i in trained],
                                      "params (size)": [float(truth["archs"][i]["params"]) for i in trained]}
    seconds: dict[str, float | None] = dict.fromkeys(scores, 0.0)
    proxies, proxy_seconds = proxy_scores(space, archs, images)
    scores |= proxies
    seconds |= proxy_seconds
    if args.earlier is not None:
        kept, kept_seconds = earlier_scores(args.earlier, [truth["archs"][i]["arch"] for i in trained])
        scores |= kept
        seconds |= kept_seconds
    if args.spos is not None:
        spos, spos_seconds = spos_scores(args.spos, truth["data"], space, archs, args.spos_epochs)
        scores |= spos
        seconds |= spos_seconds
    for run in args.run:
        rated, rated_seconds = rating_scores(run, archs)
        scores |= rated
        seconds |= rated_seconds
    return with_naswot(scores, seconds)


def with_naswot(scores: dict[str, list[float]], seconds: dict[str, float | None]
                ) -> tuple[dict[str, list[float]], dict[str, float | None]]:
    """``scores`` with each hwnas rating (its seeds combined where it has them) also combined with NASWOT: the mean of
    the two ranks (``hwnas.search.proxies.rank_mean``), costing both."""
    from hwnas.search.proxies import rank_mean

    out, costs = dict(scores), dict(seconds)
    ratings = [n for n in scores if n.startswith("hwnas ") and not n.endswith(COMBINED)]
    for name in ratings:
        if name.endswith("(1 seed)") and name.replace("(1 seed)", "(seeds combined)") in ratings:
            continue
        combined = f"{name} {COMBINED}"
        out[combined] = rank_mean([scores[name], scores[NASWOT]])
        parts = (seconds.get(name), seconds.get(NASWOT))
        costs[combined] = None if None in parts else sum(parts)  # type: ignore[arg-type]
    return out, costs


def score_entries(scores: dict[str, list[float]], seconds: dict[str, float | None], per_seed: list[list[float]],
                  macs: list[float], bands: list[int], resamples: int
                  ) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Each score's entry (taus, partial tau, band tau, intervals, budgeted picks, cost, values) and the paired
    differences between the trained scores (the hwnas ratings and SPOS)."""
    accuracy = [statistics.fmean(v) for v in zip(*per_seed)]
    taus = bootstrap_taus(scores, per_seed, resamples)
    partials = bootstrap_taus(scores, per_seed, resamples, control=macs)
    picks = budgeted_picks(scores, accuracy, macs)
    table = {}
    for name, score in scores.items():
        table[name] = {"kendall_tau": float(kendalltau(score, accuracy).statistic),
                       "spearman_rho": float(spearmanr(score, accuracy).statistic),
                       "partial_tau_given_macs": partial_tau(score, accuracy, macs),
                       "within_band_tau": within_band_tau(score, accuracy, bands),
                       "tau_interval": percentile_interval(taus[name]),
                       "partial_tau_interval": percentile_interval(partials[name]),
                       "budgeted_gain_pts": 100 * picks[name]["gain_over_random"],
                       "budgeted_regret_pts": 100 * picks[name]["regret"], "seconds": seconds.get(name),
                       "values": [v if np.isfinite(v) else None for v in score]}
    return table, paired_differences(taus, partials, compared_pairs(list(scores)))


def print_scores(table: dict[str, dict[str, Any]], differences: list[dict[str, Any]]) -> None:
    """The scores' table and, when there are several trained scores, their paired differences."""
    rows = []
    for name, entry in table.items():
        band, low, high = entry["within_band_tau"], *entry["tau_interval"]
        rows.append([name, f"{entry['kendall_tau']:.3f} [{low:.2f}, {high:.2f}]", f"{entry['spearman_rho']:.3f}",
                     f"{entry['partial_tau_given_macs']:.3f}", "-" if band is None else f"{band:.3f}",
                     f"{entry['budgeted_regret_pts']:.2f}", "-" if entry["seconds"] is None else f"{entry['seconds']:.1f}"])
    print_table(rows, ["score", "tau [95%]", "rho", "partial tau | MACs", "tau within bands", "regret (pts)", "s"])
    if differences:
        print_table([[d["pair"], f"{d['tau']:+.3f} [{d['tau_interval'][0]:+.2f}, {d['tau_interval'][1]:+.2f}]",
                      f"{d['partial_tau']:+.3f} [{d['partial_tau_interval'][0]:+.2f}, "
                      f"{d['partial_tau_interval'][1]:+.2f}]"] for d in differences],
                    ["ratings compared", "tau difference [95%]", "partial tau difference [95%]"])


def main() -> None:
    args = parse_arguments()
    torch.set_num_threads(1)
    started = time.perf_counter()

    from search_spaces import get_space

    truth = load_truth(args.truth)
    space = get_space(truth["space"])
    trained, per_seed = scored_rows(truth, args.earlier)
    macs = [float(truth["archs"][i]["macs"]) for i in trained]
    bands = [int(truth["archs"][i]["band"]) for i in trained]
    scores, seconds = collect_scores(args, truth, space, trained)
    table, differences = score_entries(scores, seconds, per_seed, macs, bands, args.resamples)
    accuracy = [statistics.fmean(v) for v in zip(*per_seed)]
    ceiling = scored_noise_ceiling(truth, trained, per_seed)
    print(f"{len(trained)} of {len(truth['archs'])} architectures trained "
          f"({truth.get('trainings_done')} of {truth.get('trainings_planned')} trainings); "
          f"accuracy {min(accuracy):.4f}-{max(accuracy):.4f}; noise ceiling "
          + ("unknown" if ceiling is None else f"{ceiling:.3f}"))
    print_scores(table, differences)
    seeds_had = [sum(s[i] is not None for s in truth["test_accuracy_per_seed"]) for i in trained]
    write_result("rank_scores", args.name or truth["name"], {
        "truth": str(args.truth), "space": space.name, "data": truth["data"], "archs_scored": len(trained),
        "archs_planned": len(truth["archs"]), "trainings_done": truth.get("trainings_done"),
        "seeds_per_arch": seeds_had, "noise_ceiling_kendall_tau": ceiling,
        "archs": [truth["archs"][i]["arch"] for i in trained], "accuracy": accuracy, "scores": table,
        "runs": [str(r) for r in args.run], "rescored": None if args.rescore is None else str(args.rescore),
        "resamples": args.resamples, "proxy_batch": args.proxy_batch,
        "spos": None if args.spos is None else {"work": str(args.spos), "epochs": args.spos_epochs},
        "paired_differences": differences, "wall_s": time.perf_counter() - started})


if __name__ == "__main__":
    main()
