"""The catalog of datasets: each reader by name, where its files are found, loading and
caching.

    data = load_dataset("cifar100", "~/data", labels="coarse")

Files come from --data-dir, else (CIFAR-10 only) $CIFARLAB_DATA, else the cache
(~/.cache/cifarlab), where torchvision downloads them when it can. A folder the user named
is never replaced by a download.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.data import cifar, idx, imagefolder, shift
from cifarlab.data.dataset import Dataset, ReadOptions, default_cache_dir
from cifarlab.errors import CifarlabError
from cifarlab.registry import Registry

ENV_VAR = "CIFARLAB_DATA"


@dataclass
class DatasetSpec:
    """A dataset reader: how to find its files under a folder (`locate` gives the folder
    holding them, or None), read them, and download them (None: no download).
    evaluation_only: a test set to evaluate trained models on (its train split is empty);
    `cifarlab train` refuses it."""

    name: str
    title: str
    description: str
    expected: str  # the layout, for messages: what was expected where
    locate: Callable[[Path], Path | None]
    read: Callable[[Path, ReadOptions], Dataset]
    download: Callable[[Path], None] | None = None
    evaluation_only: bool = False


DATASETS: Registry[DatasetSpec] = Registry("dataset", hint=" (`cifarlab datasets` lists them)")


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name, spec)


# the built-in readers
register_dataset(
    DatasetSpec(
        "cifar10",
        "CIFAR-10",
        "60,000 32x32 colour images in 10 classes (50,000 train, 10,000 test)",
        f"{cifar.CIFAR10_FOLDER}/",
        cifar.locate_cifar10,
        cifar.read_cifar10,
        cifar.download_cifar10,
    )
)
register_dataset(
    DatasetSpec(
        "cifar100",
        "CIFAR-100",
        "60,000 32x32 colour images in 100 classes, or 20 superclasses with --labels coarse",
        f"{cifar.CIFAR100_FOLDER}/ (train, test, meta)",
        cifar.locate_cifar100,
        cifar.read_cifar100,
        cifar.download_cifar100,
    )
)
register_dataset(
    DatasetSpec(
        "mnist",
        "MNIST",
        "70,000 28x28 grey images of handwritten digits, 10 classes",
        idx.EXPECTED,
        idx.locate_mnist,
        idx.read_mnist,
        idx.download_mnist,
    )
)
register_dataset(
    DatasetSpec(
        "fashion-mnist",
        "Fashion-MNIST",
        "70,000 28x28 grey images of clothing, 10 classes",
        idx.EXPECTED,
        idx.locate_fashion,
        idx.read_fashion,
        idx.download_fashion,
    )
)
register_dataset(
    DatasetSpec(
        "imagefolder",
        "ImageFolder",
        "your images: train/<class>/* and test/<class>/* in any Pillow format, resized to "
        "--image-size (without test/, --test-fraction of each class is the test set)",
        imagefolder.EXPECTED,
        imagefolder.locate,
        imagefolder.read,
    )
)

register_dataset(
    DatasetSpec(
        "cifar10-c",
        "CIFAR-10-C",
        "CIFAR-10's test set under 15 corruptions x 5 severities (2019); evaluation only",
        shift.CIFAR10C_EXPECTED,
        shift.locate_cifar10c,
        shift.read_cifar10c_dataset,
        evaluation_only=True,
    )
)
register_dataset(
    DatasetSpec(
        "cifar10.1",
        "CIFAR-10.1",
        "2,000 new CIFAR-10 test images (2018; v4: 2,021 images); evaluation only",
        shift.CIFAR101_EXPECTED,
        shift.locate_cifar101,
        shift.read_cifar101_dataset,
        evaluation_only=True,
    )
)


def dataset_spec(name: str) -> DatasetSpec:
    return DATASETS.find(name)


def resolve_data_dir(
    data_dir: str | os.PathLike | None = None, dataset: str = "cifar10"
) -> tuple[Path, bool]:
    """(folder, explicit): --data-dir, else $CIFARLAB_DATA (CIFAR-10 only), else the cache;
    explicit says whether the user named it."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), True
    if dataset == "cifar10" and os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), True
    return default_cache_dir(), False


