"""CIFAR-10 in memory: find it (or download it), read the batch pickles, check them.

Images are uint8 tensors (N, 3, 32, 32), labels int64 (N,). Nothing is converted to
float here: normalization (cifarlab.data.Normalize) and augmentation happen per batch on
the training device.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cifarlab.data.splits import Split
from cifarlab.errors import CifarlabError

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
ENV_VAR = "CIFARLAB_DATA"
HOW_TO_POINT = f"pass --data-dir PATH or set {ENV_VAR} to a folder holding {FOLDER}/"


@dataclass
class Cifar10:
    """The training and test sets, the class names and the folder they were read from."""

    train: Split
    test: Split
    classes: list[str]
    root: Path


def default_cache_dir() -> Path:
    """Where downloads go: $XDG_CACHE_HOME/cifarlab, else ~/.cache/cifarlab."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifarlab"


def _batches_folder(path: Path) -> Path:
    """PATH may be the cifar-10-batches-py folder itself or its parent."""
    return path / FOLDER if (path / FOLDER).is_dir() else path


def _holds_cifar(folder: Path) -> bool:
    names = (META_FILE, *TRAIN_FILES, *TEST_FILES)
    return folder.is_dir() and any((folder / n).exists() for n in names)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise CifarlabError(f"missing batch file {path}; the CIFAR-10 copy is incomplete")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as e:  # truncated or not a pickle at all
        raise CifarlabError(
            f"batch file {path} is truncated or corrupt ({type(e).__name__}); "
            "replace it with a fresh copy of CIFAR-10"
        ) from None
    if not isinstance(obj, dict):
        raise CifarlabError(f"batch file {path} does not hold a CIFAR-10 batch (a dict)")
    # Keys are bytes with encoding="bytes"; accept str keys too (re-pickled copies).
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    if "data" not in d or "labels" not in d:
        raise CifarlabError(f"batch file {path} has no 'data'/'labels' entries")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"])
    n_pixels = int(np.prod(IMAGE_SHAPE))
    if data.ndim != 2 or data.shape[1] != n_pixels:
        raise CifarlabError(
            f"batch file {path}: data has shape {data.shape}, expected (N, {n_pixels})"
        )
    if data.dtype != np.uint8:
        raise CifarlabError(f"batch file {path}: data has dtype {data.dtype}, expected uint8")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise CifarlabError(f"batch file {path}: {labels.shape} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)][0]
        raise CifarlabError(f"batch file {path}: label {bad} is outside 0..{NUM_CLASSES - 1}")
    return data, labels.astype(np.int64)


def _read_split(folder: Path, files: tuple[str, ...]) -> Split:
    parts = [_read_batch(folder / name) for name in files]
    data = np.concatenate([p[0] for p in parts]).reshape(-1, *IMAGE_SHAPE)
    labels = np.concatenate([p[1] for p in parts])
    return Split(torch.from_numpy(data), torch.from_numpy(labels))


def _read_classes(folder: Path) -> list[str]:
    meta = _unpickle(folder / META_FILE)
    names = meta.get("label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise CifarlabError(f"{folder / META_FILE}: expected {NUM_CLASSES} label_names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def read_cifar10(folder: Path) -> Cifar10:
    """Read the batch pickles of one CIFAR-10 folder (no checksum: copies may differ)."""
    folder = _batches_folder(Path(folder))
    return Cifar10(
        train=_read_split(folder, TRAIN_FILES),
        test=_read_split(folder, TEST_FILES),
        classes=_read_classes(folder),
        root=folder,
    )


def _download(cache: Path) -> None:
    """Download and verify the official archive with torchvision into `cache`."""
    from torchvision.datasets import CIFAR10

    print(f"CIFAR-10 not found; downloading it into {cache} ...", flush=True)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        CIFAR10(root=str(cache), train=True, download=True)
    except Exception as e:
        raise CifarlabError(
            f"could not download CIFAR-10 into {cache} ({type(e).__name__}: {e}); "
            f"if you are offline, {HOW_TO_POINT}"
        ) from None


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """Return (folder, explicit): the folder to read and whether the user named it."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), True
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), True
    return default_cache_dir(), False


def load_cifar10(data_dir: str | os.PathLike | None = None, download: bool = True) -> Cifar10:
    """Load CIFAR-10 from --data-dir, else $CIFARLAB_DATA, else the cache (downloading there).

    A folder the user named must hold the data: it is never replaced by a download.
    """
    path, explicit = resolve_data_dir(data_dir)
    folder = _batches_folder(path)
    if explicit:
        if not path.exists():
            raise CifarlabError(f"data folder {path} does not exist; {HOW_TO_POINT}")
        if not _holds_cifar(folder):
            raise CifarlabError(
                f"no CIFAR-10 batch files in {path} (looked there and in {path / FOLDER}); "
                f"{HOW_TO_POINT}"
            )
        return read_cifar10(folder)
    if not _holds_cifar(folder):
        if not download:
            raise CifarlabError(f"CIFAR-10 is not in the cache {path}; {HOW_TO_POINT}")
        _download(path)
    return read_cifar10(folder)
