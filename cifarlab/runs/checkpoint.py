"""Checkpoints: self-contained, written atomically, loaded safely.

A checkpoint holds what inference needs (model name and builder arguments, weights, class
names, normalization, input size, versions) and what resuming needs (optimizer, scheduler,
RNG states, epoch, metrics). It is loaded with `weights_only=True`: plain tensors and
containers only, so a checkpoint can never run code.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab._version import __version__
from cifarlab.config.choices import CHECKPOINTS as CHECKPOINTS
from cifarlab.errors import CifarlabError
from cifarlab.files import atomic_write_bytes
from cifarlab.models.registry import allow_checkpoint_model, build_model

FORMAT = "cifarlab-checkpoint"
FORMAT_VERSION = 1
FILENAME = "checkpoint.pt"
BEST_FILENAME = "best.pt"  # the best epoch's weights, of runs with --early-stop
RESUME_ONLY = ("optimizer", "scheduler", "scaler", "rng")  # what inference never reads


def make_checkpoint(
    model: nn.Module,
    *,
    model_name: str,
    classes: list[str],
    mean: list[float],
    std: list[float],
    input_size: list[int],
    model_args: dict[str, int] | None = None,
    model_source: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A checkpoint dict: the model (name, builder arguments, where its code came from,
    weights on the CPU), what inference needs, and `extra` (what resuming needs)."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    described = {"name": model_name, "kwargs": dict(model_args or {})}
    if model_source:
        described["source"] = dict(model_source)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cifarlab_version": __version__,
        "torch_version": str(torch.__version__),
        "model": described,
        "state_dict": state,
        "classes": list(classes),
        "mean": list(mean),
        "std": list(std),
        "input_size": list(input_size),
        **extra,
    }


def save_checkpoint(ckpt: dict[str, Any], path: str | os.PathLike) -> None:
    """Write atomically: a kill leaves the previous checkpoint or the new one, never half."""
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def weights_part(ckpt: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint less what only resuming needs (optimizer, scheduler, RNG states): what
    best.pt holds."""
    return {k: v for k, v in ckpt.items() if k not in RESUME_ONLY}


def resolve_checkpoint_path(path: str | os.PathLike, which: str = "last") -> Path:
    """A run folder (its checkpoint.pt) or a checkpoint file. A folder of runs (a study, a
    sweep, seeds) gets an error naming the run folders in it. which="best": the run's
    best.pt instead (in the folder, or beside the file given)."""
    if which == "best":
        return best_checkpoint_path(path)
    p = Path(path)
    if p.is_dir():
        p = p / FILENAME
        if not p.is_file():
            runs = _runs_below(Path(path))
            if runs:
                raise CifarlabError(_pick_a_run(path, runs))
            raise CifarlabError(f"no {FILENAME} in run folder {path}; was the run started?")
    elif not p.is_file():
        raise CifarlabError(f"checkpoint {path} does not exist")
    return p


def best_checkpoint_path(path: str | os.PathLike) -> Path:
    """best.pt of a run folder, or beside a checkpoint file (--checkpoint best)."""
    p = Path(path)
    if not p.exists():
        raise CifarlabError(f"checkpoint {path} does not exist")
    best = (p if p.is_dir() else p.parent) / BEST_FILENAME
    if not best.is_file():
        raise CifarlabError(
            f"no {BEST_FILENAME} in {best.parent}: only runs trained with --early-stop "
            "PATIENCE keep their best epoch's weights; use --checkpoint last, or train with "
            "--early-stop"
        )
    return best


def _runs_below(folder: Path, depth: int = 3) -> list[Path]:
    """Run folders (with a checkpoint) up to `depth` levels below `folder`, as in a study's,
    sweep's or seeds' OUT/runs/NAME; not deeper, so that a big folder is not walked."""
    found = (c for d in range(1, depth + 1) for c in folder.glob("/".join(["*"] * d + [FILENAME])))
    return sorted(c.parent for c in found if c.is_file())


def _pick_a_run(path: str | os.PathLike, runs: list[Path], shown: int = 5) -> str:
    names = ", ".join(str(r) for r in runs[:shown]) + (", ..." if len(runs) > shown else "")
    return (
        f"no {FILENAME} in {path}, which holds {len(runs)} run folder"
        f"{'s' if len(runs) > 1 else ''} ({names}); pick one of them"
    )


# How a torch.save file starts: a zip archive (torch >= 1.6), or the legacy format's
# pickled magic number.
TORCH_SAVE_HEADS = (b"PK\x03\x04", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")


def _blocked_global(message: str) -> str:
    """What torch's weights_only error says was refused (its name only: never torch's advice
    on allowing it, since loading such a file unsafely would run its code)."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return f" (it names {found.group(1)})" if found else ""


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict[str, Any]:
    """Load and check a cifarlab checkpoint; anything else gets a one-line error."""
    p = resolve_checkpoint_path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(max(map(len, TORCH_SAVE_HEADS)))
    except OSError as e:
        raise CifarlabError(f"cannot read {p}: {e.strerror}") from None
    if not head.startswith(TORCH_SAVE_HEADS):
        raise CifarlabError(
            f"{p} is not a cifarlab checkpoint (a torch.save file written by `cifarlab "
            f"train`): give a run folder or its {FILENAME}"
        )
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CifarlabError(
                f"{p} holds objects that could run code when loaded; refusing to load it"
                f"{_blocked_global(str(e))}"
            ) from None
        raise CifarlabError(f"{p} is not a readable checkpoint (truncated or corrupt)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CifarlabError(
            f"{p} is not a readable checkpoint (truncated or corrupt: {type(e).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CifarlabError(f"{p} is not a cifarlab checkpoint (no '{FORMAT}' marker)")
    if ckpt.get("format_version", 0) > FORMAT_VERSION:
        raise CifarlabError(
            f"{p} was written by a newer cifarlab (format {ckpt['format_version']}); upgrade"
        )
    for key in ("model", "state_dict", "classes", "mean", "std"):
        if key not in ckpt:
            raise CifarlabError(f"{p} is incomplete: it has no {key!r}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], model: str | None = None) -> nn.Module:
    """Rebuild the model a checkpoint describes and load its weights (eval mode).

    model: the user's --model; needed (and checked against the recorded reference) when
    the model's code is outside cifarlab, which is never imported on a checkpoint's word.
    """
    described = ckpt["model"]
    name = allow_checkpoint_model(described["name"], model, described.get("source"))
    net = build_model(name, **described.get("kwargs", {}))
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise CifarlabError(
            f"the checkpoint's weights do not fit model {name!r}: {str(e).splitlines()[0]}"
        ) from None
    return net.eval()
