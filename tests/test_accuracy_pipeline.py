"""Teacher, block-wise distillation and rating on digits: files, contents, resume, errors."""

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch
from killing import kill_when

from hwnas.data import load_data
from hwnas.run import create_or_open_run, open_run
from hwnas.supernet.blocks import BlockSupernet
from hwnas.supernet.distill import DistillConfig, checkpoint_path, distill
from hwnas.supernet.rating import rate_block
from hwnas.supernet.ratings import load_ratings
from hwnas.supernet.teacher import check_teacher, open_teacher, space_teacher, split_model
from search_spaces import get_space


def test_digits_split_is_fixed_stratified_and_sized():
    bundle = load_data("digits", 32)
    sizes = {split: len(bundle.datasets[split]) for split in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and sizes["train"] == 1078
    images, labels = bundle.tensors("test")
    assert images.shape[1:] == (3, 32, 32) and set(labels.tolist()) == set(range(10))
    assert torch.equal(load_data("digits", 32).tensors("test")[1], labels)


def test_missing_data_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither one of the embedded data sets"):
        load_data(str(tmp_path / "nope"), 32)
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="val is missing"):
        load_data(str(tmp_path), 32)


def test_ratings_cover_every_candidate_with_finite_scores(tiny_run):
    run = open_run(tiny_run)
    space = run.space
    data = json.loads((tiny_run / "ratings.json").read_text())
    assert data["space_hash"] == space.definition_hash() and data["teacher"]["kind"] == "space"
    assert len(data["blocks"]) == space.num_blocks
    for block, entry in enumerate(data["blocks"]):
        assert set(entry["ratings"]) == {str(c) for c in space.block_candidates(block)}
        for scores in entry["ratings"].values():
            assert math.isfinite(scores["l1_rel"]) and math.isfinite(scores["mse_rel"]) and scores["l1_rel"] > 0
        assert len(entry["supernet"]["sha256"]) == 16 and entry["supernet"]["epochs"] == 1
    ratings = load_ratings(run)
    assert len(ratings) == space.num_blocks
    # on the last block's 1x1 map every kernel is one module (twins shared it): one rating, not three
    last = data["blocks"][5]["ratings"]
    assert last["320:e6k3"] == last["320:e6k5"] == last["320:e6k7"] != last["320:e3k3"]


def test_prefix_sharing_gives_the_same_scores_with_fewer_layer_evaluations(tiny_run):
    run = open_run(tiny_run)
    from hwnas.supernet.distill import load_supernet
    from hwnas.supernet.features import TeacherFeatures

    teacher = open_teacher(run)
    supernet, _ = load_supernet(run, teacher, 1)
    features = TeacherFeatures(teacher, load_data("digits", 32), tiny_run / "cache", show_progress=False)
    inputs, targets = features.pair("val", 1, torch.arange(64))
    calibration = features.get("train", 1, torch.arange(64))
    shared, shared_stats = rate_block(supernet, calibration, inputs, targets, show_progress=False)
    alone, alone_stats = rate_block(supernet, calibration, inputs, targets, show_progress=False, share_prefixes=False)
    assert shared.keys() == alone.keys()
    for name in shared:
        assert shared[name]["l1_rel"] == pytest.approx(alone[name]["l1_rel"], rel=1e-4)
    assert shared_stats.layer_evaluations < alone_stats.layer_evaluations


def test_block_candidate_limit_says_how_to_restrict(tiny_run):
    run = open_run(tiny_run)
    from hwnas.supernet.distill import load_supernet

    supernet, _ = load_supernet(run, open_teacher(run), 0)
    x = torch.zeros(2, *supernet.teacher_in)
    with pytest.raises(ValueError, match="restrict the space"):
        rate_block(supernet, x, x, torch.zeros(2, *supernet.teacher_out), max_candidates=10, show_progress=False)


def test_supernet_shares_layers_along_prefixes():
    space = get_space("mbconv-tiny")
    teacher = space_teacher(space, space.assemble([space.block_candidates(b)[-1] for b in range(space.num_blocks)]))
    shapes = check_teacher(teacher, space)
    supernet = BlockSupernet(space, 4, shapes[4], shapes[5])
    # per input width x output width x op for the first layer, per output width x op for the second
    assert len(supernet.layers) == 2 * 2 * 6 + 2 * 6
    state, candidate = supernet.sample_path(__import__("random").Random(0))
    out = supernet(torch.randn(2, *shapes[4]), state, candidate)
    assert out.shape == (2, *shapes[5])


