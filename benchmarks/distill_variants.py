"""Benchmark: does a change to the supernet recipe rank architectures better? Variants scored side by side.

Each variant is a set of rated hwnas runs of one teacher, one per distillation seed (``hwnas distill`` with the
variant's options, then ``hwnas rate``). Every seed's rating and the variants' seed-mean ratings are scored against
the stand-alone accuracies of a stored ranking result (default ``ranking_100_s1``: 100 architectures), with no child
trained again. Each variant's seed-mean rating gets a 95% bootstrap interval of Kendall tau (architectures drawn with
replacement, ``rank_noise.bootstrap_taus``) and its partial tau with MACs held fixed, and its difference to the
first variant is read draw by draw on the same draws. The per-seed taus show the distillation-seed spread, which the
architecture bootstrap does not contain: a difference smaller than that spread is not a finding.

Results: ``benchmarks/docs/distill_variants.md``.

    python benchmarks/distill_variants.py \\
        --variant "shared prefixes, 10 epochs=runs/bench-twins/run-seed0,runs/bench-twins/run-seed1,..." \\
        --variant "separate depths, 20 epochs=runs/bench-twins/run-seed0-sd,..."
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, ROOT, finish_tau_plot, print_table, refuse, result_path, shown_path, write_result
from ranking import rating_of
from scipy.stats import kendalltau

DEFAULT_RESULT = RESULTS / "ranking" / "ranking_100_s1.json"


def parse_variant(text: str) -> tuple[str, list[Path]]:
    """``NAME=RUN[,RUN...]`` as (name, run paths)."""
    name, sep, runs = text.partition("=")
    paths = [Path(p) for p in runs.split(",") if p]
    if not sep or not name.strip() or not paths:
        raise argparse.ArgumentTypeError(f"a variant is NAME=RUN[,RUN...] (rated runs, one per distillation seed), "
                                         f"got {text!r}")
    return name.strip(), paths


def plot(path: Path, entries: dict[str, dict[str, Any]], title: str) -> None:
    """Each variant's seed-mean tau with its 95% interval, its seeds' taus as dots, and its partial tau given MACs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(entries)
    figure, axis = plt.subplots(figsize=(1.6 * len(names) + 3, 4.2))
    for i, name in enumerate(names):
        entry = entries[name]
        low, high = entry["mean_rating"]["interval_95"]
        tau = entry["mean_rating"]["kendall_tau"]
        axis.errorbar(i - 0.1, tau, yerr=[[tau - low], [high - tau]], fmt="o", color="tab:blue", capsize=4,
                      label="seed-mean rating [95%]" if i == 0 else None)
        axis.scatter([i - 0.1] * len(entry["per_seed_tau"]), entry["per_seed_tau"], color="tab:blue", alpha=0.35,
                     s=14, label="each distillation seed" if i == 0 else None)
        partial = entry["mean_rating"]["partial_given_macs"]
        axis.errorbar(i + 0.1, partial["kendall_tau"],
                      yerr=[[partial["kendall_tau"] - partial["interval_95"][0]],
                            [partial["interval_95"][1] - partial["kendall_tau"]]],
                      fmt="s", color="tab:orange", capsize=4, label="partial tau given MACs [95%]" if i == 0 else None)
    for score, color in (("SPOS", "tab:green"), ("MACs", "tab:grey")):
        axis.axhline(entries[names[0]]["reference"][score], color=color, linestyle=":", label=score)
    finish_tau_plot(figure, axis, path, f"{title}\ngrey: the 0.65 target", names, 0.8, [None] * len(names), fontsize=7)


def parse_arguments() -> tuple[argparse.Namespace, dict[str, list[Path]]]:
    """The command line, checked before any work (a bad argument exits 2 with what is accepted): the options and the
    variants, by name."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=parse_variant, action="append", required=True,
                        help="NAME=RUN[,RUN...]: a recipe's rated runs, one per distillation seed; the first is the "
                             "one the others are compared with (give >= 2 variants)")
    parser.add_argument("--result", type=Path, default=DEFAULT_RESULT,
                        help="a ranking benchmark result: its architectures and stand-alone accuracies")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--name", default="distill_variants")
    args = parser.parse_args()
    variants = dict(args.variant)
    if len(variants) != len(args.variant) or len(variants) < 2:
        parser.error("give >= 2 variants with different names")
    if args.resamples < 100:
        parser.error(f"--resamples must be >= 100 for a 95% interval, got {args.resamples}")
    if not args.result.exists():
        parser.error(f"no ranking result at {args.result}; run benchmarks/ranking.py first or pass --result")
    for runs in variants.values():
        for path in runs:
            if not (path / "ratings.json").exists():
                parser.error(f"{path} has no ratings.json; distill and rate it ('hwnas distill --run {path}', "
                             f"'hwnas rate --run {path}')")
    return args, variants


def variant_scores(variants: dict[str, list[Path]], space: Any, archs: list[Any], accuracy: list[float], result: Path
                   ) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, list[Any]]]:
    """Per variant: its seeds' mean rating of every architecture (negated: higher is better), each seed's tau
    against ``accuracy``, and each run's block-0 supernet recipe. Exits 2 when a variant rates another space."""
    from hwnas.run import open_run
    from hwnas.supernet.ratings import load_ratings
    from profilers.files import read_json

    scores: dict[str, list[float]] = {}
    per_seed: dict[str, list[float]] = {}
    recipes: dict[str, list[Any]] = {}
    for name, paths in variants.items():
        opened = [open_run(p) for p in paths]
        if {run.config.space for run in opened} != {space.name}:
            refuse(f"variant {name!r}: its runs do not all rate {space.name}, the space {result} ranks")
        by_seed = [[-rating_of(space, load_ratings(run), a) for a in archs] for run in opened]
        per_seed[name] = [float(kendalltau(s, accuracy).statistic) for s in by_seed]
        scores[name] = [statistics.fmean(v) for v in zip(*by_seed)]
        recipes[name] = [read_json(p / "ratings.json", "ratings")["blocks"][0]["supernet"] for p in paths]
    return scores, per_seed, recipes


