"""MNIST and Fashion-MNIST in the official idx format, gzipped or not.

    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]
    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]

in the folder given, or under it in torchvision's layout (MNIST/raw/, FashionMNIST/raw/).
Images are 1 channel, 28x28, uint8.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import MNIST, FashionMNIST

from cifarlab.data.dataset import Dataset, ReadOptions, Split
from cifarlab.errors import CifarlabError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
EXPECTED = "the four idx files (train-images-idx3-ubyte[.gz], ...)"


def _file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """The array of an idx file: a big-endian header (magic, then one int32 per axis)."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise CifarlabError(f"{path} cannot be read ({type(e).__name__}): replace it") from None
    head = 4 * (1 + ndim)
    if len(raw) < head or int.from_bytes(raw[:4], "big") != magic:
        raise CifarlabError(f"{path} is not an idx file of {ndim} axes (magic {magic})")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    size = int(np.prod(dims))
    if len(raw) - head != size:
        raise CifarlabError(f"{path}: {len(raw) - head} bytes of data for shape {dims}; truncated?")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def _read_split(folder: Path, which: str) -> Split:
    image_name, label_name = FILES[which]
    paths = [_file(folder, image_name), _file(folder, label_name)]
    if None in paths:
        missing = image_name if paths[0] is None else label_name
        raise CifarlabError(f"missing {missing}[.gz] in {folder}; the copy is incomplete")
    images = _read_idx(paths[0], IMAGES_MAGIC, 3)
    labels = _read_idx(paths[1], LABELS_MAGIC, 1).astype(np.int64)
    if len(images) != len(labels):
        raise CifarlabError(f"{folder}: {len(labels)} labels for {len(images)} {which} images")
    if labels.size and labels.max() > 9:
        raise CifarlabError(f"{paths[1]}: label {labels.max()} is outside 0..9")
    return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels))


def _locator(torchvision_folder: str):
    def locate(path: Path) -> Path | None:
        for folder in (path, path / torchvision_folder / "raw", path / torchvision_folder):
            if folder.is_dir() and any(_file(folder, n) for pair in FILES.values() for n in pair):
                return folder
        return None

    return locate


locate_mnist = _locator("MNIST")
locate_fashion = _locator("FashionMNIST")


def _reader(name: str, classes: list[str]):
    def read(folder: Path, options: ReadOptions) -> Dataset:
        return Dataset(
            name, _read_split(folder, "train"), _read_split(folder, "test"), list(classes), folder
        )

    return read


read_mnist = _reader("mnist", MNIST_CLASSES)
read_fashion = _reader("fashion-mnist", FASHION_CLASSES)


def download_mnist(cache: Path) -> None:
    MNIST(root=str(cache), train=True, download=True)


def download_fashion(cache: Path) -> None:
    FashionMNIST(root=str(cache), train=True, download=True)
