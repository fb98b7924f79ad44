"""Regularizers of a training batch on the device, after its augmentation (DeviceLoader):
random erasing of each image (--random-erasing), then MixUp or CutMix of the whole batch
(--mixup, --cutmix; with both, one of the two at random per batch, as torchvision's
references do). All three are torchvision's (transforms.v2).

torchvision draws from torch's global CPU generator. Here every draw comes from a private
generator state instead, seeded from the run's seed (and the rank) and swapped in around
the calls: the draws of dropout and of the data generator are not moved, and the state is
stored in checkpoints (Trainer.state_dict), so a resumed run draws what the uninterrupted
one drew. With all three off nothing is drawn and a batch passes untouched.

MixUp and CutMix turn the labels into class probabilities (the two images' labels weighted
lam and 1 - lam); the loss is the cross-entropy against them (label smoothing still
applied on top), and a step's number of correct images is the mixed label's weight on the
predicted class (`count_correct`): lam-weighted accuracy against both labels, within [0, 1].
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torchvision.transforms import v2

from cifarlab.config.options import TrainConfig

SEED_OFFSET = 0x6D6978  # the private generator's seed is the run's plus this (and the rank's)


def private_seed(seed: int, rank: int) -> int:
    """The seed of a rank's private generator: distinct from the run's own seed (weights,
    dropout) and from every other rank's."""
    return (seed + SEED_OFFSET + 1_000_003 * rank) % 2**63


class BatchRegularizer:
    """Random erasing, MixUp and CutMix of a run's training batches (see the module)."""

    def __init__(self, cfg: TrainConfig, num_classes: int, rank: int = 0) -> None:
        self.erase = v2.RandomErasing(p=cfg.random_erasing, inplace=True)
        mixers = [
            kind(alpha=alpha, num_classes=num_classes)
            for kind, alpha in ((v2.MixUp, cfg.mixup), (v2.CutMix, cfg.cutmix))
            if alpha > 0
        ]
        self.mix: Any = v2.RandomChoice(mixers) if len(mixers) > 1 else next(iter(mixers), None)
        self.erasing = cfg.random_erasing > 0
        self.enabled = self.erasing or self.mix is not None
        self.state = torch.Generator().manual_seed(private_seed(cfg.seed, rank)).get_state()

    @contextlib.contextmanager
    def _drawing(self) -> Iterator[None]:
        """torch's global CPU generator set to the private state for the block, then back."""
        outer = torch.get_rng_state()
        torch.set_rng_state(self.state)
        try:
            yield
        finally:
            self.state = torch.get_rng_state()
            torch.set_rng_state(outer)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch (erased in place) and its targets: class indices `y` as they were, or,
        with MixUp/CutMix, class probabilities (B x classes)."""
        if not self.enabled:
            return x, y
        with self._drawing():
            if self.erasing:
                for image in x:  # views: each erased in place, its own rectangle and coin
                    self.erase(image)
            if self.mix is not None:
                x, y = self.mix(x, y)
        return x, y


def count_correct(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The correct predictions among logits `out`: a count against class indices, the
    summed weight of the predicted class against class probabilities (mixed labels)."""
    pred = out.argmax(1)
    if target.ndim == 1:
        return (pred == target).sum()
    return target.gather(1, pred[:, None]).sum()