def how_to_point(spec: DatasetSpec) -> str:
    """How to name the data folder, for the command line and for Python alike."""
    where = "--data-dir PATH (in Python: load_dataset(..., data_dir=PATH))"
    if spec.name == "cifar10":
        return f"pass {where} or set {ENV_VAR} to a folder holding {spec.expected}"
    return f"pass {where}, a folder holding {spec.expected}"


def load_dataset(
    name: str = "cifar10",
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool = True,
    **options: Any,
) -> Dataset:
    """Read dataset `name` into memory from --data-dir, else $CIFARLAB_DATA (CIFAR-10),
    else the cache, downloading there where torchvision can. options: ReadOptions."""
    spec = dataset_spec(name)
    opts = ReadOptions(**options)
    path, explicit = resolve_data_dir(data_dir, name)
    if explicit:
        named = f"{path} (from ${ENV_VAR})" if data_dir is None else str(path)
        if not path.exists():
            raise CifarlabError(f"data folder {named} does not exist; {how_to_point(spec)}")
        folder = spec.locate(path)
        if folder is None:
            raise CifarlabError(
                f"no {spec.title} files in {named} (expected {spec.expected} there); "
                f"{how_to_point(spec)}"
            )
        return spec.read(folder, opts)
    if spec.download is None:
        raise CifarlabError(
            f"--dataset {name} needs --data-dir PATH, a folder holding {spec.expected}"
        )
    folder = spec.locate(path) if path.is_dir() else None
    if folder is None:
        if not download:
            raise CifarlabError(f"{spec.title} is not in the cache {path}; {how_to_point(spec)}")
        download_with_torchvision(spec, path)
        folder = spec.locate(path)
        if folder is None:
            raise CifarlabError(f"the download left no {spec.title} files in {path}")
    return spec.read(folder, opts)


class Datasets:
    """Datasets loaded once each, keyed by their load_dataset arguments: the runs of a sweep
    or study share one copy in memory (a sweep over datasets loads each one once)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Dataset] = {}

    @staticmethod
    def _key(args: dict[str, Any]) -> str:
        return repr(sorted(args.items()))

    def get(self, args: dict[str, Any]) -> Dataset:
        """The dataset of load_dataset(**args), read on first use."""
        key = self._key(args)
        if key not in self._loaded:
            self._loaded[key] = load_dataset(**args)
        return self._loaded[key]

    def add(self, args: dict[str, Any], data: Dataset) -> Datasets:
        """Use `data` (already in memory) for these arguments."""
        self._loaded[self._key(args)] = data
        return self


def download_with_torchvision(spec: DatasetSpec, cache: Path) -> None:
    """Download (and verify) a dataset with torchvision into `cache`; one clear line if
    that fails (offline, say), and what the failed download made is removed again."""
    print(f"{spec.title} not found; downloading it into {cache} ...", flush=True)
    before = _existing(cache)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        spec.download(cache)
    except Exception as e:
        _remove_new(cache, before)
        raise CifarlabError(
            f"could not download {spec.title} into {cache} ({type(e).__name__}: "
            f"{one_line(str(e))}); if you are offline, {how_to_point(spec)}"
        ) from None


def one_line(message: str, width: int = 200) -> str:
    """A multi-line message (torchvision's: a first line, then the error of each mirror
    tried) as one line: its first line and its last, cut at a word if long."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "no message"
    text = lines[0] if len(lines) == 1 else f"{lines[0].rstrip(':')}: {lines[-1]}"
    return textwrap.shorten(text, width, placeholder=" ...")


def _existing(cache: Path) -> Path | set[Path]:
    """What is there before a download: every path under `cache`; or, where `cache` does
    not exist yet, the first folder of its path that does not (created by the download)."""
    if cache.exists():
        return set(cache.rglob("*")) if cache.is_dir() else set()
    top = cache
    while not top.parent.exists() and top.parent != top.parent.parent:
        top = top.parent
    return top


def _remove_new(cache: Path, before: Path | set[Path]) -> None:
    """Remove what a failed download made: the folders it created, or, in a cache that was
    there, what appeared in it (files, then folders, deepest first); the rest stays."""
    if isinstance(before, Path):
        shutil.rmtree(before, ignore_errors=True)
        return
    new = set(cache.rglob("*")) - before if cache.is_dir() else set()
    for p in sorted(new, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
