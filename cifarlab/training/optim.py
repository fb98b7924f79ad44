"""The optimizer side of a run: SGD with its parameter groups (or, with --optimizer muon,
torch's Muon for the conv filters and SGD for the rest; or AdamW or Adam over the same
groups), the learning-rate schedule, and lookahead weight averaging (--lookahead). Used by
the Trainer; nothing here touches data or files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cifarlab.config.checks import pair_values
from cifarlab.config.options import TrainConfig

NAMES = {"sgd": "SGD", "muon": "Muon", "adamw": "AdamW", "adam": "Adam"}  # --optimizer as written

WHITEN_BIAS_EPOCHS = 3  # the whitening layer's bias trains for these epochs, then stays

# Lookahead weight averaging (--lookahead), as airbench94's: from LOOKAHEAD_START of the
# epochs on, every LOOKAHEAD_EVERY steps a slow average moves toward the weights, by a decay
# that grows over training (LOOKAHEAD_DECAY ** LOOKAHEAD_EVERY * progress ** LOOKAHEAD_POW),
# and the weights are set to the average; at the end of each epoch too. BatchNorm running
# statistics are averaged alike.
LOOKAHEAD_START, LOOKAHEAD_EVERY, LOOKAHEAD_DECAY, LOOKAHEAD_POW = 0.3, 5, 0.95, 3.0

TRIANGLE_START, TRIANGLE_END = 0.2, 0.07  # airbench94's

ADAMS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}  # --optimizer adamw|adam


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


def conv_filters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable 4-D weights (conv filters) of a model: what --optimizer muon trains."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim == 4]


def param_groups(
    model: nn.Module, cfg: TrainConfig, steps_per_epoch: int, exclude: list | None = None
) -> tuple[list[dict], list[Callable[[int], float]]]:
    """SGD parameter groups and their learning-rate multipliers (frozen weights left out).

    One group (as always) unless --bn-bias-lr-scale is not 1 (BatchNorm biases get their
    own group: lr times the scale, weight decay divided by it, so the same absolute decay)
    or the model has a whitening layer (its bias trains for the first WHITEN_BIAS_EPOCHS
    epochs only). Parameters in `exclude` are left out (another optimizer trains them).
    """
    skip = {id(p) for p in exclude or []}
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
        if not p.requires_grad or id(p) in skip:
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


def make_optimizer(model: nn.Module, cfg: TrainConfig, steps_per_epoch: int) -> tuple[Any, Any]:
    """The optimizer over the model's trainable parameters and its per-step LambdaLR
    schedule: SGD (--optimizer sgd), SGD and Muon (--optimizer muon), AdamW or Adam (the
    same parameter groups as SGD's: BatchNorm biases, the whitening bias)."""
    filters = conv_filters(model) if cfg.optimizer == "muon" else []
    groups, lambdas = param_groups(model, cfg, steps_per_epoch, exclude=filters)
    if cfg.optimizer in ADAMS:
        adam = ADAMS[cfg.optimizer](
            groups, lr=cfg.lr, betas=pair_values(cfg.betas), weight_decay=cfg.weight_decay
        )
        return adam, torch.optim.lr_scheduler.LambdaLR(adam, lambdas)
    sgd = torch.optim.SGD(
        groups,
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov,
        weight_decay=cfg.weight_decay,
    )
    if not filters:
        return sgd, torch.optim.lr_scheduler.LambdaLR(sgd, lambdas)
    muon = FilterMuon(filters, lr=cfg.muon_lr, momentum=cfg.muon_momentum)
    schedule = lambdas[0]  # the main group's: the filters follow it
    both = TwoOptimizers(sgd, muon)
    scheds = [
        torch.optim.lr_scheduler.LambdaLR(sgd, lambdas),
        torch.optim.lr_scheduler.LambdaLR(muon.muon, [schedule]),
    ]
    return both, TwoSchedulers(scheds)


class FilterMuon:
    """torch.optim.Muon over conv filters. Muon takes 2-D matrices: each filter (out, in,
    k, k) is trained through a 2-D view of its memory (out, in*k*k in some order, which
    Muon's orthogonalization does not mind). Before each step every filter is scaled to a
    Frobenius norm of sqrt(out) (the filters feed BatchNorm, so only their direction
    counts, and the update's fixed size then keeps its meaning), as airbench94_muon does."""

    def __init__(self, filters: list[nn.Parameter], lr: float, momentum: float) -> None:
        self.filters = filters
        self.dims = [memory_order(w) for w in filters]
        self.flat = [
            nn.Parameter(w.detach().permute(*d).view(w.shape[0], -1))
            for w, d in zip(filters, self.dims, strict=True)
        ]
        self.muon = torch.optim.Muon(
            self.flat, lr=lr, momentum=momentum, nesterov=True, weight_decay=0.0
        )

    @torch.no_grad()
    def step(self) -> None:
        for w, d, flat in zip(self.filters, self.dims, self.flat, strict=True):
            if w.grad is None:  # frozen (--freeze-from): Muon skips it, and so does the norm
                flat.grad = None
                continue
            w.mul_(w.shape[0] ** 0.5 / w.norm())
            # the gradient in the filter's own element order (a copy if laid out otherwise)
            flat.grad = w.grad.permute(*d).reshape(flat.shape)
        self.muon.step()


def memory_order(t: torch.Tensor) -> tuple[int, ...]:
    """The permutation under which a 4-D tensor is contiguous (NCHW or channels_last)."""
    for dims in ((0, 1, 2, 3), (0, 2, 3, 1)):
        if t.permute(*dims).is_contiguous():
            return dims
    raise ValueError(f"a filter of shape {tuple(t.shape)} is neither NCHW nor channels_last")


class TwoOptimizers:
    """SGD and FilterMuon as one optimizer: step, zero_grad, param_groups, state."""

    def __init__(self, sgd: torch.optim.SGD, muon: FilterMuon) -> None:
        self.sgd, self.muon = sgd, muon

    @property
    def param_groups(self) -> list[dict]:
        return self.sgd.param_groups + self.muon.muon.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.sgd.zero_grad(set_to_none=set_to_none)
        for w in self.muon.filters:
            w.grad = None

    def step(self) -> None:
        self.sgd.step()
        self.muon.step()

    def state_dict(self) -> dict[str, Any]:
        return {"sgd": self.sgd.state_dict(), "muon": self.muon.muon.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sgd.load_state_dict(state["sgd"])
        self.muon.muon.load_state_dict(state["muon"])


class TwoSchedulers:
    """The LambdaLR schedules of TwoOptimizers, stepped and stored together."""

    def __init__(self, schedulers: list) -> None:
        self.schedulers = schedulers

    def step(self) -> None:
        for s in self.schedulers:
            s.step()

    def state_dict(self) -> dict[str, Any]:
        return {"schedulers": [s.state_dict() for s in self.schedulers]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for s, d in zip(self.schedulers, state["schedulers"], strict=True):
            s.load_state_dict(d)


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
