"""The distorted-digits data set and the SPOS baseline the ranking benchmark compares against."""

import random

import pytest
import torch

from hwnas.data import load_data
from hwnas.spos import SPOSConfig, SPOSSupernet, spos_accuracy, train_spos
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
    assert {id(m) for m in supernet.path(archs[0])} & {id(m) for m in supernet.path(archs[1])}  # stem, head shared
    checkpoint = tmp_path / "spos.pt"
    config = SPOSConfig(epochs=2, lr=3e-3)
    first = train_spos(supernet, bundle, SPOSConfig(epochs=1, lr=3e-3), checkpoint, show_progress=False)
    assert len(first) == 1 and checkpoint.exists()
    with pytest.raises(ValueError, match="other settings"):
        train_spos(SPOSSupernet(space), bundle, SPOSConfig(epochs=1, lr=1e-3), checkpoint, show_progress=False)
    resumed = SPOSSupernet(space)
    history = train_spos(resumed, bundle, SPOSConfig(epochs=1, lr=3e-3), checkpoint, show_progress=False)
    assert history == first  # nothing left to train: the saved history comes back, weights loaded
    assert torch.equal(resumed.stem[0].weight, supernet.stem[0].weight)
    with pytest.raises(ValueError, match="other settings"):
        train_spos(resumed, bundle, config, checkpoint, show_progress=False)


def test_spos_accuracy_is_a_validation_accuracy_after_bn_reestimation():
    space, archs = _two_arch_space_paths()
    bundle = load_data("digits", 32)
    torch.manual_seed(0)
    supernet = SPOSSupernet(space)
    train_spos(supernet, bundle, SPOSConfig(epochs=2), show_progress=False)
    accuracy = spos_accuracy(supernet, archs[0], bundle)
    assert 0.0 <= accuracy <= 1.0
    norms = [m for m in supernet.path(archs[0])[1].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(n.momentum == 0.1 for n in norms)  # restored after re-estimation
    assert int(norms[0].num_batches_tracked) == 4  # re-estimated on exactly the 4 calibration batches


def test_bad_spos_settings_are_refused():
    with pytest.raises(ValueError, match="bad SPOS settings"):
        SPOSConfig(epochs=0)


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
