"""Data: scikit-learn's digits (the embedded default, no download), a harder distorted variant, rendered glyphs, or
an image folder.

``digits``: 1797 8x8 grey images of 10 classes, shipped inside scikit-learn, resized to the space's resolution,
repeated to 3 channels and normalised; a fixed stratified split of 60% train, 20% val, 20% test.
``digits-distorted[-K]``: the same split, each image drawn K times (default 8) under a fixed random affine
distortion (rotation, scale, shear, shift) with pixel noise: K times more images, a harder task on which network
capacity shows, and a test split large enough that its sampling noise stays small. Deterministic (seeded), so
teacher features can be cached.
``glyphs[-K]``: 62 classes (digits and letters, with confusable pairs) rendered at 64 px from the fonts matplotlib
ships, under random fonts, strokes, affine transforms, blur, clutter and noise (``hwnas.data.glyphs``): a task with
structure for a wider kernel to find, generated locally from a seed.
An image folder ``ROOT`` holds ``ROOT/train/CLASS/*.jpg`` and ``ROOT/val/CLASS/*.jpg`` (val doubles as test), read
with torchvision's ImageFolder and timm's transforms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

SPLITS = ("train", "val", "test")


@dataclass
class DataBundle:
    """The three splits of a data set at one resolution."""

    name: str
    num_classes: int
    resolution: int
    datasets: dict[str, Dataset]

    def loader(self, split: str, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
               sampler: object | None = None) -> DataLoader:
        """A DataLoader over one split (deterministic order unless ``shuffle``)."""
        if split not in self.datasets:
            raise ValueError(f"unknown split {split!r}; choose one of: {', '.join(self.datasets)}")
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(self.datasets[split], batch_size=batch_size, shuffle=shuffle and sampler is None,
                          generator=generator, sampler=sampler, num_workers=0)

    def tensors(self, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A split as (images, labels) tensors: the whole split (small data sets only) or its first ``limit``."""
        count = len(self.datasets[split]) if limit is None else min(limit, len(self.datasets[split]))
        return self.batch(split, range(count))

    def batch(self, split: str, indices: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and labels at ``indices`` of a split, as tensors (empty tensors for no indices)."""
        items = [self.datasets[split][int(i)] for i in indices]
        if not items:
            return torch.empty(0, 3, self.resolution, self.resolution), torch.empty(0, dtype=torch.long)
        images, labels = zip(*items)
        return torch.stack(images), torch.as_tensor(labels)


def load_digits_bundle(resolution: int, seed: int = 0) -> DataBundle:
    """scikit-learn's digits at ``resolution`` px, 3 channels, normalised, fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False)
    images = ((images - 0.5) / 0.5).repeat(1, 3, 1, 1)
    labels = torch.tensor(digits.target, dtype=torch.long)
    indices = np.arange(len(labels))
    train, rest = train_test_split(indices, test_size=0.4, stratify=digits.target, random_state=seed)
    val, test = train_test_split(rest, test_size=0.5, stratify=digits.target[rest], random_state=seed)
    datasets = {name: TensorDataset(images[idx], labels[idx]) for name, idx in zip(SPLITS, (train, val, test))}
    return DataBundle("digits", 10, resolution, datasets)


# the distortion family's full ranges (``distort``'s defaults; ``augment_batch`` scales them)
MAX_DEGREES, MAX_SHIFT, ZOOM, MAX_SHEAR = 25.0, 0.15, (0.75, 1.1), 0.3


def distort(images: torch.Tensor, copies: int, seed: int = 0, max_degrees: float = MAX_DEGREES,
            max_shift: float = MAX_SHIFT, scale: tuple[float, float] = ZOOM, max_shear: float = MAX_SHEAR,
            noise: float = 0.35) -> torch.Tensor:
    """``copies`` fixed random affine distortions of every image (N, C, H, W) plus Gaussian pixel noise, in
    image-major order (all copies of image 0 first). Backgrounds are the images' minimum value."""
    generator = torch.Generator().manual_seed(seed)
    count = len(images) * copies
    source = images.repeat_interleave(copies, dim=0)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(count, generator=generator)

    angle = torch.deg2rad(uniform(-max_degrees, max_degrees))
    zoom = uniform(*scale)
    shear = uniform(-max_shear, max_shear)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([
        torch.stack([cos, -sin + shear * cos, uniform(-2 * max_shift, 2 * max_shift)], dim=1),
        torch.stack([sin, cos + shear * sin, uniform(-2 * max_shift, 2 * max_shift)], dim=1),
    ], dim=1)
    floor = float(images.min())
    grid = F.affine_grid(theta, list(source.shape), align_corners=False)
    warped = F.grid_sample(source - floor, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + floor
    return warped + noise * torch.randn(warped.shape, generator=generator)


def augment_batch(images: torch.Tensor, generator: torch.Generator, noise: float = 0.1,
                  strength: float = 1.0) -> torch.Tensor:
    """On-the-fly augmentation: a fresh random affine distortion (the ``distort`` family) of every image of a batch,
    plus light pixel noise. ``strength`` scales every range (rotation, shift, zoom, shear, noise): 1 is the full
    ``distort`` family, 0.5 half of it. Grey images kept as 3 equal channels are distorted once and stay grey."""
    if not 0 < strength <= 1:
        raise ValueError(f"augmentation strength must be in (0, 1], got {strength}")
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    ranges = {"max_degrees": MAX_DEGREES * strength, "max_shift": MAX_SHIFT * strength,
              "max_shear": MAX_SHEAR * strength, "scale": tuple(1 + (end - 1) * strength for end in ZOOM),
              "noise": noise * strength}
    grey = images.shape[1] == 3 and bool((images[:, :1] == images[:, 1:]).all())
    if grey:
        return distort(images[:, :1], 1, seed=seed, **ranges).expand(-1, 3, -1, -1)
    return distort(images, 1, seed=seed, **ranges)


def load_distorted_digits_bundle(resolution: int, copies: int = 8, seed: int = 0) -> DataBundle:
    """``digits`` with every image of every split drawn ``copies`` times under fixed random distortions."""
    if copies < 1:
        raise ValueError(f"digits-distorted needs at least 1 copy per image, got {copies}")
    plain = load_digits_bundle(resolution, seed)
    datasets = {}
    for index, split in enumerate(SPLITS):
        images, labels = plain.tensors(split)
        grey = distort(images[:, :1], copies, seed=seed * 100 + index)
        datasets[split] = TensorDataset(grey.expand(-1, 3, -1, -1).contiguous(), labels.repeat_interleave(copies))
    return DataBundle(f"digits-distorted-{copies}", 10, resolution, datasets)


LARGE_TEST_SEED = 777  # the distortions of the large test set: independent of every split's (seeds 0-2 per data seed)


def large_distorted_test_set(resolution: int, copies: int = 32, seed: int = LARGE_TEST_SEED) -> TensorDataset:
    """The test digits of ``digits`` / ``digits-distorted-K`` drawn ``copies`` times under fixed distortions of their
    own: an evaluation set whose sampling noise is small. With 4 copies (1440 images) the test accuracy of one
    architecture varied 0.72 pts from seed to seed; on 32 copies (11520 images) 0.45 pts (4 seeds, 20 epochs): about
    60% of that variance was which test images each training happened to get wrong, not the training."""
    if copies < 1:
        raise ValueError(f"the large test set needs at least 1 copy per image, got {copies}")
    images, labels = load_digits_bundle(resolution).tensors("test")
    grey = distort(images[:, :1], copies, seed=seed)
    return TensorDataset(grey.expand(-1, 3, -1, -1).contiguous(), labels.repeat_interleave(copies))


def open_image(path: str) -> object:
    """An RGB image; ValueError naming the file when it is not a readable image (truncated, not an image)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with open(path, "rb") as handle:
            image = Image.open(handle)
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"{path} is not a readable image ({error}); remove or replace it") from None


def load_image_folder_bundle(root: Path, resolution: int) -> DataBundle:
    """An ImageNet-layout folder read with torchvision's ImageFolder and timm's train/eval transforms."""
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    root = Path(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"image folder {root} needs {root / split}/CLASS/*.jpg (ImageNet layout); "
                                    f"{root / split} is missing")
    transform = create_transform(resolution, is_training=False)
    train = ImageFolder(str(root / "train"), transform=transform, loader=open_image)
    val = ImageFolder(str(root / "val"), transform=transform, loader=open_image)
    if train.classes != val.classes:
        raise ValueError(f"{root}: train and val have different classes ({len(train.classes)} vs {len(val.classes)})")
    return DataBundle(str(root), len(train.classes), resolution, {"train": train, "val": val, "test": val})


EMBEDDED = ("digits", "digits-distorted", "digits-distorted-K", "glyphs", "glyphs-K")


def large_test_set(name: str, resolution: int, copies: int = 32) -> DataBundle | None:
    """An evaluation set whose sampling noise is small, drawn apart from every split: the test digits under
    ``copies`` distortions of their own for ``digits*``; ``copies // 8`` (at least 1) times the glyph test split
    from another seed for ``glyphs*`` (11,904 images for 32); None for image folders."""
    if copies < 1:
        raise ValueError(f"the large test set needs copies >= 1, got {copies}")
    if name.startswith("digits"):
        return DataBundle("large test", 10, resolution, {"test": large_distorted_test_set(resolution, copies)})
    if name.startswith("glyphs"):
        from hwnas.data.glyphs import CLASSES, RENDER, generate

        images, labels = generate("test", max(1, copies // 8), LARGE_TEST_SEED).tensors
        if resolution != RENDER:
            images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                                   antialias=True)
        return DataBundle("large test", len(CLASSES), resolution, {"test": TensorDataset(images, labels)})
    return None


def check_data_name(name: str) -> None:
    """Raise the error ``load_data`` would give for ``name`` without loading anything (checked before a run is made)."""
    if name == "digits":
        return
    if name.startswith("digits-distorted"):
        match = re.fullmatch(r"digits-distorted(?:-(\d+))?", name)
        if match is None or int(match.group(1) or 8) < 1:
            raise ValueError(f"--data {name!r}: write 'digits-distorted' or 'digits-distorted-K' with K >= 1 copies")
        return
    if name.startswith("glyphs"):
        _glyph_multiple(name)
        return
    if not Path(name).exists():
        raise FileNotFoundError(f"--data {name!r} is neither one of the embedded data sets ({', '.join(EMBEDDED)}) "
                                "nor an existing image folder")


def _glyph_multiple(name: str) -> int:
    match = re.fullmatch(r"glyphs(?:-(\d+))?", name)
    if match is None or int(match.group(1) or 1) < 1:
        raise ValueError(f"--data {name!r}: write 'glyphs' or 'glyphs-K' with K >= 1 (K times the images per class)")
    return int(match.group(1) or 1)


def data_classes(name: str) -> int | None:
    """How many classes the data set ``name`` has, without loading it (None for a folder without ``train/``)."""
    check_data_name(name)
    if name.startswith("digits"):
        return 10
    if name.startswith("glyphs"):
        from hwnas.data.glyphs import CLASSES

        return len(CLASSES)
    train = Path(name) / "train"
    return sum(1 for p in train.iterdir() if p.is_dir()) if train.is_dir() else None


def load_glyphs_bundle(resolution: int, multiple: int = 1, seed: int = 0) -> DataBundle:
    """``glyphs`` (``hwnas.data.glyphs``) at ``resolution`` px: rendered at 64 px, resized when asked."""
    from hwnas.data.glyphs import CLASSES, RENDER, generate

    datasets = {}
    for split in SPLITS:
        images, labels = generate(split, multiple, seed).tensors
        if resolution != RENDER:
            images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", align_corners=False,
                                   antialias=True)
        datasets[split] = TensorDataset(images, labels)
    return DataBundle("glyphs" if multiple == 1 else f"glyphs-{multiple}", len(CLASSES), resolution, datasets)


def load_data(name: str, resolution: int) -> DataBundle:
    """``digits``, ``digits-distorted`` (8 distorted copies per image), ``digits-distorted-K``, ``glyphs[-K]`` or an
    image folder."""
    check_data_name(name)
    if name.startswith("glyphs"):
        return load_glyphs_bundle(resolution, _glyph_multiple(name))
    if name == "digits":
        return load_digits_bundle(resolution)
    if name.startswith("digits-distorted"):
        return load_distorted_digits_bundle(resolution, int(name.removeprefix("digits-distorted").lstrip("-") or 8))
    return load_image_folder_bundle(Path(name), resolution)
