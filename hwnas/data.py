"""Data: scikit-learn's digits (the embedded default, no download) or an ImageNet-layout image folder.

``digits``: 1797 8x8 grey images of 10 classes, shipped inside scikit-learn, resized to the space's resolution,
repeated to 3 channels and normalised; a fixed stratified split of 60% train, 20% val, 20% test.
An image folder ``ROOT`` holds ``ROOT/train/CLASS/*.jpg`` and ``ROOT/val/CLASS/*.jpg`` (val doubles as test), read
with torchvision's ImageFolder and timm's transforms.
"""

from __future__ import annotations

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

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole split as (images, labels) tensors (small data sets only)."""
        images, labels = zip(*(self.datasets[split][i] for i in range(len(self.datasets[split]))))
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


def load_image_folder_bundle(root: Path, resolution: int) -> DataBundle:
    """An ImageNet-layout folder read with torchvision's ImageFolder and timm's train/eval transforms."""
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    root = Path(root)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(f"image folder {root} needs {root / split}/CLASS/*.jpg (ImageNet layout); "
                                    f"{root / split} is missing")
    train = ImageFolder(str(root / "train"), transform=create_transform(resolution, is_training=False))
    val = ImageFolder(str(root / "val"), transform=create_transform(resolution, is_training=False))
    if train.classes != val.classes:
        raise ValueError(f"{root}: train and val have different classes ({len(train.classes)} vs {len(val.classes)})")
    return DataBundle(str(root), len(train.classes), resolution, {"train": train, "val": val, "test": val})


def load_data(name: str, resolution: int) -> DataBundle:
    """``digits`` or the path of an image folder."""
    if name == "digits":
        return load_digits_bundle(resolution)
    path = Path(name)
    if not path.exists():
        raise FileNotFoundError(f"--data {name!r} is neither 'digits' nor an existing image folder")
    return load_image_folder_bundle(path, resolution)
