"""CIFAR-10 and CIFAR-100 in the official "python version" layout: pickled batches.

    cifar-10-batches-py/   data_batch_1 .. data_batch_5, test_batch, batches.meta
    cifar-100-python/      train, test, meta (fine and coarse labels)

The pickles are read directly (no checksum: copies whose files differ from the official
archive, e.g. in their file names, still load); what is wrong with a file is named.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from cifarlab.data.dataset import Dataset, ReadOptions, Split
from cifarlab.errors import CifarlabError

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_META = "batches.meta"
CIFAR100_FOLDER = "cifar-100-python"
IMAGE_SHAPE = (3, 32, 32)


def _unpickle(path: Path, what: str) -> dict:
    if not path.is_file():
        raise CifarlabError(f"missing batch file {path}; the {what} copy is incomplete")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated or not a pickle at all
        raise CifarlabError(
            f"batch file {path} is truncated or corrupt ({type(e).__name__}); "
            f"replace it with a fresh copy of {what}"
        ) from None
    if not isinstance(obj, dict):
        raise CifarlabError(f"batch file {path} does not hold a {what} batch (a dict)")
    # Keys are bytes with encoding="bytes"; accept str keys too (re-pickled copies).
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batch(
    path: Path, what: str, label_key: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path, what)
    if "data" not in d or label_key not in d:
        raise CifarlabError(f"batch file {path} has no 'data'/'{label_key}' entries")
    data, labels = np.asarray(d["data"]), np.asarray(d[label_key])
    n_pixels = int(np.prod(IMAGE_SHAPE))
    if data.ndim != 2 or data.shape[1] != n_pixels:
        raise CifarlabError(
            f"batch file {path}: data has shape {data.shape}, expected (N, {n_pixels})"
        )
    if data.dtype != np.uint8:
        raise CifarlabError(f"batch file {path}: data has dtype {data.dtype}, expected uint8")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise CifarlabError(f"batch file {path}: {labels.shape} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise CifarlabError(f"batch file {path}: label {bad} is outside 0..{num_classes - 1}")
    return data, labels.astype(np.int64)


def _read_split(
    folder: Path, files: tuple[str, ...], what: str, label_key: str, num_classes: int
) -> Split:
    parts = [_read_batch(folder / name, what, label_key, num_classes) for name in files]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, *IMAGE_SHAPE)
    labels = np.concatenate([p[1] for p in parts])
    return Split(torch.from_numpy(data), torch.from_numpy(labels))


def _names(meta_path: Path, key: str, count: int, what: str) -> list[str]:
    names = _unpickle(meta_path, what).get(key)
    if not isinstance(names, list) or len(names) != count:
        raise CifarlabError(f"{meta_path}: expected {count} {key}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _holds(folder: Path, names: tuple[str, ...]) -> bool:
    return folder.is_dir() and any((folder / n).exists() for n in names)


def locate_cifar10(path: Path) -> Path | None:
    """PATH may be the cifar-10-batches-py folder itself or its parent."""
    names = (CIFAR10_META, *CIFAR10_TRAIN, *CIFAR10_TEST)
    for folder in (path / CIFAR10_FOLDER, path):
        if _holds(folder, names):
            return folder
    return None


def read_cifar10(folder: Path, options: ReadOptions | None = None) -> Dataset:
    """Read the batch pickles of one CIFAR-10 folder."""
    folder = locate_cifar10(Path(folder)) or Path(folder)
    what = "CIFAR-10"
    return Dataset(
        name="cifar10",
        train=_read_split(folder, CIFAR10_TRAIN, what, "labels", 10),
        test=_read_split(folder, CIFAR10_TEST, what, "labels", 10),
        classes=_names(folder / CIFAR10_META, "label_names", 10, what),
        root=folder,
    )


def locate_cifar100(path: Path) -> Path | None:
    """PATH may be the cifar-100-python folder itself or its parent."""
    for folder in (path / CIFAR100_FOLDER, path):
        if _holds(folder, ("train", "test", "meta")):
            return folder
    return None


def read_cifar100(folder: Path, options: ReadOptions) -> Dataset:
    """Read CIFAR-100: its 100 fine labels, or with labels="coarse" the 20 superclasses."""
    if options.labels not in ("fine", "coarse"):
        raise CifarlabError(f"--labels must be fine or coarse, not {options.labels!r}")
    key = options.labels
    count = 100 if key == "fine" else 20
    what = "CIFAR-100"
    return Dataset(
        name="cifar100",
        train=_read_split(folder, ("train",), what, f"{key}_labels", count),
        test=_read_split(folder, ("test",), what, f"{key}_labels", count),
        classes=_names(folder / "meta", f"{key}_label_names", count, what),
        root=folder,
        notes={"labels": key},
    )


def download_cifar10(cache: Path) -> None:
    CIFAR10(root=str(cache), train=True, download=True)


def download_cifar100(cache: Path) -> None:
    CIFAR100(root=str(cache), train=True, download=True)
