"""Datasets in memory: uint8 images (N, C, H, W) and int64 labels for training and test,
with the class names. Everything dataset-dependent (classes, channels, image size,
statistics) comes from a Dataset, never from a constant. The readers (cifar, idx,
imagefolder) make them; cifarlab.data.catalog names them and finds their files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class Split:
    """A set of images (uint8, N x C x H x W) and their labels (int64, N). index: each
    image's position in the split of the dataset it was taken from (None: 0..N-1), kept
    through subsets, so that per-example results can be matched across runs."""

    images: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def positions(self) -> torch.Tensor:
        """Each image's position in the dataset's split (int64, N)."""
        return torch.arange(len(self)) if self.index is None else self.index

    def subset(self, index: torch.Tensor) -> Split:
        return Split(self.images[index], self.labels[index], self.positions[index])

    def first(self, n: int | None) -> Split:
        """The first n images (all of them for None)."""
        return self if n is None else self.subset(torch.arange(min(n, len(self))))

    def shard(self, rank: int, world_size: int) -> Split:
        """Process `rank`'s contiguous part of the split (parts differ by one at most)."""
        if world_size == 1:
            return self
        n = len(self)
        return self.subset(torch.arange(n * rank // world_size, n * (rank + 1) // world_size))


@dataclass
class Dataset:
    """Training and test images with their class names; `root` is where they were read,
    `notes` what the reader has to say (skipped files, cache use, test_set: what its test
    set is where that is not a fixed test set of the dataset)."""

    name: str
    train: Split
    test: Split
    classes: list[str]
    root: Path
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width)."""
        c, h, w = self.train.images.shape[1:]
        return int(c), int(h), int(w)

    def model_args(self) -> dict[str, int]:
        """What a model builder needs to fit this data."""
        c, h, _ = self.image_shape
        return {"num_classes": len(self.classes), "in_channels": c, "image_size": h}


@dataclass
class ReadOptions:
    """Options some readers take: CIFAR-100's label set, ImageFolder's image size, test
    fraction (without test/) and whether unreadable images are skipped."""

    labels: str = "fine"
    image_size: int = 32
    test_fraction: float = 0.2
    skip_bad_images: bool = False


def default_cache_dir() -> Path:
    """Where downloads go: $XDG_CACHE_HOME/cifarlab, else ~/.cache/cifarlab."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cifarlab"
