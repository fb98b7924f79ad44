"""Splits of a dataset: train, validation and test, as a run uses them.

The study splits the *test* set half/half into validation and test with a fixed seed
(val_from="test", the default); val_from="train" carves the validation set from the
training set instead, and val_from="none" trains on the whole training set and tests on
the whole test set. Limits take the first N images of a split (quick runs). The
permutations come from torch's CPU generator, so the same seed gives the same split on
every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cifarlab.data.dataset import Dataset, Split
from cifarlab.errors import CifarlabError

DEFAULT_TRAIN_VAL_SIZE = 5000  # validation images carved from training (val_from="train")


@dataclass
class Splits:
    """What one run trains, validates and tests on, and the names of the classes."""

    train: Split
    val: Split
    test: Split
    classes: list[str]
    test_set: str = ""  # what the test split is, in words (summary.json's test_set)


def split_indices(n: int, first: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random partition of range(n) into `first` and n - first indices."""
    if not 0 < first < n:
        raise CifarlabError(f"cannot split {n} images into {first} and {n - first}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    return perm[:first], perm[first:]


def _check_val_size(size: int, n: int, split: str) -> None:
    if not 0 < size < n:
        raise CifarlabError(
            f"--val-size {size}: the validation images come from the {split} set's {n:,}, "
            f"which must keep some; give --val-size from 1 to {n - 1:,}"
        )


def make_splits(
    data: Dataset,
    val_from: str = "test",
    val_size: int | None = None,
    seed: int = 0,
    limit: int | None = None,
    eval_limit: int | None = None,
) -> Splits:
    """Train/validation/test of a run (TrainConfig.split_args() gives the arguments).

    val_from="test": the test set is split into validation and test (half/half unless
    val_size says otherwise); "train": val_size images (default 5000) carved from
    training; "none": no validation set. limit: the first N training images;
    eval_limit: at most N validation and N test images.
    """
    if val_from == "test":
        size = len(data.test) // 2 if val_size is None else val_size
        _check_val_size(size, len(data.test), "test")
        val_idx, test_idx = split_indices(len(data.test), size, seed)
        train, val, test = data.train, data.test.subset(val_idx), data.test.subset(test_idx)
    elif val_from == "train":
        size = DEFAULT_TRAIN_VAL_SIZE if val_size is None else val_size
        _check_val_size(size, len(data.train), "training")
        val_idx, train_idx = split_indices(len(data.train), size, seed)
        train, val, test = data.train.subset(train_idx), data.train.subset(val_idx), data.test
    elif val_from == "none":
        train, val, test = data.train, data.test.first(0), data.test
    else:
        raise CifarlabError(f"--val-from must be one of test, train, none, not {val_from!r}")
    cut = test.first(eval_limit)
    described = describe_test_set(data, val_from, val_size, len(cut), len(cut) < len(test))
    return Splits(train.first(limit), val.first(eval_limit), cut, list(data.classes), described)


def describe_test_set(data: Dataset, val_from: str, val_size: int | None, n: int, cut: bool) -> str:
    """The test split in words: which images of which set (a reader may say what its test
    set is in data.notes["test_set"]; else it is the dataset's fixed test set), whether
    validation took half of it, and whether --eval-limit cut it."""
    standard = "test_set" not in data.notes
    pool = f"the {data.name} test set" if standard else data.notes["test_set"]
    if val_from != "test":
        if cut:
            return f"{n:,} images (the first {n:,} of {pool})"
        if standard:
            return f"the whole {data.name} test set ({n:,} images)"
        return f"{n:,} images ({pool})"
    if val_size is not None:
        part = f"{pool} less its {val_size:,} validation images"
    else:
        part = "the study's test half" if standard else f"the test half of {pool}"
    if cut:
        return f"{n:,} images (of {part})"
    other = "; the other half is validation" if val_size is None else ""
    return f"{n:,} images ({part}{other})"
