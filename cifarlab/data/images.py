"""Image files -> uint8 arrays: the one rule that ImageFolder datasets and `predict` share.

Each image is read with Pillow (PNG, JPEG, BMP, WebP, GIF, TIFF, ...; an animation gives
its first frame), turned upright by its EXIF orientation, composited on white where it
has transparency, converted to RGB (or grey for 1-channel models; 16-bit grey scaled to
8 bits) and resized to exactly size x size with Pillow's antialiased bilinear filter,
without keeping the aspect ratio (no crop, no padding).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cifarlab.errors import CifarlabError

WIDE_GREY = ("I", "I;16", "I;16B", "I;16L", "I;16N")
WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def to_array(im: Image.Image, size: int = 32, channels: int = 3) -> np.ndarray:
    """A Pillow image -> uint8 (channels, size, size), following the module's rule."""
    im = ImageOps.exif_transpose(im)
    if im.mode in WIDE_GREY:
        grey = (np.asarray(im).astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
        im = Image.fromarray(grey)
    if im.mode in WITH_ALPHA or "transparency" in im.info:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im.convert("RGBA"))
    im = im.convert("L" if channels == 1 else "RGB")
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR)
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def load_image(path: str | os.PathLike, size: int = 32, channels: int = 3) -> np.ndarray:
    """Read one image file -> uint8 (channels, size, size); a CifarlabError naming the file
    if it cannot be read."""
    try:
        with Image.open(path) as im:
            return to_array(im, size, channels)
    except UnidentifiedImageError:
        raise CifarlabError(f"{path}: not an image (or a format Pillow cannot read)") from None
    except Exception as e:  # truncated, corrupt, unreadable: reported per file
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CifarlabError(f"{path}: cannot read it ({why})") from None


def image_suffixes() -> set[str]:
    """File endings Pillow can open (.png, .jpg, .jpeg, .bmp, .webp, .gif, .tif, ...)."""
    return {s.lower() for s in Image.registered_extensions()}


def walk_files(folder: Path, suffixes: Sequence[str] | None = None) -> list[Path]:
    """Files under `folder`, recursively in sorted order, hidden files and folders skipped;
    only those with one of `suffixes` if given."""
    keep = None if suffixes is None else {s.lower() for s in suffixes}
    files: list[Path] = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if not n.startswith(".") and (keep is None or Path(n).suffix.lower() in keep):
                files.append(Path(root) / n)
    return files
