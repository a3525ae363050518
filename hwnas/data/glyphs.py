"""``glyphs``: an embedded data set with structure: 62 classes (digits, upper- and lower-case letters) rendered from
the fonts matplotlib ships, each drawn with a random font, size, stroke width, affine transform, blur, background
texture, clutter (fragments of other glyphs) and pixel noise. Generated locally and deterministically from a seed;
nothing is downloaded.

Confusable pairs (``0 O o``, ``1 l I``, ``5 S s``, ``c C``, ``x X``, ``z Z``, ``2 Z``...) make it a fine-grained task
where network capacity and receptive field show; the render is at 64 px, where a 7x7 kernel sees more than a 3x3
one in every block of ``mbconv-tiny-64``.

Sizes (``glyphs``): per class 192 training, 24 validation and 48 test images (11904 / 1488 / 2976), made in about
40 s on one core the first time a process asks; ``glyphs-K`` multiplies every split by K. The splits use separate
random streams of one seed, so they never share a drawing. Calibrated so that the smallest ``mbconv-tiny-64`` member
reaches about 80% in 6 epochs (a first draft with a third of the images and more clutter stayed under 10%).
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

CLASSES = string.digits + string.ascii_uppercase + string.ascii_lowercase
RENDER = 64  # the images' own resolution; load_data resizes to the space's
PER_CLASS = {"train": 192, "val": 24, "test": 48}
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
              "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
              "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
              "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
              "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmti10.ttf", "cmtt10.ttf")


def font_folder() -> Path:
    """matplotlib's own TrueType fonts."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def fonts(folder: Path | None = None) -> list[Path]:
    """The fonts glyphs are drawn from; ValueError when the folder has none of them."""
    folder = Path(folder) if folder is not None else font_folder()
    found = [folder / name for name in FONT_FILES if (folder / name).is_file()]
    if not found:
        raise ValueError(f"no fonts to draw glyphs with in {folder} (looked for {', '.join(FONT_FILES[:3])}, ...); "
                         "give a folder of TrueType fonts")
    return found


@cache
def _font(path: str, size: int) -> object:
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _glyph(char: str, font: Path, size: int, rng: np.random.Generator) -> np.ndarray:
    """One character drawn black on white, centred on a 96 px canvas, then warped and thickened or thinned."""
    from PIL import Image, ImageDraw, ImageFilter

    canvas = Image.new("L", (96, 96), 0)
    draw = ImageDraw.Draw(canvas)
    face = _font(str(font), size)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=face)
    draw.text(((96 - (right - left)) / 2 - left, (96 - (bottom - top)) / 2 - top), char, fill=255, font=face)
    stroke = rng.integers(-1, 3)  # thinner, as drawn, or up to 2 px bolder
    if stroke > 0:
        canvas = canvas.filter(ImageFilter.MaxFilter(2 * stroke + 1))
    elif stroke < 0:
        canvas = canvas.filter(ImageFilter.MinFilter(3))
    angle, shear = np.deg2rad(rng.uniform(-15, 15)), rng.uniform(-0.25, 0.25)
    zoom, (dx, dy) = rng.uniform(0.9, 1.1), rng.uniform(-5, 5, size=2)
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    matrix = np.array([[cos, -sin + shear * cos], [sin, cos + shear * sin]])
    centre = np.array([48.0, 48.0])
    offset = centre - matrix @ (centre + np.array([dx, dy]))
    warped = canvas.transform((96, 96), Image.Transform.AFFINE,
                              (matrix[0, 0], matrix[0, 1], offset[0], matrix[1, 0], matrix[1, 1], offset[1]),
                              resample=Image.Resampling.BILINEAR)
    return np.asarray(warped.crop((16, 16, 80, 80)), dtype=np.float32) / 255.0


def _background(rng: np.random.Generator) -> np.ndarray:
    """A smooth random texture: low-frequency noise upsampled."""
    coarse = torch.tensor(rng.normal(0, 1, size=(1, 1, 6, 6)), dtype=torch.float32)
    smooth = torch.nn.functional.interpolate(coarse, size=(RENDER, RENDER), mode="bicubic", align_corners=False)
    return smooth[0, 0].numpy()


def render(char: str, font: Path, rng: np.random.Generator, clutter_from: list[Path]) -> np.ndarray:
    """One 64 px grey image of ``char`` in [-1, 1]."""
    from PIL import Image, ImageFilter

    ink = _glyph(char, font, int(rng.integers(34, 48)), rng)
    clutter = np.zeros_like(ink)
    for _ in range(int(rng.integers(0, 3))):  # fragments of other glyphs, smaller and fainter, cut at random
        other = _glyph(CLASSES[int(rng.integers(len(CLASSES)))], clutter_from[int(rng.integers(len(clutter_from)))],
                       int(rng.integers(14, 26)), rng)
        other = np.roll(other, tuple(int(v) for v in rng.integers(-26, 27, size=2)), axis=(0, 1))
        mask = np.zeros_like(other)
        y, x = rng.integers(0, RENDER // 2, size=2)
        mask[y:y + RENDER // 2, x:x + RENDER // 2] = 1
        clutter = np.maximum(clutter, other * mask * rng.uniform(0.2, 0.45))
    paper, pen = rng.uniform(-1.0, -0.4), rng.uniform(0.5, 1.0)
    if rng.random() < 0.3:  # light ink on dark paper or dark on light
        paper, pen = pen, paper
    image = paper + (pen - paper) * np.maximum(ink, clutter) + 0.15 * _background(rng)
    blur = rng.uniform(0.0, 0.9)
    if blur > 0.3:
        lifted = Image.fromarray(((image + 2) * 50).clip(0, 255).astype(np.uint8))
        image = np.asarray(lifted.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32) / 50 - 2
    image = image + rng.normal(0, rng.uniform(0.03, 0.12), size=image.shape)
    return image.clip(-1.5, 1.5).astype(np.float32)


@cache
def generate(split: str, multiple: int = 1, seed: int = 0, font_dir: Path | None = None) -> TensorDataset:
    """One split: ``PER_CLASS[split] * multiple`` images per class, 3 equal channels, at 64 px (made once per
    process: about 2.5 s per 1000 images)."""
    faces = fonts(font_dir)
    rng = np.random.default_rng([seed, ("train", "val", "test").index(split)])
    count = PER_CLASS[split] * multiple
    labels = np.repeat(np.arange(len(CLASSES)), count)
    images = np.stack([render(CLASSES[label], faces[int(rng.integers(len(faces)))], rng, faces) for label in labels])
    grey = torch.from_numpy(images).unsqueeze(1)
    return TensorDataset(grey.expand(-1, 3, -1, -1).contiguous(), torch.from_numpy(labels).long())
