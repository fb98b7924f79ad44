"""The numeric building blocks of cifarlab.data.corruptions, on batches of images held as float
arrays (N, H, W, C): filter kernels, ImageMagick's motion blur, the diamond-square plasma
fractal, zooming about the centre, glass blur's pixel shuffle, a procedural frost layer.
numpy, scipy and Pillow only; every random draw comes from the Generator passed in."""

from __future__ import annotations

import math

import numpy as np
import scipy.ndimage as ndi


def gaussian_1d(sigma: float, size: int) -> np.ndarray:
    """A normalized Gaussian of `size` taps (odd) and standard deviation sigma, as OpenCV's
    getGaussianKernel makes it for a positive sigma."""
    offsets = np.arange(size) - size // 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The defocus (disk) kernel of CIFAR-10-C: the pixels within `radius` of the centre,
    normalized, smoothed by a 3x3 Gaussian (5x5 above radius 8) of sigma alias_blur; the
    outer rows and columns whose weights are all below 1e-12 are dropped (they could not
    change a uint8 value)."""
    half = 8 if radius <= 8 else math.ceil(radius)
    coords = np.arange(-half, half + 1)
    disk = (coords[None, :] ** 2 + coords[:, None] ** 2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    g = gaussian_1d(alias_blur, 3 if radius <= 8 else 5)
    kernel = ndi.correlate(disk, np.outer(g, g), mode="mirror")
    rows, cols = np.nonzero(kernel > 1e-12)
    return kernel[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def filter2d(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Each channel of each image correlated with a 2-D kernel, borders reflected about the
    edge pixel (OpenCV's default BORDER_REFLECT_101)."""
    return ndi.correlate(x, kernel[None, :, :, None], mode="mirror")


