"""Your own images: a folder with train/<class>/* and test/<class>/* (any Pillow format).

Images are decoded with a pool of threads, converted to RGB and resized to
--image-size (data/images.py's rule), and held in memory as uint8 like CIFAR. Without a
test/ folder, a stratified share of each class (--test-fraction, seed 0) is set aside as
the test set. The decoded arrays are cached in one file next to the data, keyed by the
file list, sizes and modification times, so the next run starts in seconds; where that
folder is read-only, the cache goes to ~/.cache/cifarlab/imagefolder/.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from cifarlab.data.dataset import Dataset, ReadOptions, Split, default_cache_dir
from cifarlab.data.images import image_suffixes, load_image, walk_files
from cifarlab.errors import CifarlabError
from cifarlab.files import atomic_write_bytes

EXPECTED = "train/<class>/<images> (and optionally test/<class>/<images>)"
CACHE_VERSION = 1
TEST_SPLIT_SEED = 0


def locate(path: Path) -> Path | None:
    return path if (path / "train").is_dir() else None


def _classes(folder: Path) -> list[str]:
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def list_files(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """The class names and, per split present (train, test), its (file, class index)
    pairs. Every class folder must hold images; test/ must have the classes of train/."""
    classes = _classes(root / "train")
    if not classes:
        raise CifarlabError(f"{root / 'train'} holds no class folders; expected {EXPECTED}")
    suffixes = image_suffixes()
    splits = {}
    for split in ("train", "test"):
        if not (root / split).is_dir():
            continue
        found = _classes(root / split)
        if found != classes:
            odd = sorted(set(found) ^ set(classes))
            raise CifarlabError(
                f"{root / split} and {root / 'train'} differ in their classes ({', '.join(odd)})"
            )
        pairs = []
        for k, name in enumerate(classes):
            files = walk_files(root / split / name, suffixes)
            if not files:
                raise CifarlabError(
                    f"class folder {root / split / name} holds no images "
                    f"(files ending in .png, .jpg, .jpeg, .bmp, .webp, ...)"
                )
            pairs += [(f, k) for f in files]
        splits[split] = pairs
    return classes, splits


def cache_key(root: Path, splits: dict[str, list[tuple[Path, int]]], options: ReadOptions) -> str:
    """A hash of every file's path, size and modification time, and the options that
    change the arrays."""
    h = hashlib.sha256(
        f"v{CACHE_VERSION} {options.image_size} {options.test_fraction} "
        f"{options.skip_bad_images}".encode()
    )
    for split, pairs in splits.items():
        for path, label in pairs:
            st = path.stat()
            h.update(
                f"{split}|{path.relative_to(root)}|{label}|{st.st_size}|{st.st_mtime_ns}\n".encode()
            )
    return h.hexdigest()


def decode(pairs: list[tuple[Path, int]], size: int) -> tuple[Split, list[str]]:
    """Decode files with a thread pool: the images that could be read and their labels,
    and a message per file that could not."""

    def one(pair: tuple[Path, int]) -> np.ndarray | str:
        try:
            return load_image(pair[0], size, 3)
        except CifarlabError as e:
            return str(e)

    with ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
        out = list(pool.map(one, pairs, chunksize=64))
    ok = [i for i, a in enumerate(out) if not isinstance(a, str)]
    images = np.stack([out[i] for i in ok]) if ok else np.zeros((0, 3, size, size), np.uint8)
    labels = np.array([pairs[i][1] for i in ok], dtype=np.int64)
    return Split(torch.from_numpy(images), torch.from_numpy(labels)), [
        a for a in out if isinstance(a, str)
    ]


def stratified_test_split(train: Split, fraction: float, num_classes: int) -> tuple[Split, Split]:
    """(train, test): of each class, round(fraction * its images) for test (at least one
    where a class has two or more), chosen with a fixed seed."""
    if not 0 < fraction < 1:
        raise CifarlabError(f"--test-fraction must be between 0 and 1, not {fraction}")
    g = torch.Generator().manual_seed(TEST_SPLIT_SEED)
    test_idx = []
    for k in range(num_classes):
        idx = (train.labels == k).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        n = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        test_idx.append(idx[:n])
    test = torch.cat(test_idx).sort().values
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[test] = False
    return train.subset(keep.nonzero().flatten()), train.subset(test)


def _cache_path(root: Path, size: int) -> Path:
    name = f".cifarlab-imagefolder-{size}px.pt"
    if os.access(root, os.W_OK):
        return root / name
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return default_cache_dir() / "imagefolder" / f"{digest}-{size}px.pt"


def _load_cache(path: Path, key: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, weights_only=True)
    except Exception:  # an unreadable cache is rebuilt
        return None
    return cached if isinstance(cached, dict) and cached.get("key") == key else None


def _save_cache(path: Path, content: dict) -> None:
    buf = io.BytesIO()
    torch.save(content, buf)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        print(f"note: could not write the image cache {path} ({e.strerror})", file=sys.stderr)


def read(root: Path, options: ReadOptions) -> Dataset:
    """Read (or take from the cache) an ImageFolder dataset."""
    classes, files = list_files(root)
    key = cache_key(root, files, options)
    path = _cache_path(root, options.image_size)
    cached = _load_cache(path, key)
    if cached is None:
        cached = _decode_all(files, classes, options)
        cached["key"] = key
        _save_cache(path, cached)
    train = Split(cached["train_images"], cached["train_labels"])
    if "test_images" in cached:
        test = Split(cached["test_images"], cached["test_labels"])
        test_set = f"the images in {root / 'test'}"
    else:
        train, test = stratified_test_split(train, options.test_fraction, len(classes))
        fraction = options.test_fraction
        test_set = (
            f"the {100 * fraction:g}% of each class of {root / 'train'} held out "
            f"(--test-fraction {fraction:g})"
        )
    notes = {"skipped_images": cached["skipped"], "cache": str(path), "test_set": test_set}
    return Dataset("imagefolder", train, test, classes, root, notes)


def _decode_all(files: dict, classes: list[str], options: ReadOptions) -> dict:
    content: dict = {"classes": classes}
    skipped = []
    for split, pairs in files.items():
        images, errors = decode(pairs, options.image_size)
        skipped += errors
        content[f"{split}_images"], content[f"{split}_labels"] = images.images, images.labels
    if skipped and not options.skip_bad_images:
        more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        raise CifarlabError(
            f"{skipped[0]}{more}; fix or remove the unreadable image(s), "
            "or pass --skip-bad-images to leave them out"
        )
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", file=sys.stderr)
    content["skipped"] = len(skipped)
    return content
