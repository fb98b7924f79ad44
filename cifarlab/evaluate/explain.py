"""Grad-CAM: where in an image the model looks when it picks a class.

Grad-CAM weights each channel of a convolutional layer's output by the mean gradient of a
class's logit with respect to it, sums the channels and keeps the positive part: a coarse
map (the layer's resolution) of the regions that raise that class's score, upsampled to the
image. Computed with captum's LayerGradCam on the last convolution that trains (the fast
model's first conv is a frozen whitening layer and is skipped), or on the one named.

    maps = gradcam(model, normalize(images), predicted)      # (N, H, W) in [0, 1]
    gradcam_figure(images, maps, None, None, predicted, probs, classes, path, title)
    rows, errors, figures = explain_files(model, normalize, files, classes, out_dir)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from cifarlab.data.images import load_image
from cifarlab.errors import CifarlabError
from cifarlab.report.image_figures import gradcam_figure
from cifarlab.training.precision import Precision

__all__ = [
    "FIGURE_ROWS",
    "conv_layers",
    "explain_files",
    "gradcam",
    "gradcam_figure",
    "last_conv_layer",
]

CHUNK = 64  # images per Grad-CAM pass: bounds the memory the activations and gradients take
FIGURE_ROWS = 50  # images per figure: more go to gradcam-2.png, gradcam-3.png, ...


def conv_layers(model: nn.Module) -> list[str]:
    """The names (as model.named_modules() gives them) of every nn.Conv2d, in order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def _frozen(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(weight, torch.Tensor) and not weight.requires_grad


def last_conv_layer(model: nn.Module, layer: str | None = None) -> tuple[str, nn.Module]:
    """The layer Grad-CAM explains: `layer` by name, else the last nn.Conv2d that trains
    (frozen ones, whose weight does not require grad, are skipped; where every conv is
    frozen, the last conv)."""
    modules = dict(model.named_modules())
    convs = conv_layers(model)
    if not convs:
        raise CifarlabError(
            "Grad-CAM needs a model with a convolutional layer; "
            f"this model ({type(model).__name__}) has none"
        )
    if layer is not None:
        if layer not in convs:
            shown = ", ".join(convs[:20]) + (", ..." if len(convs) > 20 else "")
            raise CifarlabError(
                f"--layer {layer!r} is not a convolutional layer of the model; "
                f"its conv layers: {shown}"
            )
        return layer, modules[layer]
    training = [name for name in convs if not _frozen(modules[name])]
    name = (training or convs)[-1]
    return name, modules[name]


def _check_inputs(x: torch.Tensor, targets: torch.Tensor) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise CifarlabError(
            f"gradcam takes normalized float images (N, C, H, W), not a {x.dtype} tensor of "
            f"shape {tuple(x.shape)}; pass the model's input (normalize the images first)"
        )
    if targets.shape != (x.shape[0],):
        raise CifarlabError(
            f"gradcam needs one class index per image: {x.shape[0]} images but targets of "
            f"shape {tuple(targets.shape)}; pass a (N,) tensor of class indices"
        )


def gradcam(
    model: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    layer: str | None = None,
    precision: Precision | None = None,
) -> torch.Tensor:
    """Grad-CAM maps of normalized images `x` (N, C, H, W, on the model's device) for the
    class `targets[i]` of each image: float32 (N, H, W) on the CPU, each map ReLU'd,
    upsampled bilinearly to H x W and divided by its maximum (an all-zero map stays zero).

    The model runs in eval mode (its mode is restored afterwards); its weights and their
    .grad are left untouched (captum takes the gradient of the layer's output only).
    precision: what the model computes in (default fp32), as predict runs it.
    """
    _check_inputs(x, targets)
    _, module = last_conv_layer(model, layer)
    was_training = model.training
    model.eval()
    cam = LayerGradCam(model, module)
    maps = []
    try:
        with torch.enable_grad(), _autocast(precision):
            for start in range(0, len(x), CHUNK):
                xs = x[start : start + CHUNK].detach()
                ts = targets[start : start + CHUNK].to(xs.device, torch.long)
                coarse = cam.attribute(xs, target=ts, relu_attributions=True)
                fine = LayerAttribution.interpolate(coarse, tuple(x.shape[-2:]), "bilinear")
                maps.append(fine.detach().float().cpu()[:, 0])
    finally:
        model.train(was_training)
    if not maps:
        return torch.zeros(0, *x.shape[-2:])
    out = torch.cat(maps).clamp(min=0)
    peak = out.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, out / peak.clamp(min=1e-30), 0.0).clamp(max=1)


def _autocast(precision: Precision | None) -> AbstractContextManager:
    return precision.autocast() if precision is not None else nullcontext()


@torch.no_grad()
def _predict(
    model: nn.Module, x: torch.Tensor, precision: Precision | None
) -> tuple[list[int], list[float]]:
    was_training = model.training
    model.eval()
    try:
        with _autocast(precision):
            logits = torch.cat([model(x[s : s + CHUNK]).float() for s in range(0, len(x), CHUNK)])
        probs = logits.softmax(1)
    finally:
        model.train(was_training)
    best = probs.max(1)
    return best.indices.tolist(), best.values.tolist()


def _load_all(files: Sequence[Path], shape: Sequence[int]) -> tuple[list, list[str]]:
    loaded, errors = [], []
    for f in files:
        try:
            loaded.append((str(f), load_image(f, shape[1], shape[0])))
        except CifarlabError as e:
            errors.append(str(e))
    return loaded, errors


def explain_files(
    model: nn.Module,
    normalize: nn.Module,
    files: Sequence[Path],
    classes: list[str],
    out_dir: Path,
    layer: str | None = None,
    input_size: Sequence[int] = (3, 32, 32),
    precision: Precision | None = None,
) -> tuple[list[dict], list[str], list[Path]]:
    """`cifarlab explain`: read image files as predict does (resized to the model's
    `input_size`), predict each and draw the Grad-CAM of its predicted class. `normalize`
    turns uint8 images on the model's device into the model's input. Writes gradcam.png
    (then gradcam-2.png, ... for more than FIGURE_ROWS images) into `out_dir` (created).
    Returns a row per image read (file, class, index, probability), an error line per file
    that could not be read, and the figures written. precision: what the model computes
    in, for the prediction and the map (default fp32); pass the run's, as predict uses."""
    layer_name, _ = last_conv_layer(model, layer)
    loaded, errors = _load_all(files, input_size)
    if not loaded:
        return [], errors, []
    images = torch.from_numpy(np.stack([a for _, a in loaded]))
    x = normalize(images.to(next(model.parameters()).device))
    preds, probs = _predict(model, x, precision)
    maps = gradcam(model, x, torch.tensor(preds), layer_name, precision)
    rows = [
        {"file": f, "class": classes[i], "index": i, "probability": p}
        for (f, _), i, p in zip(loaded, preds, probs, strict=True)
    ]
    title = f"Grad-CAM of layer {layer_name}: where the model looks for its prediction"
    figures = []
    for page, s in enumerate(range(0, len(rows), FIGURE_ROWS), start=1):
        e, name = s + FIGURE_ROWS, "gradcam.png" if page == 1 else f"gradcam-{page}.png"
        path = Path(out_dir) / name
        args = (images[s:e], maps[s:e], None, None, preds[s:e], probs[s:e], classes, path, title)
        figures.append(gradcam_figure(*args))
    return rows, errors, figures