def motion_offsets(width: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """(dy, dx) of each tap of ImageMagick's MotionBlurImage along `angle` degrees: tap i
    lies i pixels away along that direction, rounded to the pixel grid."""
    taps = np.arange(width)
    rad = math.radians(angle)
    dx = np.ceil(taps * math.cos(rad) - 0.5).astype(np.int64)
    dy = np.ceil(taps * math.sin(rad) - 0.5).astype(np.int64)
    return dy, dx


def motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's motion blur, image i along angles[i] degrees: a one-sided Gaussian of
    2*ceil(radius)+1 taps (exp(-t^2 / 2 sigma^2), t = 0, 1, ...) along a line, the pixels
    beyond the border repeating the edge (ImageMagick's default virtual pixels)."""
    width = 2 * math.ceil(radius) + 1
    weights = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    n, h, w = x.shape[:3]
    offsets = np.stack([np.stack(motion_offsets(width, a)) for a in angles])  # (N, 2, width)
    out = np.zeros_like(x, dtype=np.float64)
    images = np.arange(n)[:, None, None]
    for t in range(width):
        rows = np.clip(np.arange(h)[None, :] + offsets[:, 0, t, None], 0, h - 1)
        cols = np.clip(np.arange(w)[None, :] + offsets[:, 1, t, None], 0, w - 1)
        out += weights[t] * x[images, rows[:, :, None], cols[:, None, :]]
    return out


def _wibbled(a: np.ndarray, wibble: float, rng: np.random.Generator) -> np.ndarray:
    return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)


def plasma_fractal(
    n: int, rng: np.random.Generator, mapsize: int = 32, wibbledecay: float = 3
) -> np.ndarray:
    """n height maps (n, mapsize, mapsize) in [0, 1] by the diamond-square algorithm on a
    torus, as CIFAR-10-C's fog draws them: each step's random offsets shrink by
    `wibbledecay` (smaller: rougher). mapsize must be a power of two."""
    m = np.zeros((n, mapsize, mapsize))
    step, wibble = mapsize, 100.0
    while step >= 2:
        half = step // 2
        corners = m[:, 0:mapsize:step, 0:mapsize:step]
        square = corners + np.roll(corners, -1, axis=1)
        square += np.roll(square, -1, axis=2)
        m[:, half:mapsize:step, half:mapsize:step] = _wibbled(square, wibble, rng)
        centres = m[:, half:mapsize:step, half:mapsize:step]
        corners = m[:, 0:mapsize:step, 0:mapsize:step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        m[:, 0:mapsize:step, half:mapsize:step] = _wibbled(left, wibble, rng)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        m[:, half:mapsize:step, 0:mapsize:step] = _wibbled(top, wibble, rng)
        step //= 2
        wibble /= wibbledecay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


def _zoom_matrix(size: int, factor: float) -> np.ndarray:
    """The (round(size*factor), size) matrix of scipy.ndimage.zoom's linear interpolation
    (order 1) along one axis: zooming is this matrix applied to the rows and the columns."""
    return ndi.zoom(np.eye(size), (factor, 1), order=1)


def clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """Each image enlarged `factor` times about its centre, cut back to its own size: the
    central part, ceil(size / factor) pixels wide, zoomed by scipy's linear interpolation
    (the rows of the zoom matrices that the cut drops are dropped first)."""
    n, h, w, c = x.shape
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    top, left = (h - ch) // 2, (w - cw) // 2
    rows, cols = _zoom_matrix(ch, factor), _zoom_matrix(cw, factor)
    trim_top, trim_left = (len(rows) - h) // 2, (len(cols) - w) // 2
    rows = rows[trim_top : trim_top + h].astype(x.dtype)
    cols = cols[trim_left : trim_left + w].astype(x.dtype)
    crop = x[:, top : top + ch, left : left + cw].reshape(n, ch, cw * c)
    out = np.matmul(rows, crop).reshape(n * h, cw, c)
    return np.matmul(cols, out).reshape(n, h, w, c)


def glass_shuffle(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One pass of glass blur's local shuffle (maximum distance 1). The original walks the
    pixels from the bottom right, 'swapping' each with its neighbour at a random offset in
    {-1, 0} x {-1, 0}; as written in numpy the swap copies the neighbour onto the pixel and
    leaves the neighbour, which has not been visited yet. So each pixel of rows and columns
    2..size-1 takes the value its randomly chosen up/left neighbour had before the pass."""
    n, h, w = x.shape[:3]
    dy = rng.integers(-1, 1, size=(n, h - 2, w - 2))
    dx = rng.integers(-1, 1, size=(n, h - 2, w - 2))
    rows = np.arange(2, h)[None, :, None] + dy
    cols = np.arange(2, w)[None, None, :] + dx
    out = x.copy()
    out[:, 2:, 2:] = x[np.arange(n)[:, None, None], rows, cols]
    return out


def frost_layer(n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """n procedural frost textures (n, h, w, 3), values 0..255, standing in for the frost
    photographs of CIFAR-10-C: plasma-fractal patches plus crystal streaks (sparse seeds
    drawn out along two random directions), bluish white. Brightness, contrast and tint are
    drawn per image in the ranges measured on 32x32 crops of the five photographs the
    original draws from (at its 0.2 scale): mean 110..215, standard deviation 14..40, blue
    8..17 above green and red 5..40 below it."""
    size = 1 << max(h, w, 2).bit_length()
    patches = plasma_fractal(n, rng, size, wibbledecay=1.8)[:, :h, :w]
    seeds = (rng.random((n, h, w, 1)) < 0.08).astype(np.float64)
    streaks = np.zeros_like(seeds)
    for _ in range(2):
        streaks = np.maximum(streaks, motion_blur(seeds, 6, 4, rng.uniform(0, 360, n)))
    texture = patches + 4 * streaks[..., 0]
    texture -= texture.mean(axis=(1, 2), keepdims=True)
    texture /= texture.std(axis=(1, 2), keepdims=True) + 1e-8
    level = rng.uniform(110, 215, (n, 1, 1, 1))
    spread = rng.uniform(14, 40, (n, 1, 1, 1))
    tint = np.stack([-rng.uniform(5, 40, n), np.zeros(n), rng.uniform(8, 17, n)], axis=1)
    return np.clip(level + tint[:, None, None, :] + spread * texture[..., None], 0, 255)


def affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The affine maps (N, 3, 3) taking the three (x, y) points `src` (3, 2) to each of
    `dst` (N, 3, 2), as OpenCV's getAffineTransform solves them."""
    design = np.concatenate([src, np.ones((3, 1))], axis=1)  # rows (x, y, 1)
    top = np.linalg.solve(design, dst).transpose(0, 2, 1)  # (N, 2, 3)
    bottom = np.broadcast_to([[[0.0, 0.0, 1.0]]], (len(dst), 1, 3))
    return np.concatenate([top, bottom], axis=1)


def warp_affine(image: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """One image (H, W, C) moved by the affine map `forward` (3 x 3, on (x, y, 1)), as
    OpenCV's warpAffine: each output pixel bilinearly sampled where the inverse map sends
    it, borders reflected about the edge pixel (BORDER_REFLECT_101, scipy's 'mirror')."""
    (a, b, c), (d, e, f) = np.linalg.inv(forward)[:2]
    matrix = np.array([[e, d, 0.0], [b, a, 0.0], [0.0, 0.0, 1.0]])  # on (row, col, channel)
    return ndi.affine_transform(image, matrix, offset=(f, c, 0.0), order=1, mode="mirror")


def displace(image: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """One image (H, W, C) sampled bilinearly at (row + dy, column + dx) of each pixel,
    borders reflected half-sample symmetric (scipy's 'reflect')."""
    h, w, c = image.shape
    rows, cols, chans = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    coords = [rows + dy[..., None], cols + dx[..., None], chans]
    return ndi.map_coordinates(image, coords, order=1, mode="reflect")
