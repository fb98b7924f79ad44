"""Where and how a run computes: the device, the precision (and why), determinism.

    hw = Hardware.choose(cfg)        # once per run, from --device/--precision/--deterministic
    with hw.precision.autocast(): ...

Nothing here touches the file system or the data.
"""

from __future__ import annotations

import os
import platform
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cifarlab._version import __version__
from cifarlab.config.options import TrainConfig
from cifarlab.errors import CifarlabError
from cifarlab.training.precision import Precision, cpu_has_fast_bf16


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise CifarlabError(
            f"--device cuda was asked for but CUDA is not available here "
            f"(torch {torch.__version__}); use --device cpu or --device auto"
        )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_precision(name: str, device: torch.device) -> tuple[str, str]:
    """(precision, why) of --precision `name` on `device` (see Precision.choose)."""
    chosen = Precision.choose(name, device)
    return chosen.name, chosen.why


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast of `precision` on `device` (Precision(...).autocast())."""
    return Precision(precision, device.type).autocast()


def set_deterministic(on: bool) -> None:
    """Deterministic kernels (and no cuDNN autotuning) for --deterministic; off again for a
    run without it. CUDA's cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before its first use."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on


def _cpuinfo() -> str:
    """The text of /proc/cpuinfo ("" where there is none: not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _cpuinfo_field(cpuinfo: str, name: str) -> str | None:
    """The value of the first `name : value` line of cpuinfo text, or None."""
    for line in cpuinfo.splitlines():
        if line.startswith(name):
            return line.split(":", 1)[1].strip()
    return None


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), else its architecture."""
    return _cpuinfo_field(_cpuinfo(), "model name") or platform.processor() or platform.machine()


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what speed depends on


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """Which of CPU_FLAGS the processor reports, from the text of /proc/cpuinfo (read here
    when not given; [] where there is none)."""
    have = set((_cpuinfo_field(_cpuinfo() if cpuinfo is None else cpuinfo, "flags") or "").split())
    return [f for f in CPU_FLAGS if f in have]


@dataclass(frozen=True)
class Hardware:
    """Where and how a run computes: device, precision (with why it was chosen), determinism.
    Chosen once per run (`choose`), from the config's --device/--precision/--deterministic.
    `precision` may be given by name ("bf16"), with `why`; it is kept as a Precision."""

    device: torch.device
    precision: Precision
    why: str = ""

    def __post_init__(self) -> None:
        p = self.precision
        if isinstance(p, str):
            p = Precision(p, self.device.type, self.why)
        object.__setattr__(self, "precision", p)
        object.__setattr__(self, "why", self.why or p.why)

    @classmethod
    def choose(cls, cfg: TrainConfig) -> Hardware:
        device = pick_device(cfg.device)
        precision = Precision.choose(cfg.precision, device)
        set_deterministic(cfg.deterministic)
        return cls(device, precision)

    def for_rank(self, local_rank: int) -> Hardware:
        """One process of a torchrun run: CUDA device number LOCAL_RANK (CPUs unchanged)."""
        if self.device.type != "cuda":
            return self
        if local_rank >= torch.cuda.device_count():
            raise CifarlabError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices "
                "here; use --nproc_per_node up to the number of GPUs"
            )
        return Hardware(torch.device("cuda", local_rank), self.precision)

    def describe(self, world_size: int = 1) -> dict[str, Any]:
        """What a run's summary records about where it ran."""
        name = cpu_name()
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
        return {
            "device": self.device.type,
            "world_size": world_size,
            "device_name": name,
            "cpu": cpu_name(),
            "cpu_flags": cpu_flags(),
            "cpu_native_bf16": cpu_has_fast_bf16(),
            "precision": self.precision.name,
            "threads": torch.get_num_threads(),
            "torch_version": str(torch.__version__),
            "cifarlab_version": __version__,
            "python_version": platform.python_version(),
        }

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA), so that a clock read after it is honest."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
