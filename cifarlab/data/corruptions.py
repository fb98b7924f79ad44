"""The 15 corruptions of CIFAR-10-C, generated: images made harder in known ways, to see where
and why a model fails.

CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations") applies 15 corruptions at 5 severities to the test
images. `corrupt(images, name, severity)` makes them here, with the CIFAR parameters of the
authors' script make_cifar_c.py (hendrycks/robustness, ImageNet-C/create_c/), written anew
with numpy, scipy and Pillow (no scikit-image, OpenCV or ImageMagick).

Same formulas and parameters as the original: gaussian_noise, shot_noise, impulse_noise,
defocus_blur, zoom_blur, fog, brightness, contrast, elastic_transform, pixelate,
jpeg_compression, and glass_blur (whose pixel "swap" is, as numpy runs the original, a copy
of an up/left neighbour: reproduced as such). Where OpenCV was used, its operation is redone
(Gaussian and disk kernels, 2-D filtering with reflect-101 borders, the affine warp of
elastic_transform through scipy's bilinear interpolation, not OpenCV's 1/32-pixel one);
brightness's HSV round trip is its closed form (RGB scaled by new V / old V).

Different from the original:
- motion_blur: ImageMagick's MotionBlurImage is reimplemented (a one-sided Gaussian of
  2*ceil(radius)+1 taps along a line, edge pixels repeated), same radius, sigma and random
  angle in -45..45 degrees; close to, not bit-identical with, ImageMagick's output.
- snow: the same snow layer and blend, its motion blur as for motion_blur above.
- frost: the same blend (c0 * image + c1 * frost, the original c0 and c1), but the frost
  layer is procedural (corruption_tools.frost_layer: fractal patches and crystal streaks,
  brightness, contrast and tint in the ranges of the original's frost photographs), not a
  crop of those photographs, which cifarlab does not ship.

The random draws are not the original's (its seed is not recorded): each call draws from a
numpy Generator seeded with (seed, corruption, severity), in image order, so the same images
give the same output; one image's corruption depends on its position in the batch. Outputs
are cut to uint8 as the original does (np.uint8 of values clipped to 0..255: truncation).

1-channel images (MNIST, Fashion-MNIST, a grey ImageFolder) are corrupted as the RGB image
with their grey in each channel, and the first channel is kept: a grey image stays grey
under every corruption, and noise drawn per channel keeps its full strength (an average of
the three would divide its spread by sqrt(3)).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch
from PIL import Image

from cifarlab.data import corruption_ops as tools
from cifarlab.errors import CifarlabError
from cifarlab.files import atomic_write_bytes

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
FAMILIES: dict[str, str] = {
    name: family
    for family, names in (
        ("noise", CORRUPTIONS[0:3]),
        ("blur", CORRUPTIONS[3:7]),
        ("weather", CORRUPTIONS[7:10]),
        ("digital", CORRUPTIONS[10:15]),
    )
    for name in names
}
SEVERITIES = (1, 2, 3, 4, 5)
CHUNK = 1000  # images corrupted at a time (memory: a float copy of each chunk)

Op = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


# ------------------------------------------------------------------- noise


def gaussian_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise of standard deviation c (images in 0..1)."""
    c = [0.04, 0.06, 0.08, 0.09, 0.10][severity - 1]
    return np.clip(x / 255 + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def shot_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson (photon) noise: each value drawn as Poisson(c * value) / c."""
    c = [500, 250, 100, 75, 50][severity - 1]
    return np.clip(rng.poisson(x / 255 * c) / c, 0, 1) * 255


def impulse_noise(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: a fraction c of the values (each channel alone), half of them set
    to 0, half to 1, as scikit-image's random_noise(mode="s&p") does."""
    c = [0.01, 0.02, 0.03, 0.05, 0.07][severity - 1]
    out = x / 255
    flipped = rng.random(x.shape) < c
    salted = rng.random(x.shape) < 0.5
    out[flipped & salted] = 1
    out[flipped & ~salted] = 0
    return out * 255


# ------------------------------------------------------------------- blur


def _gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    """scikit-image's gaussian(..., multichannel=True): each channel, borders 'nearest'."""
    return ndi.gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="nearest", truncate=4.0)


def defocus_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A disk kernel of radius c0, antialiased by a Gaussian of sigma c1."""
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    return np.clip(tools.filter2d(x / 255, tools.defocus_kernel(radius, alias)), 0, 1) * 255


def glass_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (sigma c0), uint8, `iterations` passes of the local pixel shuffle,
    then the Gaussian blur again."""
    sigma, _, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][
        severity - 1
    ]
    out = np.floor(_gaussian(x / 255, sigma) * 255)
    for _ in range(iterations):
        out = tools.glass_shuffle(out, rng)
    return np.clip(_gaussian(out / 255, sigma), 0, 1) * 255


