"""The optimizer side of a run: SGD with its parameter groups, the learning-rate schedule,
and lookahead weight averaging (--lookahead). Used by the Trainer; nothing here touches
data or files.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from cifarlab.config import TrainConfig

WHITEN_BIAS_EPOCHS = 3  # the whitening layer's bias trains for these epochs, then stays

# Lookahead weight averaging (--lookahead), as airbench94's: from LOOKAHEAD_START of the
# epochs on, every LOOKAHEAD_EVERY steps a slow average moves toward the weights, by a decay
# that grows over training (LOOKAHEAD_DECAY ** LOOKAHEAD_EVERY * progress ** LOOKAHEAD_POW),
# and the weights are set to the average; at the end of each epoch too. BatchNorm running
# statistics are averaged alike.
LOOKAHEAD_START, LOOKAHEAD_EVERY, LOOKAHEAD_DECAY, LOOKAHEAD_POW = 0.3, 5, 0.95, 3.0

TRIANGLE_START, TRIANGLE_END = 0.2, 0.07  # airbench94's


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Multiplier of the base learning rate at each optimizer step.

    constant, cosine, onecycle (linear to 0): after a linear warm-up from 1/warmup_steps.
    triangle: linear from 0.2 to 1 over the warm-up, then linear down to 0.07 at the end.
    """

    def factor(step: int) -> float:
        if schedule == "triangle" and warmup_steps and step < warmup_steps:
            return TRIANGLE_START + (1.0 - TRIANGLE_START) * step / warmup_steps
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        t = min(max(t, 0.0), 1.0)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
        if schedule == "triangle":
            return 1.0 - (1.0 - TRIANGLE_END) * t
        return 1.0 - t  # onecycle: linear warm-up, then linear decay to 0

    return factor


def param_groups(
    model: nn.Module, cfg: TrainConfig, steps_per_epoch: int
) -> tuple[list[dict], list[Callable[[int], float]]]:
    """SGD parameter groups and their learning-rate multipliers (frozen weights left out).

    One group (as always) unless --bn-bias-lr-scale is not 1 (BatchNorm biases get their
    own group: lr times the scale, weight decay divided by it, so the same absolute decay)
    or the model has a whitening layer (its bias trains for the first WHITEN_BIAS_EPOCHS
    epochs only).
    """
    schedule = lr_lambda(
        cfg.schedule,
        cfg.epochs * steps_per_epoch,
        round(cfg.warmup_epochs * steps_per_epoch),
    )
    scale = cfg.bn_bias_lr_scale
    bn_biases = set()
    if scale != 1.0:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None:
                bn_biases.add(id(m.bias))
    whitening = getattr(model, "whitening", None)
    whiten_bias = whitening.bias if whitening is not None else None
    main, bn, special = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p is whiten_bias:
            special.append(p)
        elif id(p) in bn_biases:
            bn.append(p)
        else:
            main.append(p)
    groups, lambdas = [{"params": main}], [schedule]
    if bn:
        groups.append(
            {"params": bn, "lr": cfg.lr * scale, "weight_decay": cfg.weight_decay / scale}
        )
        lambdas.append(schedule)
    if special:
        until = WHITEN_BIAS_EPOCHS * steps_per_epoch

        def whiten_bias_schedule(step: int) -> float:
            return schedule(step) if step < until else 0.0

        groups.append({"params": special})
        lambdas.append(whiten_bias_schedule)
    return groups, lambdas


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD over the model's trainable parameters and its per-step LambdaLR schedule."""
    groups, lambdas = param_groups(model, cfg, steps_per_epoch)
    optimizer = torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


class Lookahead:
    """The weight average of --lookahead (see LOOKAHEAD_START and the others above).

    `average` is None until the first averaging step. It is not stored in checkpoints: at
    the end of every epoch the weights are set to the average, so a resumed run rebuilds
    it from the weights (`restart`).
    """

    def __init__(self, model: nn.Module, epochs: int, enabled: bool) -> None:
        self.model = model
        self.epochs = epochs
        self.enabled = enabled
        self.average: list[torch.Tensor] | None = None

    @property
    def started(self) -> bool:
        return self.average is not None

    def _tensors(self) -> list[torch.Tensor]:
        return [t for t in self.model.state_dict().values() if t.is_floating_point()]

    def active(self, epoch: int) -> bool:
        """Whether the average is updated during this epoch (1-based)."""
        return self.enabled and epoch - 1 >= int(LOOKAHEAD_START * self.epochs)

    @torch.no_grad()
    def update(self, step: int, total: int) -> None:
        """After optimizer step `step` (1-based, counted over the run) of `total`: every
        LOOKAHEAD_EVERY steps, move the average toward the weights and set the weights to it."""
        if step % LOOKAHEAD_EVERY:
            return
        tensors = self._tensors()
        if self.average is None:
            self.average = [t.detach().clone() for t in tensors]
            return
        decay = LOOKAHEAD_DECAY**LOOKAHEAD_EVERY * (step / total) ** LOOKAHEAD_POW
        for avg, t in zip(self.average, tensors, strict=True):
            avg.lerp_(t, 1 - decay)
            t.copy_(avg)

    @torch.no_grad()
    def to_model(self) -> None:
        """Set the weights to the average (a no-op before the first averaging step)."""
        if self.average is not None:
            for avg, t in zip(self.average, self._tensors(), strict=True):
                t.copy_(avg)

    def restart(self, started: bool) -> None:
        """After a resume: the average equals the weights restored (or is not started)."""
        self.average = [t.detach().clone() for t in self._tensors()] if started else None
