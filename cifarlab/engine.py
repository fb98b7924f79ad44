"""The pieces a training loop is built from: device, precision, batches, schedule, evaluation.

Kept apart from the loop itself (train.py) so that inference, benchmarks and the distributed
runner reuse them. Nothing here touches the file system.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.data import Split
from cifarlab.errors import CifarlabError

# ------------------------------------------------------------------ device and precision


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise CifarlabError(
            f"--device cuda was asked for but CUDA is not available here "
            f"(torch {torch.__version__}); use --device cpu or --device auto"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def pick_precision(name: str, device: torch.device) -> str:
    """auto: bf16 on CUDA cards that have it (else fp16), bf16 on CPUs with native bf16."""
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_fast_bf16() else "fp32"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise CifarlabError("--precision bf16: this GPU has no bf16; use fp16 or fp32")
    if name == "fp16" and device.type == "cpu":
        raise CifarlabError("--precision fp16 is for CUDA; on a CPU use bf16 or fp32")
    return name


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[precision])


# ------------------------------------------------------------------------------ batches


def normalize_batch(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 normalized, channels_last."""
    x = x.to(torch.float32).div_(255.0).sub_(mean).div_(std)
    return x.contiguous(memory_format=torch.channels_last)


def flip_crop(x: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor, pad: int = 4):
    """Per-image horizontal flip and random crop after zero padding, for a whole batch.

    flip: bool (B,), shift: int (B, 2) in [0, 2*pad]. Same as torchvision's
    RandomHorizontalFlip + RandomCrop(32, padding=pad) image by image, without a loop.
    """
    b, c, h, w = x.shape
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    xp = F.pad(x, (pad, pad, pad, pad))
    ar_h = torch.arange(h, device=x.device)
    ar_w = torch.arange(w, device=x.device)
    rows = (shift[:, 0:1] + ar_h).view(b, 1, h, 1)
    cols = (shift[:, 1:2] + ar_w).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return xp[bi, ci, rows, cols]


TRANSLATE = 2  # pixels of the flip-translate augmentation


