"""The data side of cifarlab: datasets in memory, their splits, statistics and normalization.

data = load_dataset("cifar10", data_dir)            # uint8 images, int64 labels
splits = make_splits(data, **cfg.split_args())      # train / val / test of a run
normalize = Normalize.fit(splits.train.images)      # the training split's statistics
"""

from __future__ import annotations

import os

from cifarlab.data.catalog import (
    DATASETS,
    ENV_VAR,
    Datasets,
    DatasetSpec,
    dataset_spec,
    load_dataset,
    register_dataset,
    resolve_data_dir,
)
from cifarlab.data.dataset import Dataset, ReadOptions, Split, default_cache_dir
from cifarlab.data.normalize import Normalize, channel_histograms, channel_stats, moments, to_unit
from cifarlab.data.splits import Splits, make_splits, split_indices


def load_cifar10(data_dir: str | os.PathLike | None = None, download: bool = True) -> Dataset:
    """CIFAR-10 from --data-dir, else $CIFARLAB_DATA, else the cache (downloading there)."""
    return load_dataset("cifar10", data_dir, download=download)


__all__ = [
    "DATASETS",
    "ENV_VAR",
    "Dataset",
    "Datasets",
    "DatasetSpec",
    "Normalize",
    "ReadOptions",
    "Split",
    "Splits",
    "channel_histograms",
    "channel_stats",
    "dataset_spec",
    "default_cache_dir",
    "load_cifar10",
    "load_dataset",
    "make_splits",
    "moments",
    "register_dataset",
    "resolve_data_dir",
    "split_indices",
    "to_unit",
]
