"""Scoring against a ranking ground truth: the zero-cost proxies read the network, the partial ground truth is
averaged over the seeds each architecture has, and band taus look inside bands only."""

import math

import pytest
import torch
from rank_scores import (
    compared_pairs,
    earlier_scores,
    naswot,
    scored_noise_ceiling,
    scored_rows,
    synflow,
    truth_table,
    with_naswot,
    within_band_tau,
)

from hwnas.data import load_data
from search_spaces import get_space

NARROW = "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"
WIDE = "24:e6k5,e6k5|40:e6k5,e6k5|80:e6k5,e6k5|112:e6k5,e6k5|192:e6k5,e6k5|320:e6k5"


def _built(space, arch):
    torch.manual_seed(0)
    return space.build(space.parse(arch))


def test_synflow_grows_with_the_network_and_naswot_reads_the_images():
    space = get_space("mbconv-tiny")
    example = space.example_input()
    narrow, wide = synflow(_built(space, NARROW), example), synflow(_built(space, WIDE), example)
    assert math.isfinite(narrow) and wide > narrow  # more paths carry more synaptic flow
    images = torch.stack([load_data("digits", space.resolution).datasets["train"][i][0] for i in range(16)])
    score = naswot(_built(space, NARROW), images)
    assert math.isfinite(score)
    # the same image 16 times: every activation pattern agrees, the kernel is singular
    assert naswot(_built(space, NARROW), images[:1].repeat(16, 1, 1, 1)) < score


def test_a_partial_ground_truth_is_averaged_over_the_seeds_each_architecture_has():
    truth = {"archs": [{}] * 3, "test_accuracy_per_seed": [[0.8, 0.9, None], [0.6, None, None]]}
    trained, per_seed = truth_table(truth)
    assert trained == [0, 1]
    assert per_seed == [[0.8, 0.9], [0.6, 0.9]]  # a missing seed is the mean of the seeds it has


def test_within_band_tau_ignores_order_across_bands():
    bands = [0, 0, 0, 1, 1, 1]
    accuracy = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]
    size = [3, 2, 1, 6, 5, 4]  # the right order across bands, reversed inside each
    assert within_band_tau(size, accuracy, bands) == pytest.approx(-1.0)
    assert within_band_tau(accuracy, accuracy, bands) == pytest.approx(1.0)
    assert within_band_tau(size, accuracy, [0, 0, 1, 1, 2, 2]) is None  # no band of 3


def test_an_earlier_result_is_scored_again_on_the_architectures_it_scored():
    truth = {"archs": [{"arch": a} for a in "abcd"],
             "test_accuracy_per_seed": [[0.8, 0.9, 0.7, None], [0.6, None, 0.7, None]]}
    earlier = {"archs": ["c", "a", "d"], "scores": {
        "hwnas dna (1 seed)": {"values": [3.0, 1.0, 4.0], "seconds": 12.0},
        "SPOS": {"values": [None, 0.5, 0.6], "seconds": 5.0},
        "NASWOT (proxy)": {"values": [9.0, 9.0, 9.0], "seconds": 1.0}}}
    trained, per_seed = scored_rows(truth, earlier)
    assert trained == [0, 2]  # b was not scored before, d is not trained yet
    assert per_seed == [[0.8, 0.7], [0.6, 0.7]]
    scores, seconds = earlier_scores(earlier, ["a", "c"])
    assert scores == {"hwnas dna (1 seed)": [1.0, 3.0], "SPOS": [0.5, float("-inf")]}  # proxies are computed again
    assert seconds == {"hwnas dna (1 seed)": 12.0, "SPOS": 5.0}


def test_the_noise_ceiling_counts_the_seeds_each_scored_architecture_has():
    per_seed = [[0.80, 0.85, 0.90, 0.95], [0.81, 0.84, 0.91, 0.94]]
    complete = {"test_accuracy_per_seed": per_seed}
    assert scored_noise_ceiling(complete, [0, 1, 2, 3], per_seed) > 0.9  # seeds agree, archs far apart
    noisy = {"test_accuracy_per_seed": [per_seed[0], [0.81, None, None, None]], "summary": {"seed_std": 0.05}}
    filled = [per_seed[0], [0.81, 0.85, 0.90, 0.95]]
    assert scored_noise_ceiling(noisy, [0, 1, 2, 3], filled) < scored_noise_ceiling(complete, [0, 1, 2, 3], per_seed)
    assert scored_noise_ceiling({"test_accuracy_per_seed": [per_seed[0]]}, [0, 1, 2, 3], [per_seed[0]]) is None


def test_ratings_are_combined_with_naswot_by_their_mean_rank():
    from hwnas.search.proxies import rank_mean

    assert rank_mean([[3.0, 1.0, 2.0], [10.0, 30.0, 20.0]]) == [2.0, 2.0, 2.0]  # opposite orders cancel
    assert rank_mean([[1.0, 2.0, 3.0], [1e9, 2e9, 3e9]]) == [1.0, 2.0, 3.0]  # scales do not matter, ranks do
    assert rank_mean([[1.0, float("nan")], [1.0, 2.0]]) == [1.5, 1.5]  # a missing value ranks last
    with pytest.raises(ValueError, match="equal length"):
        rank_mean([[1.0], [1.0, 2.0]])
    scores = {"MACs (size)": [1.0, 2.0, 3.0], "NASWOT (proxy)": [3.0, 2.0, 1.0], "hwnas a (1 seed)": [1.0, 2.0, 3.0],
              "hwnas a (seeds combined)": [1.0, 3.0, 2.0], "hwnas b (1 seed)": [2.0, 1.0, 3.0],
              "hwnas a (seeds combined) + NASWOT": [0.0, 0.0, 0.0]}  # an earlier result's: made again
    out, seconds = with_naswot(scores, {"NASWOT (proxy)": 2.0, "hwnas a (seeds combined)": 10.0})
    assert set(out) - set(scores) == {"hwnas b (1 seed) + NASWOT"}
    assert out["hwnas a (seeds combined) + NASWOT"] == [2.0, 2.5, 1.5]
    assert seconds["hwnas a (seeds combined) + NASWOT"] == 12.0 and seconds["hwnas b (1 seed) + NASWOT"] is None
    # paired differences: trained scores with each other, each combination with its rating and with NASWOT alone
    assert compared_pairs(["MACs (size)", "NASWOT (proxy)", "SPOS", "hwnas a (1 seed)", "hwnas a (1 seed) + NASWOT"]) == [
        ("SPOS", "hwnas a (1 seed)"), ("hwnas a (1 seed) + NASWOT", "hwnas a (1 seed)"),
        ("hwnas a (1 seed) + NASWOT", "NASWOT (proxy)")]