def reflect_index(i: torch.Tensor, n: int) -> torch.Tensor:
    """Index into 0..n-1 of position i in a reflect-padded axis (edge not repeated)."""
    i = i.abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Per-image translation with reflect padding, for a whole batch (any dtype).

    shift: int (B, 2) of (dy, dx), |d| < H: out[b, :, i, j] = x[b, :, i + dy, j + dx],
    positions outside the image mirrored back in. Same as F.pad(x, (p,) * 4, "reflect")
    followed by a crop at (p + dy, p + dx).
    """
    b, c, h, w = x.shape
    rows = reflect_index(shift[:, 0:1] + torch.arange(h, device=x.device), h).view(b, 1, h, 1)
    cols = reflect_index(shift[:, 1:2] + torch.arange(w, device=x.device), w).view(b, 1, 1, w)
    bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return x[bi, ci, rows, cols]


FLIP_AUGMENTS = ("flip-crop", "flip", "flip-translate")


class DeviceLoader:
    """Batches from a uint8 dataset kept on the training device.

    Shuffling and augmentation draw from a seeded CPU generator (so a run gives the same
    batches on any device); indexing, augmentation and normalization run on the device, a
    whole batch at a time. With world_size > 1 each rank takes its shard of the epoch's
    permutation (rank::world_size), after dropping the tail that does not divide evenly.
    `batch_size` is then per rank: the ranks together go through global batches of
    batch_size * world_size images, rank r taking images r, r + world_size, ... of each,
    and the augmentation is drawn for the whole global batch (every rank draws the same
    numbers, so the generators stay in step) before each rank takes its share. So N ranks
    see exactly the images, flips and crops that one process sees at the global batch.

    Augmentations: flip-crop (random flip, 4-pixel crop after zero padding), flip (random
    flip), flip-translate (random flip, shift by up to TRANSLATE pixels with reflect
    padding). alt_flip: instead of a coin toss per image and epoch, each image starts
    flipped or not (drawn once, here) and alternates every epoch (set_epoch), as airbench
    does: every image is seen both ways within two epochs.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        mean: list[float],
        std: list[float],
        *,
        shuffle: bool = False,
        augment: str = "none",
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
        alt_flip: bool = False,
    ) -> None:
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.device = device
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.shuffle = shuffle
        self.augment = augment
        self.generator = generator
        self.rank = rank
        self.world_size = world_size
        self.epoch = 1
        self.alt_flip = alt_flip and augment in FLIP_AUGMENTS
        if self.alt_flip:
            self.first_flip = torch.rand(len(self.labels), generator=generator) < 0.5

    def set_epoch(self, epoch: int) -> None:
        """The epoch (from 1) of the next pass; alternating flips depend on its parity."""
        self.epoch = epoch

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch."""
        return len(self.labels) // self.world_size

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order[: self.num_samples * self.world_size]
        step, r, w = self.batch_size * self.world_size, self.rank, self.world_size
        for start in range(0, len(order), step):
            idx = order[start : start + step]
            flip, shift = self._draw(idx)
            idx = idx[r::w].to(self.device, non_blocking=True)
            x = self.images[idx]
            if flip is not None:
                flip = flip[r::w].to(self.device, non_blocking=True)
            if shift is not None:
                shift = shift[r::w].to(self.device, non_blocking=True)
            if self.augment == "flip-crop":
                x = flip_crop(x, flip, shift)
            elif self.augment in ("flip", "flip-translate"):
                x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
                if shift is not None:
                    x = translate(x, shift)
            yield normalize_batch(x, self.mean, self.std), self.labels[idx]

    def _draw(self, idx: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Flips and shifts of a (global) batch, drawn on the CPU generator."""
        if self.augment not in FLIP_AUGMENTS:
            return None, None
        n = len(idx)
        if self.alt_flip:
            flip = self.first_flip[idx] ^ (self.epoch % 2 == 0)
        else:
            flip = torch.rand(n, generator=self.generator) < 0.5
        shift = None
        if self.augment == "flip-crop":
            shift = torch.randint(0, 9, (n, 2), generator=self.generator)
        elif self.augment == "flip-translate":
            shift = torch.randint(-TRANSLATE, TRANSLATE + 1, (n, 2), generator=self.generator)
        return flip, shift


# ----------------------------------------------------------------------------- schedule


TRIANGLE_START, TRIANGLE_END = 0.2, 0.07  # airbench94's


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int):
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


# --------------------------------------------------------------------------- evaluation


@dataclass
class EvalResult:
    loss: float
    acc: float
    confusion: torch.Tensor  # (classes, classes): rows true class, columns predicted
    predictions: torch.Tensor  # (N,) on the CPU, in loader order

    def per_class_acc(self) -> list[float]:
        c = self.confusion.to(torch.float64)
        return (c.diag() / c.sum(1).clamp(min=1)).tolist()


TTA_MODES = ("none", "flip", "flip-translate")


def tta_logits(model: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Logits (float32) averaged over test-time views of a normalized batch.

    flip: the image and its mirror, half each. flip-translate: half that, and a quarter
    each for the same pair shifted by one pixel up-left and down-right (reflect padding):
    six passes, as airbench's tta_level=2.
    """
    if tta == "none":
        return model(x).float()

    def mirror(z: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(z).float() + model(z.flip(-1)).float())

    logits = mirror(x)
    if tta == "flip":
        return logits
    if tta != "flip-translate":
        raise CifarlabError(f"test-time augmentation must be one of {', '.join(TTA_MODES)}")
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
    precision: str,
    num_classes: int = 10,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    tta: str = "none",
) -> EvalResult:
    """Loss, accuracy and confusion matrix of a model over a loader.

    reduce: sums a tensor across processes in place (for a loader holding this process's
    shard); loss, accuracy and confusion are then the whole set's, `predictions` this
    shard's. tta: test-time augmentation (see tta_logits).
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
    preds = []
    for x, y in loader:
        with autocast(device, precision):
            out = tta_logits(model, x, tta)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        p = out.argmax(1)
        preds.append(p)
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
    )