def test_twins_share_one_module():
    """Block 4 runs on 2x2 then 1x1 maps, where k5 and k7 reach no further than k3: with ``share_twins`` the 36
    modules become 12, and twin candidates compute the same output."""
    import random

    space = get_space("mbconv-tiny")
    teacher = space_teacher(space, space.assemble([space.block_candidates(b)[-1] for b in range(space.num_blocks)]))
    shapes = check_teacher(teacher, space)
    supernet = BlockSupernet(space, 4, shapes[4], shapes[5], share_twins=True).eval()
    assert len(supernet.layers) == 2 * 2 * 2 + 2 * 2
    x, state = torch.randn(2, *shapes[4]), supernet.states[0]
    narrow, wide = space.parse("24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e6k3,e3k5|320:e3k3").stages[4], \
        space.parse("24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e6k7,e3k7|320:e3k3").stages[4]
    assert torch.equal(supernet(x, state, narrow), supernet(x, state, wide))
    other = space.parse("24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e3k3,e3k5|320:e3k3").stages[4]
    assert not torch.allclose(supernet(x, state, narrow), supernet(x, state, other))
    assert supernet.sample_path(random.Random(0))


def test_wide_kernel_child_starts_from_its_narrow_twin(tiny_run):
    """A child with k7 on the last blocks' 2x2 and 1x1 maps, initialised from supernets whose twins shared the k3
    module, computes what that module computes."""
    from hwnas.ship.child import init_from_supernet
    from hwnas.supernet.blocks import layer_key
    from hwnas.supernet.distill import load_supernet

    run = open_run(tiny_run)
    space = run.space
    arch = space.parse("24:e3k3|40:e3k3|80:e3k3|96:e6k7|160:e6k7|320:e6k7")
    model = space.build(arch)
    assert init_from_supernet(run, model, arch) == 6
    supernet, record = load_supernet(run, open_teacher(run), 5)
    assert record["config"]["share_twins"] is True
    unit = space.block_units(5, arch.stages[5], 160)[0]
    module = supernet.layers[layer_key(0, space.twin_unit(unit))]
    assert module.conv_dw.kernel_size == (3, 3) and space.searchable_layers(model)[-1].conv_dw.kernel_size == (7, 7)
    x = space.unit_input(unit, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(space.searchable_layers(model)[-1].eval()(x), module.eval()(x))


def test_supernets_from_before_twins_shared_resume_with_no_share_twins(tmp_path, tiny_run):
    import shutil

    from hwnas.devices import load_checkpoint
    from hwnas.supernet.distill import load_supernet
    from profilers.files import atomic_torch_save

    run_path = tmp_path / "old"
    shutil.copytree(tiny_run, run_path, ignore=shutil.ignore_patterns("ratings*"))
    run = open_run(run_path)
    path = checkpoint_path(run, 0)
    saved = load_checkpoint(path)
    del saved["config"]["share_twins"]  # as written before the option existed
    atomic_torch_save(saved, path)
    with pytest.raises(ValueError, match="--no-share-twins"):
        distill(run, block=0, config=DistillConfig(epochs=1), show_progress=False)
    from hwnas.cli.demo import DISTILL, _distill_config

    assert _distill_config(run) == replace(DISTILL, share_twins=False)  # the demo resumes such a run as it was
    assert _distill_config(open_run(tiny_run)) == DISTILL
    distill(run, block=0, config=DistillConfig(epochs=1, share_twins=False), show_progress=False)  # resumes: done
    supernet, _ = load_supernet(run, open_teacher(run), 0)
    assert supernet.share_twins is False


def test_teacher_whose_stages_do_not_match_is_refused():
    import timm
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.efficientnet import EfficientNet

    space = get_space("mbconv-tiny")
    short = EfficientNet(decode_arch_def([["ds_r1_k3_s1_e1_c16"], ["ir_r1_k3_s2_e6_c24"], ["ir_r1_k3_s2_e6_c40"]]))
    with pytest.raises(ValueError, match="has 2 stages after its stem, the space has 6 blocks"):
        split_model(short, space, {"name": "short"})
    for name in ("resnet10t", "mobilenetv3_small_050"):
        with pytest.raises(ValueError, match="neither a timm EfficientNet nor a VisionTransformer"):
            split_model(timm.create_model(name), space, {"name": name})
    vit_space = get_space("vit-tiny")
    wrong = space_teacher(vit_space, vit_space.sample(__import__("random").Random(0)))
    with pytest.raises(ValueError, match="spatial sizes"):
        check_teacher(wrong, space)


def test_vit_space_teacher_distill_and_rate(tmp_path):
    from hwnas.supernet.ratings import rate
    from hwnas.supernet.teacher import train_teacher
    from hwnas.training import TrainConfig

    run = create_or_open_run(tmp_path / "vit", "vit-tiny", "digits")
    result = train_teacher(run, config=TrainConfig(epochs=1), show_progress=False)
    assert 0 <= result["test_accuracy"] <= 1
    distill(run, config=DistillConfig(epochs=1), show_progress=False)
    rate(run, show_progress=False)
    ratings = load_ratings(run)
    assert all(len(r) == len(run.space.block_candidates(b)) for b, r in enumerate(ratings))


def test_run_settings_conflicts_and_missing_runs_are_clear(tmp_path, tiny_run):
    with pytest.raises(ValueError, match="was made with --space mbconv-tiny"):
        create_or_open_run(tiny_run, "vit-tiny", None)
    with pytest.raises(FileNotFoundError, match="hwnas teacher train --run"):
        open_run(tmp_path / "nothing")
    run = open_run(tiny_run)
    with pytest.raises(ValueError, match="other settings"):
        distill(run, block=0, config=DistillConfig(epochs=1, lr=0.5), show_progress=False)


DISTILL_SCRIPT = """
import sys
from hwnas.supernet.distill import DistillConfig
from hwnas.run import open_run
from hwnas.supernet.distill import distill
distill(open_run(sys.argv[1]), block=0, config=DistillConfig(epochs=int(sys.argv[2]), batch_size=16), cache=False,
        show_progress=False)
"""


def test_killed_distillation_resumes_from_its_last_epoch(tmp_path, tiny_run):
    import shutil

    run_path = tmp_path / "copy"
    shutil.copytree(tiny_run, run_path, ignore=shutil.ignore_patterns("supernet", "ratings*"))
    checkpoint = checkpoint_path(open_run(run_path), 0)
    kill_when([sys.executable, "-c", DISTILL_SCRIPT, str(run_path), "40"],
              lambda: checkpoint.exists() and torch.load(checkpoint, weights_only=False)["epoch"] >= 2)
    before = torch.load(checkpoint, weights_only=False)
    done = before["epoch"]
    assert 2 <= done < 40, "the distillation finished or never checkpointed"
    # rerun (asking for one more epoch than was done, to keep the test short): it continues, it does not restart
    resumed = subprocess.run([sys.executable, "-c", DISTILL_SCRIPT, str(run_path), str(done + 1)],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    after = torch.load(checkpoint, weights_only=False)
    assert after["epoch"] == done + 1
    assert after["history"][:done] == before["history"]


def test_timm_teachers_line_up_with_the_full_spaces():
    from hwnas.supernet.teacher import timm_teacher

    mbconv = get_space("mbconv")
    shapes = check_teacher(timm_teacher("efficientnet_b0", mbconv), mbconv)
    assert shapes[1:] == [(24, 56, 56), (40, 28, 28), (80, 14, 14), (112, 14, 14), (192, 7, 7), (320, 7, 7)]
    vit = get_space("vit")
    teacher = timm_teacher("vit_tiny_patch16_224", vit)
    assert teacher.description["layer_bounds"] == [0, 4, 8, 12]
    assert check_teacher(teacher, vit)[1] == (197, 192)


def test_image_folder_data(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for label in ("cat", "dog"):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for index in range(3):
                Image.new("RGB", (40, 30), (index * 40, 100, 200 if label == "cat" else 20)).save(folder / f"{index}.png")
    bundle = load_data(str(tmp_path), 32)
    assert bundle.num_classes == 2 and len(bundle.datasets["train"]) == 6
    images, labels = next(iter(bundle.loader("train", 4)))
    assert images.shape == (4, 3, 32, 32) and set(labels.tolist()) <= {0, 1}


def test_teacher_registered_without_training_is_not_trained(tmp_path, capsys):
    from hwnas.cli import main

    assert main(["teacher", "train", "--run", str(tmp_path / "r"), "--space", "vit-tiny", "--epochs", "0",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "test_accuracy" not in result and result["teacher"]["kind"] == "space"
    assert (tmp_path / "r" / "teacher.pt").exists() and not (tmp_path / "r" / "teacher_training.pt").exists()


def _block4_supernet(separate_depths: bool) -> tuple[BlockSupernet, tuple[int, ...]]:
    space = get_space("mbconv-tiny")
    teacher = space_teacher(space, space.assemble([space.block_candidates(b)[-1] for b in range(space.num_blocks)]))
    shapes = check_teacher(teacher, space)
    torch.manual_seed(0)
    return BlockSupernet(space, 4, shapes[4], shapes[5], separate_depths=separate_depths), shapes[4]


def test_separate_depths_trains_each_depth_as_its_own_cell():
    """DNA's cells: a one-layer candidate of block 4 gets its own layer and output adapter, so training a two-layer
    candidate that starts with the same op leaves it unchanged (with shared prefixes it moves; the input adapter,
    shared by every candidate of the block, is held fixed here); rating along the prefix tree still gives what
    rating each candidate alone gives."""
    space = get_space("mbconv-tiny")
    shallow = space.parse("24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e6k5|320:e3k3").stages[4]
    deep = space.parse("24:e3k3|40:e3k3|80:e3k3|96:e3k3|160:e6k5,e3k3|320:e3k3").stages[4]
    moved = {}
    for separate in (False, True):
        supernet, shape_in = _block4_supernet(separate)
        if separate:  # a depth-1 cell (2 in x 2 out widths x 6 ops), a depth-2 cell (24 + 2 x 6), 2 adapters each
            assert len(supernet.layers) == 24 + 24 + 12 and len(supernet.adapters_out) == 4
            assert not {id(m) for m in supernet.candidate_layers(shallow, supernet.states[0])} & {
                id(m) for m in supernet.candidate_layers(deep, supernet.states[0])}
        else:
            assert len(supernet.layers) == 24 + 12 and len(supernet.adapters_out) == 2
        x, state = torch.randn(8, *shape_in), supernet.states[0]
        supernet.eval()
        before = supernet(x, state, shallow).detach()
        supernet.train()
        supernet.adapters_in.requires_grad_(False)
        optimizer = torch.optim.SGD([p for p in supernet.parameters() if p.requires_grad], lr=0.1)
        supernet(x, state, deep).pow(2).mean().backward()
        optimizer.step()
        supernet.eval()
        with torch.no_grad():
            moved[separate] = float((supernet(x, state, shallow) - before).abs().max())
        target = torch.randn(8, *supernet.teacher_out)
        shared, shared_stats = rate_block(supernet, x, x, target, show_progress=False)
        alone, alone_stats = rate_block(supernet, x, x, target, show_progress=False, share_prefixes=False)
        for name in shared:
            assert shared[name]["l1_rel"] == pytest.approx(alone[name]["l1_rel"], rel=1e-4)
        assert shared_stats.layer_evaluations < alone_stats.layer_evaluations
    assert moved[True] == 0 and moved[False] > 1e-4


def test_separate_depths_checkpoints_resume_load_and_seed_children(tmp_path, tiny_run):
    """A run distilled with shared prefixes is not resumed as separate depths (the error names the flag); distilled
    with ``separate_depths``, the checkpoint rebuilds as such, and a child starts from its own depth's cell."""
    import shutil

    from hwnas.ship.child import init_from_supernet
    from hwnas.supernet.distill import load_supernet

    run_path = tmp_path / "cells"
    shutil.copytree(tiny_run, run_path, ignore=shutil.ignore_patterns("ratings*"))
    run = open_run(run_path)
    config = DistillConfig(epochs=1, separate_depths=True)
    with pytest.raises(ValueError, match="--separate-depths"):
        distill(run, block=0, config=config, show_progress=False)
    checkpoint_path(run, 0).unlink()
    distill(run, block=0, config=config, show_progress=False)
    supernet, record = load_supernet(run, open_teacher(run), 0)
    assert supernet.separate_depths and record["config"]["separate_depths"] is True
    space = run.space
    for stage0 in ("24:e6k5", "24:e6k5,e3k3"):
        arch = space.parse(f"{stage0}|40:e3k3|80:e3k3|96:e3k3|160:e3k3|320:e3k3")
        model = space.build(arch).eval()
        init_from_supernet(run, model, arch)
        x = torch.randn(2, *space.block_units(0, arch.stages[0], space.initial_state())[0].input_shape)
        with torch.no_grad():
            torch.testing.assert_close(space.searchable_layers(model)[0](x),
                                       supernet.candidate_layers(arch.stages[0], supernet.states[0])[0](x))


def test_rate_rates_again_a_block_whose_supernet_was_trained_further(tmp_path, tiny_run):
    """Ratings record the checkpoint they came from: after block 0 is trained one more epoch, ``rate`` rates it
    again (the new checkpoint's digest, 2 epochs) and leaves the other blocks' ratings as they were."""
    import shutil

    from hwnas.supernet.ratings import rate
    from profilers.files import file_digest

    run_path = tmp_path / "longer"
    shutil.copytree(tiny_run, run_path)
    run = open_run(run_path)
    before = {b: (run_path / "ratings" / f"block{b}.json").read_bytes() for b in range(run.space.num_blocks)}
    distill(run, block=0, config=DistillConfig(epochs=2), show_progress=False)
    rate(run, show_progress=False)
    blocks = json.loads((run_path / "ratings.json").read_text())["blocks"]
    assert blocks[0]["supernet"]["epochs"] == 2
    assert blocks[0]["supernet"]["sha256"] == file_digest(checkpoint_path(run, 0))
    assert (run_path / "ratings" / "block0.json").read_bytes() != before[0]
    assert all((run_path / "ratings" / f"block{b}.json").read_bytes() == before[b] for b in range(1, len(before)))


def test_a_teacher_trained_again_rebuilds_its_feature_cache_and_refuses_old_supernets(tmp_path, tiny_run):
    """The feature cache and the supernet checkpoints record the teacher's weights: after the teacher is trained
    again, the cache is computed again from the new weights (not read as the old teacher's features), and distilling
    on or rating from a supernet of the old teacher is refused with what to do; once the old supernets are moved
    away, distillation starts from the new teacher."""
    import shutil

    from hwnas.supernet.features import TeacherFeatures
    from hwnas.supernet.ratings import rate
    from hwnas.supernet.teacher import train_teacher
    from hwnas.training import TrainConfig

    run_path = tmp_path / "new-teacher"
    shutil.copytree(tiny_run, run_path)
    run = open_run(run_path)
    bundle = load_data(run.config.data, run.space.resolution)
    indices = torch.arange(16)
    old = TeacherFeatures(open_teacher(run), bundle, run_path / "cache", show_progress=False).get("val", 2, indices)
    (run_path / "teacher_training.pt").unlink()
    train_teacher(run, config=TrainConfig(epochs=1), show_progress=False)
    teacher = open_teacher(run)
    cached = TeacherFeatures(teacher, bundle, run_path / "cache", show_progress=False).get("val", 2, indices)
    live = TeacherFeatures(teacher, bundle, None, show_progress=False).get("val", 2, indices)
    torch.testing.assert_close(cached, live, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(cached, old, atol=1e-3)
    with pytest.raises(ValueError, match="distilled from other teacher weights .* move or delete"):
        distill(run, block=0, config=DistillConfig(epochs=2), show_progress=False)
    with pytest.raises(ValueError, match="distilled from other teacher weights"):
        rate(run, show_progress=False)
    (run_path / "ratings" / "block1.json").unlink()  # a block to rate: refused when its supernet is loaded
    with pytest.raises(ValueError, match="distilled from other teacher weights"):
        rate(run, block=1, show_progress=False)
    shutil.move(checkpoint_path(run, 0).parent, tmp_path / "old-supernets")
    distill(run, block=0, config=DistillConfig(epochs=1), show_progress=False)
    assert torch.load(checkpoint_path(run, 0), weights_only=False)["teacher"] == teacher.digest()
