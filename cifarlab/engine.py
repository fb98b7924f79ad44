"""The pieces a training loop is built from: hardware (device, precision, determinism),
batches on the device, evaluation.

Kept apart from the Trainer so that inference and benchmarks reuse them. Nothing here
touches the file system.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab import __version__
from cifarlab.config import FLIP_AUGMENTS, TTA_MODES, TrainConfig
from cifarlab.data import Normalize, Split
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


def pick_precision(name: str, device: torch.device) -> tuple[str, str]:
    """(precision, why). auto: bf16 on CUDA cards that have it (else fp16), bf16 on CPUs
    with native bf16 kernels, else fp32."""
    if name == "auto":
        if device.type == "cuda":
            if torch.cuda.is_bf16_supported():
                return "bf16", "auto: this GPU has bf16"
            return "fp16", "auto: this GPU has no bf16"
        if cpu_has_fast_bf16():
            return "bf16", "auto: this CPU has native bf16 (AVX512-BF16 or AMX)"
        return "fp32", "auto: this CPU has no native bf16, where bf16 would be emulated and slow"
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise CifarlabError("--precision bf16: this GPU has no bf16; use fp16 or fp32")
    if name == "fp16" and device.type == "cpu":
        raise CifarlabError("--precision fp16 is for CUDA; on a CPU use bf16 or fp32")
    return name, "asked for"


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[precision])


def set_deterministic(on: bool) -> None:
    """Deterministic kernels (and no cuDNN autotuning) for --deterministic; off again for a
    run without it. CUDA's cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before its first use."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), else its architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Hardware:
    """Where and how a run computes: device, autocast precision (and why), determinism.
    Chosen once per run (`choose`), from the config's --device/--precision/--deterministic."""

    device: torch.device
    precision: str
    why: str = ""

    @classmethod
    def choose(cls, cfg: TrainConfig) -> Hardware:
        device = pick_device(cfg.device)
        precision, why = pick_precision(cfg.precision, device)
        set_deterministic(cfg.deterministic)
        return cls(device, precision, why)

    def for_rank(self, local_rank: int) -> Hardware:
        """One process of a torchrun run: CUDA device number LOCAL_RANK (CPUs unchanged)."""
        if self.device.type != "cuda":
            return self
        if local_rank >= torch.cuda.device_count():
            raise CifarlabError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices "
                "here; use --nproc_per_node up to the number of GPUs"
            )
        return Hardware(torch.device("cuda", local_rank), self.precision, self.why)

    def describe(self, world_size: int = 1) -> dict[str, Any]:
        """What a run's summary records about where it ran."""
        name = cpu_name()
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        return {
            "device": self.device.type,
            "world_size": world_size,
            "device_name": name,
            "precision": self.precision,
            "threads": torch.get_num_threads(),
            "torch_version": str(torch.__version__),
            "cifarlab_version": __version__,
            "python_version": platform.python_version(),
        }

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA), so that a clock read after it is honest."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# ------------------------------------------------------------------------------ batches


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

    Each batch leaves as model input: `normalize` (uint8 -> normalized float32) is applied
    on the device. Augmentations: flip-crop (random flip, 4-pixel crop after zero padding),
    flip (random flip), flip-translate (random flip, shift by up to TRANSLATE pixels with
    reflect padding). alt_flip: instead of a coin toss per image and epoch, each image starts
    flipped or not (drawn once, here) and alternates every epoch (set_epoch), as airbench
    does: every image is seen both ways within two epochs.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        device: torch.device,
        normalize: Normalize,
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
        self.normalize = normalize.to(device)
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
            yield self.normalize(x), self.labels[idx]

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
