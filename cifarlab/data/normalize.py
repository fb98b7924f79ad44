"""Channel statistics of uint8 images and the one normalization every path uses.

Training, evaluation, prediction, export and the dataset analysis all turn uint8 images
into model input with `Normalize`: x / 255, minus the channel mean, over the channel std.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def channel_histograms(images: torch.Tensor) -> torch.Tensor:
    """(C, 256) counts of each uint8 value per channel: one vectorized pass over the data."""
    n_channels = images.shape[1]
    per_channel = images.transpose(0, 1).reshape(n_channels, -1)
    return torch.stack([torch.bincount(per_channel[c], minlength=256) for c in range(n_channels)])


def moments(hist: torch.Tensor, values: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std of `values` (C, 256) weighted by `hist` (C, 256)."""
    w = hist.to(torch.float64)
    v = values.to(torch.float64)
    total = w.sum(dim=1, keepdim=True)
    mean = (w * v).sum(dim=1, keepdim=True) / total
    var = (w * (v - mean) ** 2).sum(dim=1) / total[:, 0]
    return mean[:, 0].tolist(), var.sqrt().tolist()


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1], as torchvision's ToTensor() does."""
    return images.to(torch.float32) / 255.0


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std of uint8 images on the [0, 1] scale, exact
    (from one histogram per channel: uint8 pixels take only 256 values)."""
    hist = channel_histograms(images)
    return moments(hist, to_unit(torch.arange(256)).expand(hist.shape[0], 256))


class Normalize(nn.Module):
    """uint8 images (N, C, H, W) in 0..255 -> float32 (x / 255 - mean) / std per channel,
    channels_last. `mean` and `std` are on the [0, 1] scale (channel_stats)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean_values = [float(m) for m in mean]  # as given (float64), for checkpoints
        self.std_values = [float(s) for s in std]
        self.register_buffer("mean", torch.tensor(self.mean_values).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(self.std_values).view(1, -1, 1, 1))

    @classmethod
    def fit(cls, images: torch.Tensor) -> Normalize:
        """The normalization of a training set: its own channel mean and std."""
        return cls(*channel_stats(images))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.to(torch.float32) / 255.0 - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last)

    def extra_repr(self) -> str:
        return f"mean={self.mean_values}, std={self.std_values}"
