"""The distorted-digits data set and the SPOS baseline the ranking benchmark compares against."""

import random

import pytest
import torch
from spos import SPOSConfig, SPOSSupernet, spos_accuracy, train_spos

from hwnas.data import load_data
from search_spaces import get_space


def test_distorted_digits_are_deterministic_larger_and_keep_the_split():
    plain = load_data("digits", 32)
    bundle = load_data("digits-distorted-3", 32)
    for split in ("train", "val", "test"):
        images, labels = bundle.tensors(split)
        plain_labels = plain.tensors(split)[1]
        assert len(labels) == 3 * len(plain_labels) and images.shape[1:] == (3, 32, 32)
        assert torch.equal(labels, plain_labels.repeat_interleave(3))
    again = load_data("digits-distorted-3", 32).tensors("test")[0]
    test_images = bundle.tensors("test")[0]
    assert torch.equal(again, test_images)
    # the copies of one image differ (distortion and noise), and differ from the plain image
    assert not torch.allclose(test_images[0], test_images[1])
    assert (test_images[0] - plain.tensors("test")[0][0]).abs().mean() > 0.1
    assert bundle.name == "digits-distorted-3" and len(load_data("digits-distorted", 8).datasets["val"]) == 8 * 359


@pytest.mark.parametrize("name", ["digits-distorted-0", "digits-distorted-x", "digits-distorted3"])
def test_bad_distorted_names_say_how_to_write_them(name):
    with pytest.raises(ValueError, match="digits-distorted-K"):
        load_data(name, 32)


def _two_arch_space_paths():
    space = get_space("mbconv-tiny")
    rng = random.Random(0)
    return space, [space.sample(rng) for _ in range(2)]


def test_spos_learns_resumes_and_refuses_other_settings(tmp_path):
    space, archs = _two_arch_space_paths()
    bundle = load_data("digits", 32)
    torch.manual_seed(0)
    supernet = SPOSSupernet(space)
    assert {id(m) for m in supernet.path_modules(archs[0])} & {id(m) for m in supernet.path_modules(archs[1])}
    checkpoint = tmp_path / "spos.pt"
    config = SPOSConfig(epochs=3, lr=3e-3, warmup_epochs=1)
    first = train_spos(supernet, bundle, SPOSConfig(epochs=2, lr=3e-3, warmup_epochs=1), checkpoint,
                       show_progress=False)
    assert len(first) == 2 and checkpoint.exists()
    assert first[0]["train_accuracy"] > 0.3  # the largest path alone learns in one epoch (chance: 0.1)
    with pytest.raises(ValueError, match="other settings"):
        train_spos(SPOSSupernet(space), bundle, SPOSConfig(epochs=2, lr=1e-3, warmup_epochs=1), checkpoint,
                   show_progress=False)
    resumed = SPOSSupernet(space)
    history = train_spos(resumed, bundle, SPOSConfig(epochs=2, lr=3e-3, warmup_epochs=1), checkpoint,
                         show_progress=False)
    assert history == first  # nothing left to train: the saved history comes back, weights loaded
    assert torch.equal(resumed.shared["stem"][0].weight, supernet.shared["stem"][0].weight)
    with pytest.raises(ValueError, match="other settings"):
        train_spos(resumed, bundle, config, checkpoint, show_progress=False)
    with pytest.raises(ValueError, match="sharing='separate'"):
        train_spos(resumed, bundle, SPOSConfig(epochs=2, warmup_epochs=0, sharing="separate"),
                   show_progress=False)


