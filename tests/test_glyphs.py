"""The glyphs data set: deterministic, 62 classes at 64 px, splits apart; its space; its commands and bad input."""

import numpy as np
import pytest
import torch

from hwnas.cli import main
from hwnas.data import data_classes, load_data
from hwnas.data.glyphs import CLASSES, PER_CLASS, fonts, generate, render


def test_glyphs_are_generated_the_same_from_the_same_seed():
    faces = fonts()
    first = render("a", faces[0], np.random.default_rng(3), faces)
    again = render("a", faces[0], np.random.default_rng(3), faces)
    other = render("a", faces[0], np.random.default_rng(4), faces)
    assert first.shape == (64, 64) and np.array_equal(first, again) and not np.array_equal(first, other)
    assert len(CLASSES) == 62 and len(faces) >= 10  # matplotlib ships DejaVu, STIX and Computer Modern faces


def test_a_split_has_every_class_equally_and_splits_do_not_share_drawings():
    val = generate("val")
    images, labels = val.tensors
    assert images.shape == (62 * PER_CLASS["val"], 3, 64, 64) and images.dtype == torch.float32
    assert torch.bincount(labels).tolist() == [PER_CLASS["val"]] * 62
    assert torch.equal(images[:, 0], images[:, 1])  # grey, 3 equal channels
    test = generate("test").tensors[0]
    assert not any(torch.equal(test[i], images[j]) for i in range(0, 200, 7) for j in range(0, 200, 7))
    assert 0.3 < float(images.std()) < 1.5


def test_load_data_resizes_and_names_the_classes():
    bundle = load_data("glyphs", 32)
    assert bundle.num_classes == 62 and bundle.tensors("val")[0].shape[-1] == 32
    assert data_classes("glyphs") == 62 and data_classes("glyphs-2") == 62 and data_classes("digits") == 10
    with pytest.raises(ValueError, match="'glyphs' or 'glyphs-K'"):
        data_classes("glyphs-0")


def test_a_run_refuses_data_whose_classes_its_space_cannot_classify(tmp_path, capsys):
    assert main(["teacher", "train", "--run", str(tmp_path / "r"), "--space", "mbconv-tiny", "--data", "glyphs"]) == 2
    assert "glyphs has 62 classes, space mbconv-tiny classifies 10" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_the_64_px_space_has_fewer_twins(capsys):
    import json

    assert main(["space", "blocks", "mbconv-tiny-64", "--json"]) == 0
    wide = json.loads(capsys.readouterr().out)
    assert main(["space", "blocks", "mbconv-tiny", "--json"]) == 0
    narrow = json.loads(capsys.readouterr().out)
    assert [b["candidates"] for b in wide] == [b["candidates"] for b in narrow]
    assert sum(b["functions"] for b in wide) > sum(b["functions"] for b in narrow)
    assert [b["functions"] == b["candidates"] for b in wide][:4] == [True] * 4  # no twins in blocks 0-3 at 64 px


def test_contact_sheet_and_its_bad_input(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "sheet.png"
    assert main(["data", "sheet", "--data", "digits", "--split", "val", "--per-class", "3", "--out", str(out)]) == 0
    assert Image.open(out).size == (3 * 32, 10 * 32)
    for argv, message in [
        (["--data", "letters"], "neither one of the embedded data sets"),
        (["--data", "glyphs", "--fonts", str(tmp_path)], "no fonts to draw glyphs with"),
        (["--data", "digits", "--fonts", str(tmp_path)], "--fonts draws glyphs"),
        (["--data", "glyphs", "--resolution", "4"], "--resolution: must be >= 8"),
    ]:
        assert main(["data", "sheet", *argv, "--out", str(tmp_path / "bad.png")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "bad.png").exists()
