"""Export a trained model to ONNX or TorchScript, with a dynamic batch size, checked
against PyTorch before anything is written.

    export_trained(load_checkpoint("runs/x/checkpoint.pt"), "onnx", "model.onnx")
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab.config.choices import EXPORT_FORMATS, EXPORT_INPUTS
from cifarlab.errors import CifarlabError
from cifarlab.evaluate.trained import normalization
from cifarlab.files import atomic_write_bytes
from cifarlab.runs.checkpoint import BEST_FILENAME, model_from_checkpoint

FORMATS, INPUTS = EXPORT_FORMATS, EXPORT_INPUTS
TOLERANCE = 1e-4
CHECK_BATCH = 16


def _onnx_modules():
    try:
        import onnx  # lazy: onnx and onnxruntime are the optional extra cifarlab[export]
        import onnxruntime
    except ImportError as e:
        raise CifarlabError(
            f"ONNX export needs the onnx and onnxruntime packages ({e.name} is missing); "
            "install them with: pip install 'cifarlab[export]'"
        ) from None
    return onnx, onnxruntime


def _to_onnx(module: nn.Module, example: torch.Tensor, meta: dict[str, str]) -> bytes:
    onnx, _ = _onnx_modules()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's DeprecationWarning
        # dynamo=False: the TorchScript-based exporter; the dynamo one needs onnxscript.
        torch.onnx.export(
            module,
            (example,),
            buf,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
    proto = onnx.load_from_string(buf.getvalue())
    onnx.helper.set_model_props(proto, meta)
    return proto.SerializeToString()


def _to_torchscript(module: nn.Module, example: torch.Tensor, meta: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        traced = torch.jit.trace(module, example)
        torch.jit.save(traced, buf, _extra_files={"cifarlab.json": json.dumps(meta)})
    return buf.getvalue()


def run_exported(data: bytes, fmt: str, x: torch.Tensor) -> torch.Tensor:
    """Run an exported model (the bytes of the file) the way its users will."""
    if fmt == "onnx":
        _, ort = _onnx_modules()
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.no_grad():
        return module(x)


def default_export_path(ckpt_path: Path, fmt: str, input_kind: str) -> Path:
    """Next to the checkpoint: model.onnx, model-raw.onnx, model.torchscript.pt, ...; of a
    run's best.pt: model-best.onnx, ..."""
    suffix = ("-best" if ckpt_path.name == BEST_FILENAME else "") + (
        "-raw" if input_kind == "raw" else ""
    )
    return ckpt_path.parent / f"model{suffix}.{'onnx' if fmt == 'onnx' else 'torchscript.pt'}"


def check_destination(out: str | os.PathLike) -> None:
    """Refuse, before any work, a destination that cannot be written: a folder, a file in
    place of a folder on its path, a folder without write permission."""
    out = Path(out)
    if out.is_dir():
        raise CifarlabError(
            f"--out {out} is a folder; give the file to write, e.g. {out}/model.onnx"
        )
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise CifarlabError(f"cannot write {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CifarlabError(f"cannot write {out}: no permission to write in {parent}")


def export_trained(
    ckpt: dict[str, Any],
    fmt: str,
    out: str | os.PathLike,
    input_kind: str = "normalized",
    model_ref: str | None = None,
) -> dict[str, Any]:
    """Export to ONNX or TorchScript, check it against PyTorch, then write it to `out`.

    normalized: float32 NCHW input, already normalized with the checkpoint's mean/std.
    raw: uint8 NCHW input in 0..255; the normalization is inside the exported graph.
    The batch size is dynamic. Raises CifarlabError (and writes nothing) if the exported
    model's logits differ from PyTorch's by more than TOLERANCE on a random batch.
    """
    if fmt not in FORMATS or input_kind not in INPUTS:
        raise CifarlabError(f"--format must be one of {FORMATS}, --input one of {INPUTS}")
    if fmt == "onnx":
        _onnx_modules()  # fail early and clearly when they are missing
    model = model_from_checkpoint(ckpt, model_ref).float().eval()
    normalize = normalization(ckpt)
    g = torch.Generator().manual_seed(0)
    shape = tuple(ckpt.get("input_size", (3, 32, 32)))
    raw = torch.randint(0, 256, (CHECK_BATCH, *shape), generator=g, dtype=torch.uint8)
    norm = normalize(raw)
    raw_input = nn.Sequential(normalize, model)  # uint8 in: the normalization in the graph
    module, x = (raw_input, raw) if input_kind == "raw" else (model, norm)
    meta = {
        "cifarlab_export": "1",
        "model": ckpt["model"]["name"],
        "input": input_kind,
        "classes": json.dumps(ckpt["classes"]),
        "mean": json.dumps(ckpt["mean"]),
        "std": json.dumps(ckpt["std"]),
    }
    with torch.no_grad():
        example = x[:2].contiguous()
        data = (_to_onnx if fmt == "onnx" else _to_torchscript)(module.eval(), example, meta)
        expected = model(norm.contiguous())  # raw input is compared with normalized PyTorch
    got = run_exported(data, fmt, x.contiguous())
    diff = float((got.float() - expected).abs().max())
    if not diff <= TOLERANCE:
        raise CifarlabError(
            f"the exported {fmt} model differs from PyTorch by up to {diff:.3g} "
            f"(tolerance {TOLERANCE:g}); nothing written"
        )
    out = Path(out)
    check_destination(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, data)
    except OSError as e:
        raise CifarlabError(f"cannot write {out}: {e.strerror}") from None
    return {
        "path": str(out),
        "format": fmt,
        "input": input_kind,
        "bytes": len(data),
        "check_batch": CHECK_BATCH,
        "max_abs_diff": diff,
    }