def variant_row(name: str, entry: dict[str, Any]) -> list[str]:
    """One variant's line of the table."""
    seeds = ", ".join(f"{t:.3f}" for t in entry["per_seed_tau"])
    rating = entry["mean_rating"]
    low, high = rating["interval_95"]
    diff = entry.get("minus_first")
    return [name, seeds, f"{statistics.fmean(entry['per_seed_tau']):.3f}", f"{rating['kendall_tau']:.3f} [{low:.2f}, "
            f"{high:.2f}]", "{:.3f} [{:.2f}, {:.2f}]".format(rating["partial_given_macs"]["kendall_tau"],
                                                          *rating["partial_given_macs"]["interval_95"]),
            "-" if diff is None else "{:+.3f} [{:+.2f}, {:+.2f}]".format(diff["kendall_tau"], *diff["interval_95"])]


def main() -> None:
    args, variants = parse_arguments()
    from rank_noise import bootstrap_taus, partial_tau, percentile_interval

    from profilers.files import read_json
    from search_spaces import get_space

    started = time.perf_counter()
    result = read_json(args.result, "ranking result")
    space = get_space(result["space"])
    archs = [space.parse(a) for a in result["archs"]]
    per_seed_accuracy = result["test_accuracy_per_seed"]
    accuracy = [statistics.fmean(v) for v in zip(*per_seed_accuracy)]
    macs = result["macs"]
    reference = {"SPOS": float(kendalltau(result["spos_val_accuracy"], accuracy).statistic),
                 "MACs": float(kendalltau(macs, accuracy).statistic)}
    scores, per_seed, recipes = variant_scores(variants, space, archs, accuracy, args.result)
    draws = bootstrap_taus(scores, per_seed_accuracy, args.resamples)
    partial_draws = bootstrap_taus(scores, per_seed_accuracy, args.resamples, control=macs)
    first = next(iter(variants))
    entries: dict[str, dict[str, Any]] = {}
    for name, values in scores.items():
        tau = float(kendalltau(values, accuracy).statistic)
        entries[name] = {
            "runs": [str(p) for p in variants[name]], "per_seed_tau": per_seed[name],
            "supernet_of_block0": recipes[name], "reference": reference,
            "mean_rating": {"kendall_tau": tau, "interval_95": list(percentile_interval(draws[name])),
                            "partial_given_macs": {"kendall_tau": partial_tau(values, accuracy, macs),
                                                   "interval_95": list(percentile_interval(partial_draws[name]))}},
        }
        if name != first:
            entries[name]["minus_first"] = {"kendall_tau": tau - entries[first]["mean_rating"]["kendall_tau"],
                                            "interval_95": list(percentile_interval(draws[name] - draws[first]))}
    print(f"{args.result.stem}: {len(archs)} archs x {len(per_seed_accuracy)} seed(s); SPOS tau "
          f"{reference['SPOS']:.3f}, MACs {reference['MACs']:.3f}")
    print_table([variant_row(name, entry) for name, entry in entries.items()],
                ["variant", "tau per distillation seed", "their mean", "seed-mean rating [95%]",
                 "partial given MACs [95%]", f"minus {first!r} [95%]"])
    png = result_path("distill_variants", args.name, ".png")
    plot(png, entries, f"supernet recipes on {args.result.stem} ({len(archs)} archs)")
    write_result("distill_variants", args.name, {
        "result": shown_path(args.result),
        "archs": len(archs), "accuracy_seeds": len(per_seed_accuracy), "resamples": args.resamples,
        "method": "each variant's ratings (pooled as the search loads them), per seed and averaged over its seeds, "
                  "against the seed-averaged stand-alone accuracies; percentile bootstrap over architectures, the "
                  "same draws for every variant",
        "variants": entries, "wall_s": time.perf_counter() - started, "plot": str(png.relative_to(ROOT)),
    })


if __name__ == "__main__":
    main()
