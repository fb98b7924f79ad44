"""Evaluation: loss, accuracy and confusion matrix of a model over device batches, with
test-time augmentation (TTA). Used by the training step, `evaluate` and benchmarks alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.config.options import TTA_MODES
from cifarlab.errors import CifarlabError
from cifarlab.training.batches import DeviceLoader
from cifarlab.training.precision import Precision


@dataclass
class EvalResult:
    loss: float
    acc: float
    confusion: torch.Tensor  # (classes, classes): rows true class, columns predicted
    predictions: torch.Tensor  # (N,) on the CPU, in loader order
    log_probabilities: torch.Tensor  # (N, classes) float32 on the CPU: log-softmax of the logits

    @property
    def probabilities(self) -> torch.Tensor:
        return self.log_probabilities.exp()

    def per_class_acc(self) -> list[float]:
        c = self.confusion.to(torch.float64)
        return (c.diag() / c.sum(1).clamp(min=1)).tolist()


def tta_logits(
    model: nn.Module, x: torch.Tensor, tta: str = "none", margin: float = 1.0
) -> torch.Tensor:
    """Logits (float32) averaged over test-time views of a normalized batch.

    flip: the image and its mirror, half each. flip-translate: half that, and a quarter
    each for the same pair shifted by one pixel up-left and down-right (reflect padding):
    six passes, as airbench's tta_level=2.

    margin < 1: the views only for the images the model is unsure of, those whose two most
    likely classes in the plain view differ in probability by less than `margin`; the
    others keep their plain logits. An unsure image gets the same logits as with every
    image augmented (views are per image: BatchNorm is in eval mode).
    """
    if tta not in TTA_MODES:
        raise CifarlabError(f"test-time augmentation must be one of {', '.join(TTA_MODES)}")
    plain = model(x).float()
    if tta == "none":
        return plain
    if margin >= 1.0 or plain.shape[1] < 2:
        return _views(model, x, tta, plain)
    top2 = plain.softmax(1).topk(2, dim=1).values
    unsure = (top2[:, 0] - top2[:, 1]) < margin
    out = plain.clone()
    if bool(unsure.any()):
        out[unsure] = _views(model, x[unsure], tta, plain[unsure])
    return out


def _views(model: nn.Module, x: torch.Tensor, tta: str, plain: torch.Tensor) -> torch.Tensor:
    """The TTA average for a batch whose plain-view logits are `plain`."""

    def mirror(z: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        first = model(z).float() if first is None else first
        return 0.5 * (first + model(z.flip(-1)).float())

    logits = mirror(x, plain)
    if tta == "flip":
        return logits
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    views = [p[..., :h, :w], p[..., 2:, 2:]]
    shifted = [mirror(v.contiguous(memory_format=torch.channels_last)) for v in views]
    return 0.5 * logits + 0.25 * (shifted[0] + shifted[1])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    device: torch.device,
    precision: Precision | str,
    num_classes: int = 10,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tta: str = "none",
    tta_margin: float = 1.0,
) -> EvalResult:
    """Loss, accuracy and confusion matrix of a model over a loader.

    reduce: sums a tensor across processes in place (for a loader holding this process's
    shard); loss, accuracy and confusion are then the whole set's, `predictions` this
    shard's. tta, tta_margin: test-time augmentation (see tta_logits). precision: a
    Precision, or its name on `device`.
    """
    if isinstance(precision, str):
        precision = Precision(precision, device.type)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
    preds, probs = [], []
    for x, y in loader:
        with precision.autocast():
            out = tta_logits(model, x, tta, tta_margin)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        p = out.argmax(1)
        preds.append(p)
        probs.append(out.float().log_softmax(1))
        confusion += torch.bincount(y * num_classes + p, minlength=num_classes**2)
    model.train(was_training)
    if reduce is not None:
        totals = torch.cat([loss_sum.view(1), confusion.to(torch.float64)])
        reduce(totals)
        loss_sum, confusion = totals[0], totals[1:].round().to(torch.int64)
    confusion = confusion.view(num_classes, num_classes).cpu()
    n = int(confusion.sum())
    return EvalResult(
        loss=float(loss_sum) / max(n, 1),
        acc=float(confusion.diag().sum()) / max(n, 1),
        confusion=confusion,
        predictions=torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.int64),
        log_probabilities=torch.cat(probs).cpu() if probs else torch.zeros(0, num_classes),
    )
