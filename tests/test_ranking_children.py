"""The ranking benchmark's stand-alone children: their file names (cached trainings are found by them) and the
recipe's seed noise pooled over a folder of them (the noise ceiling of a one-seed interim result)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from ranking import child_name, recipe_seed_variance, recipe_tag  # noqa: E402

ARCH = "24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3"


def test_child_names_keep_the_form_of_the_cached_trainings():
    # runs/bench-ranking-lr/children holds hundreds of trainings under these names; a change would orphan them
    assert recipe_tag(20, True, 1.0, 1.0) == "_e20_aug_clip1"
    assert recipe_tag(20, True, 0.5, None) == "_e20_aug0.5"
    assert recipe_tag(8, False, 1.0, None) == "_e8"
    assert child_name(ARCH, 3, 20, True, 1.0, 1.0) == "92f2c5070893_e20_aug_clip1_s3"


def _write(folder: Path, arch: str, seed: int, tag: str, accuracy: float) -> None:
    name = child_name(arch, seed, 20, True, 1.0, 1.0).replace("_e20_aug_clip1", tag)
    (folder / f"{name}.json").write_text(json.dumps({"arch": arch, "seed": seed, "test_accuracy": accuracy}))


def test_recipe_seed_variance_pools_archs_with_two_or_more_seeds_of_that_recipe(tmp_path: Path):
    tag = "_e20_aug_clip1"
    per_arch = {"a": [0.90, 0.92, 0.94], "b": [0.80, 0.81], "c": [0.70]}  # c: one seed, no spread to measure
    for arch, values in per_arch.items():
        for seed, value in enumerate(values):
            _write(tmp_path, arch, seed, tag, value)
    _write(tmp_path, "a", 5, "_e20_aug_clip10", 0.10)  # another recipe whose tag starts the same: ignored
    _write(tmp_path, "b", 5, "_e8", 0.10)
    variance, archs = recipe_seed_variance(tmp_path, tag, "test_accuracy")
    assert archs == 2
    assert variance == pytest.approx(statistics.fmean([statistics.variance(per_arch["a"]),
                                                       statistics.variance(per_arch["b"])]))
    assert recipe_seed_variance(tmp_path, "_e14", "test_accuracy") is None
