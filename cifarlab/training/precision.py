"""A run's numeric precision as one object: its dtype, its autocast and its scaled step.

    p = Precision.choose("auto", device)   # bf16, fp16 or fp32, and why
    with p.autocast():                     # every forward pass (train, evaluate, predict, explain)
        loss = loss_fn(model(x), y)
    scaler = p.scaler()                    # once per run; it scales only for fp16
    p.step(loss, optimizer, scaler)        # backward, (unscaled) optimizer step
    # or, a gradient summed over micro-batches: p.backward(loss_k, scaler) each, p.apply once

Weights stay float32 whatever the precision: autocast runs the convolutions and matrix
products in the lower precision and keeps reductions in float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from cifarlab.config.options import PRECISIONS
from cifarlab.errors import CifarlabError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _choose(name: str, device: torch.device) -> tuple[str, str]:
    """(precision, why) for --precision `name` on `device`; an error where it cannot run."""
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


@dataclass(frozen=True)
class Precision:
    """The precision a model computes in on one kind of device (see the module docstring).
    `name` is fp32, bf16 or fp16; `why` says how it was chosen (for the run's summary)."""

    name: str
    device_type: str = "cpu"
    why: str = ""

    def __post_init__(self) -> None:
        if self.name not in DTYPES:
            raise CifarlabError(
                f"precision must be one of {', '.join(DTYPES)}, not {self.name!r} "
                "(auto is resolved by Precision.choose)"
            )

    @classmethod
    def choose(cls, name: str, device: torch.device) -> Precision:
        """--precision `name` (auto, fp32, bf16, fp16) on `device`: auto takes bf16 on GPUs
        that have it (else fp16) and on CPUs with native bf16 kernels, else fp32."""
        if name not in PRECISIONS:
            raise CifarlabError(f"--precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
        chosen, why = _choose(name, device)
        return cls(chosen, device.type, why)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype autocast computes in (float32 for fp32: no autocast)."""
        return DTYPES[self.name]

    def autocast(self) -> AbstractContextManager:
        """The context every forward pass runs in: autocast to `dtype`, or nothing for fp32."""
        if self.name == "fp32":
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A new gradient scaler for a run's optimizer: it scales the loss only for fp16
        (whose gradients would underflow); for bf16 and fp32 it passes values through."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")

    def step(
        self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler
    ) -> None:
        """Backward from `loss` and one optimizer step, through the run's `scaler` (fp16:
        the step is skipped where the scaled gradients overflowed, and the scale adapts)."""
        self.backward(loss, scaler)
        self.apply(optimizer, scaler)

    def backward(self, loss: torch.Tensor, scaler: torch.amp.GradScaler) -> None:
        """Add `loss`'s gradients (scaled for fp16) to the parameters' (a micro-batch's share
        of a step; `apply` then takes the step)."""
        scaler.scale(loss).backward()

    def apply(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        """The optimizer step from the gradients summed so far (fp16: skipped where they
        overflowed, and the scale adapts)."""
        scaler.step(optimizer)
        scaler.update()

    def __str__(self) -> str:
        return self.name