def motion_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """ImageMagick-style motion blur (radius, sigma) along a random angle in -45..45."""
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    angles = rng.uniform(-45, 45, size=len(x))
    return np.round(tools.motion_blur(x.astype(np.float64), radius, sigma, angles))


def zoom_blur(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The mean of the image and its zooms about the centre by 1, 1.01, ... up to c."""
    stop = [1.06, 1.11, 1.16, 1.21, 1.26][severity - 1]
    x = (x / 255).astype(np.float32)
    out = np.zeros_like(x)
    factors = np.arange(1, stop, 0.01)
    for factor in factors:
        out += tools.clipped_zoom(x, factor).astype(np.float32)
    return np.clip((x + out) / (len(factors) + 1), 0, 1) * 255


# ------------------------------------------------------------------- weather


def snow(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Flakes: Gaussian noise zoomed, thresholded and motion-blurred, added twice (the
    second turned 180 degrees) onto an image brightened towards its grey level."""
    loc, scale, zoom, threshold, radius, sigma, keep = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
        (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ][severity - 1]
    x = (x / 255).astype(np.float32)
    layer = rng.normal(size=(*x.shape[:3], 1), loc=loc, scale=scale)
    layer = tools.clipped_zoom(layer, zoom)
    layer[layer < threshold] = 0
    layer = np.floor(np.clip(layer, 0, 1) * 255)  # the original's 8-bit PNG of the layer
    angles = rng.uniform(-135, -45, size=len(x))
    layer = np.round(tools.motion_blur(layer, radius, sigma, angles)) / 255
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = keep * x + (1 - keep) * np.maximum(x, grey[..., None] * 1.5 + 0.5)
    return np.clip(x + layer + np.rot90(layer, k=2, axes=(1, 2)), 0, 1) * 255


def frost(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """c0 * image + c1 * a frost layer (procedural here, see the module docstring)."""
    keep, amount = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    layer = tools.frost_layer(len(x), x.shape[1], x.shape[2], rng)
    return np.clip(keep * x + amount * layer, 0, 255)


def fog(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A plasma fractal of strength c0 (roughness c1) added, then scaled back so that the
    image's brightest value keeps its place."""
    amount, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    h, w = x.shape[1:3]
    size = max(32, 1 << (max(h, w) - 1).bit_length())
    x = x / 255
    top = x.max(axis=(1, 2, 3), keepdims=True)
    x = x + amount * tools.plasma_fractal(len(x), rng, size, decay)[:, :h, :w, None]
    return np.clip(x * top / (top + amount), 0, 1) * 255


# ------------------------------------------------------------------- digital


def brightness(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value raised by c (at most 1), hue and saturation kept: RGB times new/old value
    (black turns grey at value c)."""
    c = [0.05, 0.1, 0.15, 0.2, 0.3][severity - 1]
    x = x / 255
    value = x.max(axis=3, keepdims=True)
    raised = np.clip(value + c, 0, 1)
    out = np.where(value > 0, x * raised / np.maximum(value, 1e-12), raised)
    return np.clip(out, 0, 1) * 255


def contrast(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Each channel pulled towards its mean: (x - mean) * c + mean."""
    c = [0.75, 0.5, 0.4, 0.3, 0.15][severity - 1]
    x = x / 255
    means = x.mean(axis=(1, 2), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def _pil_each(x: np.ndarray, change: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(change(Image.fromarray(image))) for image in x])


def pixelate(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Box-downsampled to c of the size and box-upsampled back (Pillow)."""
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    h, w = x.shape[1:3]
    small = (int(w * c), int(h * c))
    return _pil_each(x, lambda im: im.resize(small, Image.BOX).resize((w, h), Image.BOX))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def jpeg_compression(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Saved as JPEG of quality c and read back (Pillow)."""
    quality = [80, 65, 58, 50, 40][severity - 1]
    return _pil_each(x, lambda im: _jpeg(im, quality))


def elastic_transform(x: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A random affine warp (corners moved by up to c2 pixels), then a smooth random
    displacement field (uniform noise, Gaussian sigma c1, times c0); sizes scale with the
    image (the original's fractions of 32)."""
    h, w = x.shape[1:3]
    alpha, sigma, shift = min(h, w) * np.array(
        [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)][
            severity - 1
        ]
    )
    x = (x / 255).astype(np.float32)
    centre, side = np.array([w // 2, h // 2], dtype=np.float64), min(h, w) // 3
    src = np.array([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    dst = src + rng.uniform(-shift, shift, size=(len(x), 3, 2))
    warps = tools.affine_from_points(src, dst)  # (N, 3, 3): dst = M @ src
    fields = rng.uniform(-1, 1, size=(len(x), 2, h, w))
    fields = ndi.gaussian_filter(fields, (0, 0, sigma, sigma), mode="reflect", truncate=3)
    fields = (fields * alpha).astype(np.float32)
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = tools.warp_affine(x[i], warps[i])
        out[i] = tools.displace(out[i], fields[i, 1], fields[i, 0])
    return np.clip(out, 0, 1) * 255


OPS: dict[str, Op] = {name: globals()[name] for name in CORRUPTIONS}


# ------------------------------------------------------------------- the API


def parse_corruptions(text: str) -> list[str]:
    """The corruptions named by `text`: all of them for "all", else the names separated by
    commas, in the order given (repeats dropped)."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if names == ["all"]:
        return list(CORRUPTIONS)
    unknown = [n for n in names if n not in CORRUPTIONS]
    if unknown or not names:
        what = f"unknown corruption {unknown[0]!r}" if unknown else "no corruption named"
        raise CifarlabError(f"{what}; choose all or names from: {', '.join(CORRUPTIONS)}")
    return list(dict.fromkeys(names))


def parse_severities(text: str) -> list[int]:
    """The severities named by `text`, a range ("1-5", "2-4") or a list ("1,3,5") of
    1..5, or both ("1,3-5"): ascending, repeats dropped."""
    found: set[int] = set()
    parts = [p.strip() for p in str(text).split(",")]
    for part in parts:
        m = re.fullmatch(r"(\d+)\s*(?:-\s*(\d+))?", part)
        low, high = (int(m[1]), int(m[2] or m[1])) if m else (0, -1)
        if not m or not 1 <= low <= high <= 5:
            raise CifarlabError(
                f"bad severities {text!r}: give severities 1..5 as a range (1-5, 2-4) "
                "or a list (1,3,5)"
            )
        found.update(range(low, high + 1))
    return sorted(found)


def _check(images: torch.Tensor, name: str, severity: int) -> None:
    if name not in CORRUPTIONS:
        raise CifarlabError(f"unknown corruption {name!r}; choose one of: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise CifarlabError(f"severity must be one of 1..5, not {severity!r}")
    if not torch.is_tensor(images):
        raise CifarlabError(f"corrupt needs a uint8 tensor (N, C, H, W), not {type(images)}")
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise CifarlabError(
            "corrupt needs uint8 images (N, C, H, W) with C 3 (colour) or 1 (grey), not "
            f"{images.dtype} {tuple(images.shape)}"
        )


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """`images` (uint8, N x C x H x W, C 3 or 1) with corruption `name` at `severity`
    (1..5): uint8 of the same shape; the same images, name, severity and seed give the same
    output. Grey images go through as RGB, their first channel kept (module docstring)."""
    _check(images, name, severity)
    if images.shape[1] == 1:
        return corrupt(images.expand(-1, 3, -1, -1), name, severity, seed)[:, :1].contiguous()
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name), severity])
    x = images.permute(0, 2, 3, 1).numpy()
    out = np.empty_like(x)
    for start in range(0, len(x), CHUNK):
        part = OPS[name](np.ascontiguousarray(x[start : start + CHUNK]), severity, rng)
        out[start : start + CHUNK] = np.clip(part, 0, 255).astype(np.uint8)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def corrupted(
    images: torch.Tensor,
    name: str,
    severity: int,
    cache_dir: Path | None,
    key: str,
    seed: int = 0,
) -> torch.Tensor:
    """corrupt(), kept in CACHE_DIR/<key>/<name>-<severity>.npy (uint8, N x C x H x W;
    <name>-<severity>-seed<seed>.npy for a seed other than 0) and read back from there when
    present; `key` names the source images (a hash of them, say). cache_dir None: no cache.
    A cached file of the wrong shape or an unreadable one is made again."""
    if cache_dir is None:
        return corrupt(images, name, severity, seed)
    _check(images, name, severity)
    suffix = f"-seed{seed}" if seed else ""
    path = Path(cache_dir) / key / f"{name}-{severity}{suffix}.npy"
    if path.is_file():
        try:
            cached = np.load(path)
        except (OSError, ValueError):
            cached = None  # a damaged file: made again
        if cached is not None and cached.dtype == np.uint8 and cached.shape == images.shape:
            return torch.from_numpy(cached)
    out = corrupt(images, name, severity, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.save(buffer, out.numpy())
    atomic_write_bytes(path, buffer.getvalue())
    return out
