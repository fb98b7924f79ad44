"""Models from timm (pytorch-image-models), named `timm:NAME`: an optional extra,
`pip install "cifarlab[timm]"`.

    build("timm:resnet18", num_classes=10, in_channels=3, image_size=32)
    == timm.create_model("resnet18", num_classes=10, in_chans=3, pretrained=False)

Models that take an image size (ViT, DeiT, Swin: their patch grid is fixed at 224 pixels)
get the data's (img_size=32 for CIFAR-10); the others take any size. Weights are random:
cifarlab never downloads. The `timm:` prefix is what makes a name a timm model (a plugin
reference also has a colon: see model_registry.is_reference). timm is imported only when a
model is built or listed; checking a name's form imports nothing.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from typing import Any

from torch import nn

from cifarlab.errors import CifarlabError

PREFIX = "timm:"
INSTALL = 'pip install "cifarlab[timm]"'


def is_timm(name: str) -> bool:
    """Whether `name` names a timm model (`timm:NAME`)."""
    return name.startswith(PREFIX)


def _missing() -> CifarlabError:
    return CifarlabError(f"timm models need the timm extra: {INSTALL}")


def _check_form(arch: str) -> None:
    if not arch or any(c.isspace() for c in arch) or ":" in arch:
        raise CifarlabError(
            f"{PREFIX + arch!r} is not a timm model name: give timm:NAME, e.g. timm:resnet18 "
            "(`cifarlab models --timm PATTERN` lists them)"
        )


def check_timm_name(name: str) -> None:
    """Reject `timm:` without a name (or with a hub address: cifarlab never downloads), or
    with timm not installed. Imports nothing: whether timm knows the name is checked when
    the model is built."""
    _check_form(name.removeprefix(PREFIX))
    if importlib.util.find_spec("timm") is None:
        raise _missing()


def _timm() -> Any:
    try:
        import timm  # lazy: optional extra
    except ImportError:
        raise _missing() from None
    return timm


def timm_version() -> str | None:
    try:
        return importlib.metadata.version("timm")
    except importlib.metadata.PackageNotFoundError:
        return None


def _unknown(arch: str, timm: Any) -> CifarlabError:
    close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.75)
    hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
    return CifarlabError(
        f"unknown timm model {arch!r}{hint} (`cifarlab models --timm PATTERN` lists them)"
    )


def create(arch: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """timm.create_model(arch) for data of this shape, random weights; with
    img_size=image_size where the model takes one."""
    _check_form(arch)
    timm = _timm()
    if not timm.is_model(arch):
        raise _unknown(arch, timm)
    args = dict(num_classes=num_classes, in_chans=in_channels, pretrained=False)
    try:
        return timm.create_model(arch, img_size=image_size, **args)
    except TypeError as e:
        if "img_size" not in str(e):  # some other failure: not about the image size
            raise
    return timm.create_model(arch, **args)


def timm_builder(name: str) -> Callable[..., nn.Module]:
    """The builder `(num_classes, in_channels, image_size) -> nn.Module` of `timm:NAME`."""
    arch = name.removeprefix(PREFIX)

    def build(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
        return create(arch, num_classes, in_channels, image_size)

    build.__doc__ = describe(name)
    return build


def describe(name: str) -> str:
    return (
        f"timm's {name.removeprefix(PREFIX)} (timm {timm_version() or 'not installed'}), "
        "random weights; no recipe of its own: the option defaults"
    )


def list_timm(pattern: str) -> list[str]:
    """timm's model names matching `pattern`: a shell-style pattern (resnet*), or, without
    wildcards, any part of a name (resnet1: resnet10t, resnet18, ...)."""
    timm = _timm()
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    return timm.list_models(pattern)
