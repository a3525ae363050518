"""Benchmark: how sure are the ranking results? Bootstrap intervals of every score's Kendall tau.

Each ranking result (``ranking.py``) ranks about 20 architectures, and each architecture's accuracy is the mean of a
few stand-alone trainings. Its taus are therefore rough numbers. For every stored result, this draws the
architectures again with replacement, each with its score and seed-averaged accuracy (``rank_noise``, 2000
draws), and reports each score's 95% interval, the interval of the gap between hwnas and SPOS on the same draws (the second
target asks for a gap of 0.2), and the share of draws in which hwnas reaches 0.65. No child is trained again.

Scores: the rating stored in the result (its run's first distillation seed), SPOS, MACs and, where ``--runs`` are
rated hwnas runs of the same teacher (default: ``runs/bench-twins/run-seed{0,1,2}``, the supernets distilled with
twins sharing one module, as ``hwnas distill`` does by default; ``run_all.sh`` makes them), that first run's rating
and the runs' mean rating.

Every tau is also read on the noise-free scale (``rank_noise.noise_free_tau``: the tau against noise-free
accuracies that, through the result's seed noise, is measured as this one, score and accuracy bivariate normal), with
its interval's ends mapped the same way, and the share of draws at or above the 0.65 target as it would be measured
here (``measured_tau``): what more stand-alone seeds could show at best.

A rating that only knows size ranks like MACs. Each score's partial Kendall tau with MACs held fixed
(``rank_noise.partial_tau``, with its interval on the same draws) says what it orders beyond size: 0 when
nothing.

A search uses the rating under a budget. ``rank_noise.budgeted_picks`` reads what each score would pick among
the result's architectures under MACs budgets (the 20%, 30%, ..., 100% quantiles of their MACs): the picked
architecture's accuracy over a random pick within the budget (the mean of those that fit), and its regret (the best
that fits minus the pick), averaged over the budgets, in accuracy points; MACs itself picks the largest that fits.

    python benchmarks/rank_confidence.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, ROOT, finish_tau_plot, print_table, refuse, result_path, shown_path, write_result
from ranking import rating_of
from scipy.stats import kendalltau

RESULT_NAMES = ("ranking", "ranking_wide", "ranking_full", "ranking_full_s3", "ranking_full_s4", "ranking_100_s1",
                "ranking_100_s2", "ranking_100")
TWIN_RUNS = [ROOT / "runs" / "bench-twins" / f"run-seed{s}" for s in range(3)]
TARGET = 0.65
STORED_SCORE = "hwnas, the result's rating"
PRODUCT_SCORE = "hwnas, twins shared (1 seed)"  # what hwnas distill + rate give by default
MACS = "MACs (proxy)"


def scores_of(result: dict[str, Any], space: Any, run_ratings: list[Any]) -> dict[str, list[float]]:
    """Every score of one ranking result (higher should mean more accurate)."""
    scores = {STORED_SCORE: [-r for r in result["ratings"]]}
    if run_ratings:
        parsed = [space.parse(a) for a in result["archs"]]
        by_run = [[rating_of(space, ratings, a) for a in parsed] for ratings in run_ratings]
        scores[PRODUCT_SCORE] = [-r for r in by_run[0]]
        if len(by_run) > 1:
            scores[f"hwnas, twins shared (mean of {len(by_run)} seeds)"] = [-statistics.fmean(v) for v in zip(*by_run)]
    scores["SPOS baseline"] = result["spos_val_accuracy"]
    scores[MACS] = result["macs"]
    return scores


def plot(path: Path, summary: dict[str, dict[str, Any]]) -> None:
    """Per result, every score's tau with its 95% interval, the noise ceiling, the target and the target as the
    result's seed noise would show it (top), and its partial tau with MACs held fixed (bottom: beyond size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    scores = list(dict.fromkeys(s for entry in summary.values() for s in entry["scores"]))
    width = 0.8 / len(scores)
    figure, (axis, lower) = plt.subplots(2, 1, figsize=(2.4 * len(names) + 5, 7.6), height_ratios=(3, 2),
                                         sharex=True)
    for index, score in enumerate(scores):
        for target, key in ((axis, None), (lower, "partial_given_macs")):
            xs, taus, errors = [], [], [[], []]
            for r, name in enumerate(names):
                entry = summary[name]["scores"].get(score)
                entry = entry if key is None or entry is None else entry.get(key)
                if entry is None:
                    continue
                xs.append(r + index * width)
                taus.append(entry["kendall_tau"])
                errors[0].append(entry["kendall_tau"] - entry["interval_95"][0])
                errors[1].append(entry["interval_95"][1] - entry["kendall_tau"])
            if xs:
                target.errorbar(xs, taus, yerr=errors, fmt="o", capsize=3, color=f"C{index}",
                                label=score if key is None else None)
    for group, name in enumerate(names):  # the target as this result's seed noise would show it
        axis.hlines(summary[name]["target_as_measured_here"], group - width / 2, group + 0.8 - width / 2,
                    colors="tab:red", linestyles=":")
    lower.axhline(0.0, color="grey", linewidth=0.8)
    axis.tick_params(labelbottom=True)
    lower.set_xticks([group + 0.4 - width / 2 for group in range(len(names))], names)
    lower.set_ylabel("partial tau given MACs")
    lower.set_title("what each score orders beyond size (Kendall's partial tau, MACs held fixed)", fontsize=10)
    lower.grid(axis="y", alpha=0.3)
    finish_tau_plot(figure, axis, path, "each score's tau with its 95% bootstrap interval (architectures drawn again)\n"
                    "black dashes: noise ceiling; grey: the 0.65 target; red dots: 0.65 against noise-free "
                    "accuracies, as measured here", names, width,
                    [summary[name]["noise_ceiling_kendall_tau"] for name in names],
                    fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def parse_arguments() -> tuple[argparse.Namespace, list[Path], list[Path]]:
    """The command line, checked before any work (exit 2 with what is accepted): the options, the ranking results
    to read and the rated runs to score."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, nargs="+", default=None,
                        help="ranking benchmark results (default: those of " + ", ".join(RESULT_NAMES) + " present)")
    parser.add_argument("--runs", type=Path, nargs="*", default=None,
                        help="rated hwnas runs of the results' teacher, one per distillation seed (default: "
                             "runs/bench-twins/run-seed0..2 when rated; none: the results' own ratings only)")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--name", default="rank_confidence")
    args = parser.parse_args()
    if args.resamples < 100:
        parser.error(f"--resamples must be >= 100 for a 95% interval, got {args.resamples}")
    results = args.results or [p for n in RESULT_NAMES if (p := RESULTS / "ranking" / f"{n}.json").exists()]
    for path in results:
        if not path.exists():
            parser.error(f"no ranking result at {path}; run benchmarks/ranking.py first or pass --results")
    runs = args.runs
    if runs is None:
        runs = TWIN_RUNS if all((p / "ratings.json").exists() for p in TWIN_RUNS) else []
        if not runs:
            print("note: runs/bench-twins is not rated (run_all.sh makes it): scoring the results' own ratings only")
    for path in runs:
        if not (path / "ratings.json").exists():
            parser.error(f"{path} has no ratings.json; rate it with 'hwnas rate --run {path}'")
    return args, results, runs


def checked_result(path: Path, run_spaces: set[str]) -> tuple[dict[str, Any], Any]:
    """A ranking result and its space; exits 2 when it is not one or ranks another space than the runs rate."""
    from profilers.files import read_json
    from search_spaces import get_space

    result = read_json(path, "ranking result")
    for key in ("archs", "test_accuracy_per_seed", "ratings", "spos_val_accuracy", "macs", "space"):
        if key not in result:
            refuse(f"{path} has no {key!r}: it is not a ranking benchmark result")
    space = get_space(result["space"])
    if run_spaces and run_spaces != {space.name}:
        refuse(f"{path} ranks {space.name}, the runs rate {next(iter(run_spaces))}")
    return result, space


def score_entries(name: str, result: dict[str, Any], scores: dict[str, list[float]], resamples: int
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray], list[list[str]]]:
    """Each score's tau with its interval, the share of draws at the target, the same read against noise-free
    accuracies, and its partial tau given MACs; with the bootstrap draws of tau and the table's rows."""
    from rank_noise import NoiseModel, bootstrap_taus, partial_tau, percentile_interval

    per_seed = result["test_accuracy_per_seed"]
    means = [statistics.fmean(v) for v in zip(*per_seed)]
    draws = bootstrap_taus(scores, per_seed, resamples)
    beyond = {score: values for score, values in scores.items() if score != MACS}
    partial_draws = bootstrap_taus(beyond, per_seed, resamples, control=result["macs"])  # the same draws
    # the noise model: one training's seed variance, measured on the result's own seeds or (one seed) pooled
    # over other architectures of the same recipe, as its noise ceiling was
    seed_variance = result["accuracy_std_across_seeds"] ** 2 if len(per_seed) == 1 else None
    noise_model = NoiseModel(per_seed, seed_variance)
    target_here = noise_model.measured_tau(TARGET)
    entries, rows = {}, []
    for score, values in scores.items():
        tau = float(kendalltau(values, means).statistic)
        interval = list(percentile_interval(draws[score]))
        at_target = float(np.mean(draws[score] >= TARGET))
        free = [noise_model.noise_free_tau(t) for t in (tau, *interval)]
        at_free_target = float(np.mean(draws[score] >= target_here))
        entries[score] = {"kendall_tau": tau, "interval_95": interval, "share_of_draws_at_target": at_target,
                          "noise_free": {"kendall_tau": free[0], "interval_95": free[1:],
                                         "share_of_draws_at_target": at_free_target}}
        row = [name, score, f"{tau:.3f}", f"[{interval[0]:.2f}, {interval[1]:.2f}]", f"{100 * at_target:.0f}%",
               f"{free[0]:.2f} [{free[1]:.2f}, {free[2]:.2f}]", f"{100 * at_free_target:.0f}%"]
        if score in beyond:
            partial = partial_tau(values, means, result["macs"])
            partial_interval = list(percentile_interval(partial_draws[score]))
            entries[score]["partial_given_macs"] = {"kendall_tau": partial, "interval_95": partial_interval}
            row.append(f"{partial:.3f} [{partial_interval[0]:.2f}, {partial_interval[1]:.2f}]")
        else:
            row.append("")  # MACs itself: nothing beyond MACs to measure
        rows.append(row)
    return {"target_as_measured_here": target_here, "scores": entries}, draws, rows


def pick_entries(name: str, result: dict[str, Any], scores: dict[str, list[float]], entry: dict[str, Any],
                 hwnas: str, resamples: int) -> list[list[str]]:
    """Adds each score's budgeted pick (gain over a random pick with its interval, regret) to ``entry``, and hwnas's
    pick against the largest architecture that fits; returns the table's rows."""
    from rank_noise import bootstrap_budgeted_gains, budgeted_picks, percentile_interval

    means = [statistics.fmean(v) for v in zip(*result["test_accuracy_per_seed"])]
    picks = budgeted_picks(scores, means, result["macs"])
    gains = bootstrap_budgeted_gains(scores, means, result["macs"], resamples)
    rows = []
    for score, pick in picks.items():
        interval = list(percentile_interval(100 * gains[score]))
        entry["scores"][score]["budgeted_pick"] = {"gain_over_random_pts": 100 * pick["gain_over_random"],
                                                   "interval_95": interval, "regret_pts": 100 * pick["regret"]}
        rows.append([name, score, f"{100 * pick['gain_over_random']:+.2f}",
                     f"[{interval[0]:+.2f}, {interval[1]:+.2f}]", f"{100 * pick['regret']:.2f}"])
    versus = 100 * (gains[hwnas] - gains[MACS])
    entry["budgeted_pick_hwnas_minus_largest_that_fits"] = {
        "pts": entry["scores"][hwnas]["budgeted_pick"]["gain_over_random_pts"]
        - entry["scores"][MACS]["budgeted_pick"]["gain_over_random_pts"],
        "interval_95": list(percentile_interval(versus))}
    return rows


def print_summary(summary: dict[str, dict[str, Any]], rows: list[list[str]], pick_rows: list[list[str]]) -> None:
    """The score table, hwnas against SPOS per result, the budgeted picks and hwnas's pick against the largest that
    fits."""
    print_table(rows, ["result", "score", "Kendall tau", "95% interval", f"draws >= {TARGET}",
                       "noise-free tau [95%]", f"noise-free >= {TARGET}", "partial tau given MACs [95%]"])
    gap_rows = [[name, e["hwnas_minus_spos"]["hwnas_score"], f"{e['hwnas_minus_spos']['kendall_tau']:+.3f}",
                 "[{:+.2f}, {:+.2f}]".format(*e["hwnas_minus_spos"]["interval_95"]),
                 f"{100 * e['hwnas_minus_spos']['share_of_draws_at_0.2']:.0f}%",
                 "n/a" if e["noise_ceiling_kendall_tau"] is None else f"{e['noise_ceiling_kendall_tau']:.3f}"]
                for name, e in summary.items()]
    print_table(gap_rows, ["result", "hwnas score", "hwnas - SPOS", "95% interval", "draws >= +0.2",
                           "noise ceiling"])
    print_table(pick_rows, ["result", "score", "budgeted pick over random (pts)", "95% interval", "regret (pts)"])
    for name, e in summary.items():
        versus = e["budgeted_pick_hwnas_minus_largest_that_fits"]
        print(f"{name}: hwnas's pick minus the largest that fits, averaged over MACs budgets: {versus['pts']:+.2f} pts "
              "[{:+.2f}, {:+.2f}]".format(*versus["interval_95"]))


def main() -> None:
    args, results, runs = parse_arguments()
    from rank_noise import BUDGET_LEVELS, percentile_interval

    from hwnas.run import open_run
    from hwnas.supernet.ratings import load_ratings

    started = time.perf_counter()
    opened = [open_run(path) for path in runs]
    run_spaces = {run.config.space for run in opened}
    if len(run_spaces) > 1:
        refuse(f"the runs rate different spaces: {sorted(run_spaces)}")
    run_ratings = [load_ratings(run) for run in opened]
    summary: dict[str, dict[str, Any]] = {}
    rows, pick_rows = [], []
    for path in results:
        result, space = checked_result(path, run_spaces)
        scores = scores_of(result, space, run_ratings)
        scored, draws, score_rows = score_entries(path.stem, result, scores, args.resamples)
        rows += score_rows
        entry: dict[str, Any] = {"archs": len(result["archs"]), "seeds": len(result["test_accuracy_per_seed"]),
                                 "target_as_measured_here": scored["target_as_measured_here"],
                                 "accuracy_measure": result.get("accuracy_measure") or "test_accuracy",
                                 "noise_ceiling_kendall_tau": result["noise_ceiling_kendall_tau"],
                                 "scores": scored["scores"]}
        hwnas = PRODUCT_SCORE if run_ratings else STORED_SCORE
        pick_rows += pick_entries(path.stem, result, scores, entry, hwnas, args.resamples)
        gap = draws[hwnas] - draws["SPOS baseline"]
        entry["hwnas_minus_spos"] = {
            "hwnas_score": hwnas, "kendall_tau": entry["scores"][hwnas]["kendall_tau"]
            - entry["scores"]["SPOS baseline"]["kendall_tau"],
            "interval_95": list(percentile_interval(gap)),
            "share_of_draws_at_0.2": float(np.mean(gap >= 0.2))}
        summary[path.stem] = entry
    print_summary(summary, rows, pick_rows)
    png = result_path("rank_confidence", args.name, ".png")
    plot(png, summary)
    write_result("rank_confidence", args.name, {
        "results": [shown_path(p) for p in results],
        "runs": [str(p) for p in runs], "resamples": args.resamples,
        "method": "percentile bootstrap: architectures drawn with replacement, each with its score and seed-averaged "
                  "accuracy; the same draws for every score; partial tau given MACs: Kendall's partial tau with "
                  "MACs held fixed (what a score orders beyond size); noise-free: the tau against noise-free "
                  "accuracies that the result's seed noise attenuates to the measured one (bivariate normal model); "
                  "budgeted pick: each score's best-scored architecture within MACs budgets at the "
                  f"{', '.join(f'{q:g}' for q in BUDGET_LEVELS)} quantiles of the architectures' MACs, its accuracy "
                  "minus the mean accuracy within the budget (a random pick), and the best within minus it (regret), "
                  "averaged over the budgets, in accuracy points",
        "summary": summary, "wall_s": time.perf_counter() - started, "plot": str(png.relative_to(ROOT)),
    })


if __name__ == "__main__":
    main()
