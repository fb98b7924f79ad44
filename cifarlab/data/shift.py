"""The official distribution-shift test sets of CIFAR-10, read from the user's folder (for
evaluation only; nothing is downloaded):

    CIFAR-10-C/   labels.npy and NAME.npy per corruption (Hendrycks & Dietterich 2019):
                  50,000 x 32 x 32 x 3 uint8 each, severities 1..5 in consecutive blocks of
                  10,000, each block the 10,000 CIFAR-10 test images in order
    CIFAR-10.1/   cifar10.1_v6_data.npy (2,000 x 32 x 32 x 3 uint8) and
                  cifar10.1_v6_labels.npy (Recht et al. 2018); the older v4 files (2,021)

The CIFAR-10-C arrays stay on disk (memory-mapped); cifar10c_block takes one severity.
What is wrong with a file is named, in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cifarlab.data.dataset import Dataset, ReadOptions, Split
from cifarlab.errors import CifarlabError

# CIFAR-10's classes, in label order, as its batches.meta names them
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
CIFAR10C_FOLDER = "CIFAR-10-C"
CIFAR10C_EXPECTED = (
    f"{CIFAR10C_FOLDER}/ (labels.npy and one NAME.npy per corruption, "
    "50,000 x 32 x 32 x 3 uint8 each)"
)
CIFAR101_FOLDERS = ("", "datasets", "CIFAR-10.1", "CIFAR-10.1/datasets")
CIFAR101_EXPECTED = "cifar10.1_v6_data.npy and cifar10.1_v6_labels.npy (or the v4 files)"
CIFAR101_SIZES = {"v6": 2000, "v4": 2021}
SEVERITIES = 5
IMAGE = (32, 32, 3)


def _load(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CifarlabError(
            f"{path} is not a readable .npy array ({type(e).__name__}); "
            "replace it with a fresh copy"
        ) from None


def _labels(path: Path, n: int | None = None) -> np.ndarray:
    """Integer class labels 0..9, one per image: n of them where n is given."""
    labels = _load(path)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise CifarlabError(
            f"{path} holds {labels.dtype} {labels.shape}; expected one integer label per image"
        )
    if n is not None and len(labels) != n:
        raise CifarlabError(f"{path} holds {len(labels):,} labels for {n:,} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        bad = labels[(labels < 0) | (labels > 9)][0]
        raise CifarlabError(f"{path}: label {bad} is outside 0..9 (CIFAR-10's classes)")
    return labels.astype(np.int64)


def cifar10c_names(folder: Path) -> list[str]:
    """The corruptions whose NAME.npy is in a CIFAR-10-C folder, sorted."""
    return sorted(p.stem for p in Path(folder).glob("*.npy") if p.stem != "labels")


def read_cifar10c(
    folder: Path, names: list[str] | None = None
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The labels (int64, 5 x 10,000 officially: each severity's block) and, for each
    corruption of `names` (default: every NAME.npy present), its array memory-mapped
    (5 * k x 32 x 32 x 3 uint8 for 5 * k labels)."""
    folder = Path(folder)
    if not (folder / "labels.npy").is_file():
        raise CifarlabError(
            f"no labels.npy in {folder}; expected the CIFAR-10-C folder: {CIFAR10C_EXPECTED}"
        )
    labels = _labels(folder / "labels.npy")
    if len(labels) == 0 or len(labels) % SEVERITIES:
        raise CifarlabError(
            f"{folder / 'labels.npy'} holds {len(labels):,} labels; expected 5 severities of "
            "the same images (the official file: 50,000)"
        )
    present = cifar10c_names(folder)
    names = present if names is None else list(names)
    missing = [n for n in names if n not in present]
    if missing:
        raise CifarlabError(
            f"no {missing[0]}.npy in {folder}; there: {', '.join(present) or 'no corruption files'}"
        )
    arrays = {}
    expected = (len(labels), *IMAGE)
    for name in names:
        path = folder / f"{name}.npy"
        array = _load(path, mmap=True)
        if array.shape != expected or array.dtype != np.uint8:
            raise CifarlabError(
                f"{path} is {array.dtype} {array.shape}; expected uint8 {expected}, one image "
                "per label of labels.npy (the official files: (50000, 32, 32, 3) uint8)"
            )
        arrays[name] = array
    return torch.from_numpy(labels), arrays


