"""What the audit compares images by: the trained model's penultimate features (the input
of its last nn.Linear, or the output of the layer named by --layer), or the pixels (after
the run's normalization); each image's vector L2-normalized, so that cosine distance is
1 - a dot product."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.data import Normalize, Split
from cifarlab.errors import CifarlabError
from cifarlab.evaluate.trained import Trained
from cifarlab.training.batches import DeviceLoader


def feature_layer(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Module, bool]:
    """(name, module, read its input): the last nn.Linear's input by default, else the
    output of the module named `layer`."""
    modules = dict(model.named_modules())
    names = ", ".join(n for n in list(modules)[1:40] if n)
    if layer is not None:
        if layer not in modules or not layer:
            raise CifarlabError(
                f"--layer {layer!r} is not a module of the model; its modules: {names}"
            )
        return layer, modules[layer], False
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    if not linears:
        raise CifarlabError(
            "the model has no nn.Linear whose input would be its penultimate features; name "
            f"the layer to read with --layer NAME (its modules: {names})"
        )
    return linears[-1], modules[linears[-1]], True


@torch.no_grad()
def model_features(
    t: Trained, split: Split, layer: str | None = None, batch_size: int = 500
) -> torch.Tensor:
    """(N, D) float32 on the CPU: each image's features, L2-normalized."""
    _, module, read_input = feature_layer(t.model, layer)
    caught: list[torch.Tensor] = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        caught.append((inputs[0] if read_input else output).float().flatten(1))

    handle = module.register_forward_hook(hook)
    out = []
    try:
        t.model.eval()
        for x, _ in DeviceLoader(split, batch_size, t.device, t.normalize):
            caught.clear()
            with t.precision.autocast():
                t.model(x)
            out.append(F.normalize(caught[-1], dim=1).cpu())
    finally:
        handle.remove()
    return torch.cat(out)


@torch.no_grad()
def pixel_features(split: Split, normalize: Normalize) -> torch.Tensor:
    """(N, C*H*W) float32: each image normalized as the run normalizes it, flattened and
    L2-normalized (a model-free comparison)."""
    out = []
    for start in range(0, len(split), 2000):
        x = split.images[start : start + 2000]
        out.append(F.normalize(normalize(x).float().flatten(1), dim=1))
    return torch.cat(out)
