"""Leaving well-learned images out of an epoch (--prune-easy): InfoBatch's dynamic pruning.

Qin et al., "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data Pruning", ICLR
2024. Each training image's score is its loss the last time it was trained on. Before an
epoch, each image scoring below the mean is left out with probability R; the ones below the
mean that stay count 1 / (1 - R) in the loss, so the gradient's expectation over the draw is
the epoch's full one. The first epoch (no scores yet) and the epochs after --prune-until of
the run (by default 7/8: InfoBatch's annealing) train on every image.

Unlike InfoBatch's sampler, a pruned epoch here keeps its number of steps with smaller
batches: the schedule, lookahead and Muon's step count stay as they are, and the epoch
trains in about the share of the images it kept. Each of its steps then averages over fewer
images, so its gradient is the kept images' weighted mean loss times the share of the split
the epoch kept (`share`): its expectation is the whole batch's mean loss, as in an epoch on
every image, and not 1 / share times it (1.5-2x the step, with a ratio of 0.5-0.7).
"""

from __future__ import annotations

import torch


class EasyPruning:
    """The scores and loss weights of --prune-easy R over a split of `images` images, on
    `device`; epochs 2 to `last` are pruned (none with R = 0)."""

    def __init__(self, images: int, ratio: float, last: int, device: torch.device) -> None:
        self.ratio, self.last = ratio, last
        self.scores = torch.ones(images, device=device)  # equal: epoch 1 keeps every image
        self.weights = torch.ones(images, device=device)
        self.share = 1.0  # of the split the epoch trains on: a step's gradient is scaled by it

    @property
    def enabled(self) -> bool:
        return self.ratio > 0

    def plan(self, epoch: int, steps: int, generator: torch.Generator) -> torch.Tensor | None:
        """The images epoch `epoch` trains on (a bool mask over the split, on the CPU), and
        their loss weights set; None for an epoch on every image. The draw comes from
        `generator` (the run's), so a resumed run draws alike. An epoch that would keep
        fewer images than its `steps` keeps them all."""
        self.weights.fill_(1.0)
        self.share = 1.0
        if not self.enabled or not 2 <= epoch <= self.last:
            return None
        easy = (self.scores < self.scores.mean()).cpu()
        keep = ~(easy & (torch.rand(len(easy), generator=generator) < self.ratio))
        kept = int(keep.sum())
        if kept < steps:
            return None
        self.weights[(easy & keep).to(self.weights.device)] = 1 / (1 - self.ratio)
        self.share = kept / len(keep)
        return keep

    def loss(self, losses: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The weighted mean of per-image `losses` of the images `index`; records them as
        those images' scores."""
        self.scores[index] = losses.detach().float()
        return (losses * self.weights[index]).mean()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"scores": self.scores.cpu()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if "scores" in state:
            self.scores.copy_(state["scores"])