def cifar10c_block(
    array: np.ndarray, labels: torch.Tensor, severity: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (uint8, k x 3 x 32 x 32) and labels of one severity (1..5) of a
    CIFAR-10-C array of 5 * k images: its block severity - 1."""
    if severity not in range(1, SEVERITIES + 1):
        raise CifarlabError(f"severity must be one of 1..5, not {severity!r}")
    if len(array) != len(labels) or len(labels) % SEVERITIES:
        raise CifarlabError(
            f"a CIFAR-10-C array of {len(array):,} images for {len(labels):,} labels; "
            "expected 5 blocks of the same length (read them with read_cifar10c)"
        )
    k = len(labels) // SEVERITIES
    block = slice((severity - 1) * k, severity * k)
    images = torch.from_numpy(np.array(array[block])).permute(0, 3, 1, 2)  # a copy in memory
    return images.contiguous(), labels[block].clone()


def _empty_split() -> Split:
    return Split(torch.empty((0, 3, 32, 32), dtype=torch.uint8), torch.empty(0, dtype=torch.long))


def locate_cifar10c(path: Path) -> Path | None:
    """PATH may be the CIFAR-10-C folder itself or its parent: the one holding .npy files."""
    for folder in (path / CIFAR10C_FOLDER, path):
        if folder.is_dir() and any(folder.glob("*.npy")):
            return folder
    return None


def read_cifar10c_dataset(folder: Path, options: ReadOptions | None = None) -> Dataset:
    """CIFAR-10-C as a catalog Dataset: its files checked, both splits empty, the folder in
    notes["cifar10c_folder"] (evaluation reads it with read_cifar10c)."""
    labels, arrays = read_cifar10c(folder)
    return Dataset(
        name="cifar10-c",
        train=_empty_split(),
        test=_empty_split(),
        classes=list(CIFAR10_CLASSES),
        root=Path(folder),
        notes={
            "cifar10c_folder": str(folder),
            "cifar10c_corruptions": list(arrays),
            "cifar10c_images_per_severity": len(labels) // SEVERITIES,
        },
    )


def _cifar101_files(folder: Path, version: str) -> tuple[Path, Path]:
    return folder / f"cifar10.1_{version}_data.npy", folder / f"cifar10.1_{version}_labels.npy"


def _versions(folder: Path) -> list[str]:
    return [v for v in CIFAR101_SIZES if all(p.is_file() for p in _cifar101_files(folder, v))]


def locate_cifar101(path: Path) -> Path | None:
    """PATH may be the folder of the .npy files, or hold them in datasets/, CIFAR-10.1/ or
    CIFAR-10.1/datasets/ (the layout of the CIFAR-10.1 repository)."""
    for sub in CIFAR101_FOLDERS:
        folder = path / sub if sub else path
        if folder.is_dir() and any(folder.glob("cifar10.1_*.npy")):
            return folder
    return None


def read_cifar101(folder: Path, version: str | None = "v6") -> Dataset:
    """CIFAR-10.1 (Recht et al. 2018) as a Dataset whose test split it is (N x 3 x 32 x 32
    uint8) and whose train split is empty: version "v6" (2,000 images) or "v4" (2,021);
    None: v6 where its files are there, else v4."""
    folder = Path(folder)
    found = _versions(folder)
    if version is None:
        version = found[0] if found else "v6"
    if version not in CIFAR101_SIZES:
        raise CifarlabError(f"CIFAR-10.1 version must be v6 or v4, not {version!r}")
    data_path, labels_path = _cifar101_files(folder, version)
    if version not in found:
        there = ", ".join(found) or "none"
        raise CifarlabError(
            f"no {data_path.name} and {labels_path.name} in {folder} (CIFAR-10.1 versions "
            f"there: {there}); expected {CIFAR101_EXPECTED}"
        )
    data = _load(data_path)
    if data.ndim != 4 or data.shape[1:] != IMAGE or data.dtype != np.uint8:
        raise CifarlabError(
            f"{data_path} is {data.dtype} {data.shape}; expected uint8 (N, 32, 32, 3) "
            f"(the official {version} file: N = {CIFAR101_SIZES[version]:,})"
        )
    labels = _labels(labels_path, len(data))
    images = torch.from_numpy(np.ascontiguousarray(data.transpose(0, 3, 1, 2)))
    return Dataset(
        name="cifar10.1",
        train=_empty_split(),
        test=Split(images, torch.from_numpy(labels)),
        classes=list(CIFAR10_CLASSES),
        root=folder,
        notes={"test_set": f"the CIFAR-10.1 {version} test set", "cifar10.1_version": version},
    )


def read_cifar101_dataset(folder: Path, options: ReadOptions | None = None) -> Dataset:
    """The catalog's reader of --dataset cifar10.1: v6, or v4 where only v4 is there."""
    return read_cifar101(folder, version=None)
