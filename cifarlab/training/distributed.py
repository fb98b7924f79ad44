"""Data-parallel training across processes: torchrun detection, the process group, collectives.

`cifarlab train` started by torchrun (which sets RANK, WORLD_SIZE and LOCAL_RANK) trains
with DistributedDataParallel; started any other way it is one process and this module
does nothing. The helpers below are no-ops (or identities) in a single process, so the
training loop calls them unconditionally.

Failure handling: a setup step that can fail on one rank only (loading the data, reading
a checkpoint) runs through `agreed`, which tells every rank whether any failed, so all
stop together with the failing rank's message; the NaN check of the training loop is
all-reduced for the same reason. Anything else that kills one process (a bug, an
out-of-memory error) is torchrun's to handle: its agent stops the other processes.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from cifarlab.config.choices import BACKENDS as BACKENDS
from cifarlab.errors import CifarlabError

DEFAULT_TIMEOUT_S = 600.0

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: global rank, number of processes, rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise CifarlabError(
            f"environment variable {name}={value!r} is not a whole number"
        ) from None


def from_env() -> DistEnv:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK); one process without it."""
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistEnv()
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if not 0 <= rank < world_size:
        raise CifarlabError(f"RANK={rank} is outside 0..{world_size - 1} (WORLD_SIZE)")
    return DistEnv(rank, world_size, local_rank)


def mark_every_rank(e: BaseException) -> BaseException:
    """Mark an error that every rank raises alike: only rank 0 prints it."""
    with contextlib.suppress(AttributeError):
        e.every_rank = True  # type: ignore[attr-defined]
    return e


@contextlib.contextmanager
def same_on_every_rank() -> Iterator[None]:
    """Errors raised inside (checks every rank makes alike) are printed once, by rank 0."""
    try:
        yield
    except CifarlabError as e:
        raise mark_every_rank(e)  # noqa: B904 (re-raising the same exception)


def check_batch_size(batch_size: int, world_size: int) -> int:
    """The per-process batch of a global --batch-size."""
    if batch_size % world_size:
        lower = batch_size - batch_size % world_size
        hint = f"e.g. {lower} or {lower + world_size}" if lower else f"e.g. {world_size}"
        raise mark_every_rank(
            CifarlabError(
                f"--batch-size {batch_size} is the global batch and must divide evenly among "
                f"{world_size} processes; use a multiple of {world_size} ({hint})"
            )
        )
    return batch_size // world_size


def pick_backend(backend: str | None, device: torch.device) -> str:
    if backend is None or backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend not in BACKENDS:
        raise CifarlabError(f"--backend must be one of auto, {', '.join(BACKENDS)}")
    if backend == "nccl" and device.type != "cuda":
        raise CifarlabError("--backend nccl needs CUDA devices; use gloo on CPUs")
    return backend


@contextlib.contextmanager
def process_group(
    env: DistEnv, device: torch.device, backend: str | None = None, timeout_s: float | None = None
) -> Iterator[str | None]:
    """Initialize the default process group for this torchrun process; destroy it at exit.

    A group that already exists (a caller's own) is used as is and left alone. Yields the
    backend's name (None in a single process).
    """
    if not env.enabled:
        yield None
        return
    if dist.is_initialized():
        if dist.get_world_size() != env.world_size or dist.get_rank() != env.rank:
            raise CifarlabError("the existing process group does not match RANK/WORLD_SIZE")
        yield dist.get_backend()
        return
    name = pick_backend(backend, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=timeout_s or DEFAULT_TIMEOUT_S)
    kwargs: dict[str, Any] = {}
    if device.type == "cuda" and name == "nccl":
        kwargs["device_id"] = device
    dist.init_process_group(
        name, rank=env.rank, world_size=env.world_size, timeout=timeout, **kwargs
    )
    try:
        yield name
    finally:
        dist.destroy_process_group()


def is_enabled() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """In-place all-reduce (sum, min or max) across ranks; identity in one process."""
    if is_enabled():
        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        dist.all_reduce(tensor, op=ops[op])
    return tensor


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank `src`'s value of a picklable object, on every rank."""
    if not is_enabled():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's value of a picklable object, in rank order, on every rank."""
    if not is_enabled():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def agreed(fn: Callable[[], T]) -> T:
    """Run `fn` on every rank; if it fails on any rank, raise on all of them.

    The failing rank re-raises its own exception; the others raise a CifarlabError naming
    that rank and its message. All are marked so that rank 0 alone prints the message.
    A collective: every rank must call it at the same point.
    """
    if not is_enabled():
        return fn()
    result: T | None = None
    error: BaseException | None = None
    try:
        result = fn()
    except Exception as e:
        error = e
    message = None if error is None else _describe(error)
    messages = gather_objects(message)
    failed = [(r, m) for r, m in enumerate(messages) if m is not None]
    if not failed:
        return result  # type: ignore[return-value]
    if error is not None:
        raise mark_every_rank(error)
    rank, text = failed[0]
    raise mark_every_rank(
        CifarlabError(f"process {rank} of {len(messages)} failed: {text}")
    ) from None


def _describe(e: BaseException) -> str:
    if isinstance(e, CifarlabError):
        return str(e)
    return f"{type(e).__name__}: {e}"


# ------------------------------------------------------------------ synchronized BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum across ranks; the gradient is summed across ranks too (each rank's loss
    depends on every rank's input through the shared statistics)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks).

    torch's SyncBatchNorm runs on GPUs only; this one runs on any device (through the
    process group's backend, e.g. gloo on CPUs). In eval mode, or in one process, it is
    plain BatchNorm2d. Its state dict is BatchNorm2d's, so checkpoints load into either.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_enabled()):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        count = torch.full((1,), x.numel() / c, device=x.device, dtype=torch.float32)
        stats = torch.cat([xf.sum((0, 2, 3)), (xf * xf).sum((0, 2, 3)), count])
        stats = _AllReduceSum.apply(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp(min=0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * (n / (n - 1).clamp(min=1))
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        scale = torch.rsqrt(var + self.eps)
        shift = -mean * scale
        if self.weight is not None:
            scale = scale * self.weight
            shift = shift * self.weight + self.bias
        y = xf * scale.view(1, c, 1, 1) + shift.view(1, c, 1, 1)
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """BatchNorm -> torch's SyncBatchNorm on CUDA, GlobalBatchNorm2d elsewhere.

    Parameters and buffers are shared with the original modules (so an optimizer built
    before still holds the right tensors), requires_grad included.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert_global(model)


def _convert_global(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        new = GlobalBatchNorm2d(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            new.weight = module.weight
            new.bias = module.bias
        new.running_mean = module.running_mean
        new.running_var = module.running_var
        new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, _convert_global(child))
    return module