def test_entangled_choices_are_slices_of_one_weight_and_train_it():
    space = get_space("mbconv-tiny")
    supernet = SPOSSupernet(space)
    largest = supernet.largest_arch()
    assert all(len(stage.ops) == max(spec.depths) and stage.width == max(spec.widths)
               and stage.ops[0].expansion == 6 and stage.ops[0].kernel == 7
               for stage, spec in zip(largest.stages, space.stages))
    # the largest path is exactly the shared modules run as they are
    x = torch.randn(4, 3, 32, 32)
    supernet.eval()
    expected = x
    for module in supernet.path_modules(largest):
        expected = module(expected)
    assert torch.allclose(supernet(x, largest), expected, atol=1e-5)
    # a smaller path: a 3x3, expansion-3 layer is the centre and the leading channels of the 7x7, expansion-6 one
    small = space.parse("24:e3k3|40:e6k7|80:e6k7|96:e6k7|160:e6k7|320:e6k7")
    units = supernet.path_units(small)
    assert supernet._names[units[1].key] == supernet._names[supernet.path_units(largest)[1].key]
    shared_dw = supernet.shared["b0_l0"].conv_dw.weight
    supernet.train()
    supernet(x, small).sum().backward()
    grad = shared_dw.grad
    assert grad[: grad.shape[0] // 2, :, 2:5, 2:5].abs().sum() > 0  # the slice the small layer used
    assert grad[grad.shape[0] // 2:].abs().sum() == 0 and grad[:, :, 0].abs().sum() == 0  # and nothing else
    with pytest.raises(ValueError, match="unknown SPOS weight sharing"):
        SPOSSupernet(space, sharing="tied")


def test_spos_accuracy_is_a_validation_accuracy_after_bn_reestimation():
    space, archs = _two_arch_space_paths()
    bundle = load_data("digits", 32)
    torch.manual_seed(0)
    supernet = SPOSSupernet(space)
    train_spos(supernet, bundle, SPOSConfig(epochs=2, warmup_epochs=1), show_progress=False)
    accuracy = spos_accuracy(supernet, archs[0], bundle)
    assert 0.0 <= accuracy <= 1.0
    norms = supernet.path_batchnorms(archs[0])
    assert norms and all(n.momentum == 0.1 for n in norms)  # restored after re-estimation
    shared = [n for n in norms if n.running_mean.device.type != "meta"]
    assert shared and all(int(n.num_batches_tracked) == 4 for n in shared)  # re-estimated on the 4 batches
    # the separate (SPOS paper) sharing still builds, trains and rates
    separate = SPOSSupernet(space, sharing="separate")
    train_spos(separate, bundle, SPOSConfig(epochs=1, warmup_epochs=0, sharing="separate"), show_progress=False)
    assert 0.0 <= spos_accuracy(separate, archs[0], bundle) <= 1.0
    assert int(separate.path_batchnorms(archs[0])[0].num_batches_tracked) == 4


def test_a_checkpoint_from_before_sharing_existed_resumes_as_separate(tmp_path):
    space, _ = _two_arch_space_paths()
    bundle = load_data("digits", 32)
    checkpoint = tmp_path / "spos.pt"
    config = SPOSConfig(epochs=1, warmup_epochs=0, sharing="separate")
    history = train_spos(SPOSSupernet(space, sharing="separate"), bundle, config, checkpoint, show_progress=False)
    saved = torch.load(checkpoint, weights_only=False)
    for later in ("sharing", "warmup_epochs", "grad_clip"):
        del saved["config"][later]
    saved["config"]["grad_clip"] = None
    torch.save(saved, checkpoint)
    old = SPOSConfig(epochs=1, warmup_epochs=0, sharing="separate", grad_clip=None)
    assert train_spos(SPOSSupernet(space, sharing="separate"), bundle, old, checkpoint, show_progress=False) == history
    with pytest.raises(ValueError, match="other settings"):  # an old checkpoint is not an entangled one
        train_spos(SPOSSupernet(space), bundle, SPOSConfig(epochs=1, warmup_epochs=0, grad_clip=None), checkpoint,
                   show_progress=False)


def test_bad_spos_settings_are_refused():
    with pytest.raises(ValueError, match="bad SPOS settings"):
        SPOSConfig(epochs=0)
    with pytest.raises(ValueError, match="warmup_epochs"):
        SPOSConfig(epochs=5, warmup_epochs=5)
    with pytest.raises(ValueError, match="sharing"):
        SPOSConfig(sharing="tied")


def test_augmentation_draws_a_fresh_distortion_per_batch_and_keeps_grey_images_grey():
    from hwnas.data import augment_batch

    images = load_data("digits", 16).tensors("test")[0][:8]
    first = augment_batch(images, torch.Generator().manual_seed(0))
    assert first.shape == images.shape and not torch.allclose(first, images)
    assert torch.equal(first[:, 0], first[:, 1]) and torch.equal(first[:, 0], first[:, 2])  # still grey
    assert torch.equal(first, augment_batch(images, torch.Generator().manual_seed(0)))  # seeded: resumable
    generator = torch.Generator().manual_seed(0)
    assert not torch.allclose(augment_batch(images, generator), augment_batch(images, generator))  # fresh each batch
    colour = torch.randn(4, 3, 16, 16)
    assert not torch.equal((out := augment_batch(colour, generator))[:, 0], out[:, 1])  # colour stays colour
    # a milder strength moves the images less (same draws, every range scaled)
    mild = augment_batch(images, torch.Generator().manual_seed(0), strength=0.3)
    assert (mild - images).abs().mean() < (first - images).abs().mean()
    with pytest.raises(ValueError, match="strength"):
        augment_batch(images, generator, strength=0.0)


def test_augmented_training_differs_and_resumes_checkpoints_from_before_the_option(tmp_path):
    from dataclasses import asdict

    from hwnas.training import TrainConfig, train_classifier

    space = get_space("mbconv-tiny")
    arch = space.sample(random.Random(0))
    bundle = load_data("digits", 32)
    weights = {}
    for augment in (False, True):
        torch.manual_seed(0)
        model = space.build(arch)
        train_classifier(model, bundle, TrainConfig(epochs=1, augment=augment), tmp_path / f"{augment}.pt",
                         show_progress=False)
        weights[augment] = model.conv_stem.weight.detach().clone()
    assert not torch.allclose(weights[False], weights[True])  # the augmented run saw other images
    # a checkpoint written before ``augment`` and ``grad_clip`` existed (no such keys) resumes as augment=False and
    # no clipping, and is refused with either turned on
    saved = torch.load(tmp_path / "False.pt", weights_only=False)
    later = ("augment", "augment_strength", "grad_clip")
    saved["config"] = {k: v for k, v in asdict(TrainConfig(epochs=1, grad_clip=None)).items() if k not in later}
    torch.save(saved, tmp_path / "old.pt")
    result = train_classifier(space.build(arch), bundle, TrainConfig(epochs=1, grad_clip=None), tmp_path / "old.pt",
                              show_progress=False)
    assert len(result["history"]) == 1
    with pytest.raises(ValueError, match="other settings"):
        train_classifier(space.build(arch), bundle, TrainConfig(epochs=1), tmp_path / "old.pt", show_progress=False)
    with pytest.raises(ValueError, match="other settings"):
        train_classifier(space.build(arch), bundle, TrainConfig(epochs=1, augment=True, grad_clip=None),
                         tmp_path / "old.pt", show_progress=False)



def test_gradient_clipping_changes_training_and_bad_values_are_refused(tmp_path):
    from hwnas.training import TrainConfig, train_classifier

    space = get_space("mbconv-tiny")
    arch = space.sample(random.Random(0))
    bundle = load_data("digits", 32)
    weights = {}
    for clip in (None, 0.05):
        torch.manual_seed(0)
        model = space.build(arch)
        train_classifier(model, bundle, TrainConfig(epochs=1, grad_clip=clip), tmp_path / f"{clip}.pt",
                         show_progress=False)
        weights[clip] = model.conv_stem.weight.detach().clone()
    assert not torch.allclose(weights[None], weights[0.05])  # clipped steps differ
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="grad_clip"):
            TrainConfig(grad_clip=bad)
        with pytest.raises(ValueError, match="grad_clip"):
            SPOSConfig(grad_clip=bad)


def test_large_distorted_test_set_is_fixed_and_independent_of_the_splits():
    from hwnas.data import large_distorted_test_set, load_data

    first, again = large_distorted_test_set(32, 3), large_distorted_test_set(32, 3)
    assert torch.equal(first.tensors[0], again.tensors[0]) and len(first) == 3 * 360
    plain = load_data("digits", 32)
    _, labels = plain.tensors("test")
    assert torch.equal(first.tensors[1], labels.repeat_interleave(3))
    own = load_data("digits-distorted-3", 32).datasets["test"]
    assert torch.equal(own.tensors[1], first.tensors[1])
    assert (own.tensors[0] - first.tensors[0]).abs().mean() > 0.1  # distortions of its own, not the split's
    with pytest.raises(ValueError, match="at least 1 copy"):
        large_distorted_test_set(32, 0)
