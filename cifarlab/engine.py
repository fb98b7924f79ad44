"""The pieces a training loop is built from: device, precision, batches, schedule, evaluation.

Kept apart from the loop itself (train.py) so that inference, benchmarks and the distributed
runner reuse them. Nothing here touches the file system.
"""

from __future__ import annotations

import math
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


class DeviceLoader:
    """Batches from a uint8 dataset kept on the training device.

    Shuffling and augmentation draw from a seeded CPU generator (so a run gives the same
    batches on any device); indexing, augmentation and normalization run on the device, a
    whole batch at a time. With world_size > 1 each rank takes its shard of the epoch's
    permutation (rank::world_size), after dropping the tail that does not divide evenly.
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

    @property
    def num_samples(self) -> int:
        """Images this rank sees per epoch."""
        return len(self.labels) // self.world_size

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order[: self.num_samples * self.world_size][self.rank :: self.world_size]
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.augment == "flip-crop":
                flip = torch.rand(len(idx), generator=self.generator) < 0.5
                shift = torch.randint(0, 9, (len(idx), 2), generator=self.generator)
            idx = idx.to(self.device, non_blocking=True)
            x = self.images[idx]
            if self.augment == "flip-crop":
                x = flip_crop(
                    x,
                    flip.to(self.device, non_blocking=True),
                    shift.to(self.device, non_blocking=True),
                )
            yield normalize_batch(x, self.mean, self.std), self.labels[idx]


# ----------------------------------------------------------------------------- schedule


def lr_lambda(schedule: str, total_steps: int, warmup_steps: int):
    """Multiplier of the base learning rate at each optimizer step."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        t = min(max(t, 0.0), 1.0)
        if schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * t))
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


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DeviceLoader,
    device: torch.device,
    precision: str,
    num_classes: int = 10,
) -> EvalResult:
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    confusion = torch.zeros(num_classes * num_classes, device=device, dtype=torch.int64)
    preds = []
    for x, y in loader:
        with autocast(device, precision):
            out = model(x)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        p = out.argmax(1)
        preds.append(p)
        confusion += torch.bincount(y * num_classes + p, minlength=num_classes**2)
    model.train(was_training)
    confusion = confusion.view(num_classes, num_classes).cpu()
    n = int(confusion.sum())
    return EvalResult(
        loss=float(loss_sum) / max(n, 1),
        acc=float(confusion.diag().sum()) / max(n, 1),
        confusion=confusion,
        predictions=torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.int64),
    )
