"""Model registry: each model is one function that builds an nn.Module.

Add a model with::

    @register("mine", "one line that `cifarlab models` shows")
    def mine(num_classes: int = 10) -> nn.Module: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cifarlab.errors import CifarlabError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[..., nn.Module]


REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, description: str) -> Callable:
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        REGISTRY[name] = ModelSpec(name, description, fn)
        return fn

    return wrap


def build_model(name: str, **kwargs) -> nn.Module:
    if name not in REGISTRY:
        raise CifarlabError(f"unknown model {name!r}; choose one of: {', '.join(REGISTRY)}")
    return REGISTRY[name].build(**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def kaiming_init(model: nn.Module, nonlinearity: str = "relu") -> nn.Module:
    """Kaiming-normal weights (fan_in) for convs and linears, zero biases.

    GELU is close to ReLU for positive inputs, so the ReLU gain suits both.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity=nonlinearity)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


@register("base", "the study's base CNN: 4 convs, no padding, 3200 -> 10")
def base_cnn(num_classes: int = 10) -> nn.Module:
    """Conv(3->32) Conv(32->64) ReLU MaxPool | Conv(64->128) Conv(128->128) ReLU MaxPool | FC.

    3x3 kernels, stride 1, padding 0: 32 -> 30 -> 28 -> 14 -> 12 -> 10 -> 5; 128*5*5 = 3200.
    Initialization: PyTorch's default (Kaiming-uniform with a=sqrt(5)), as in the study's
    lecture code. Kaiming-normal with the ReLU gain makes this net (two convs in a row
    with no activation between them, no BatchNorm) diverge at lr 0.03: measured, NaN
    loss within 6 steps.
    """
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3),
        nn.Conv2d(128, 128, 3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128 * 5 * 5, num_classes),
    )
    return model


def _conv_bn_gelu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.GELU()]


@register("improved", "the study's improved CNN: 5 convs with BatchNorm, GELU, dropout")
def improved_cnn(num_classes: int = 10, dropout: float = 0.2) -> nn.Module:
    """Three blocks (3->64->128, 128->256->256, 256->512) of 3x3 convs, padding 1, each
    conv followed by BatchNorm and GELU, each block by MaxPool(2) and Dropout; then
    8192 -> 1024 (GELU, Dropout) -> classes. Kaiming initialization.
    """
    model = nn.Sequential(
        *_conv_bn_gelu(3, 64),
        *_conv_bn_gelu(64, 128),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        *_conv_bn_gelu(128, 256),
        *_conv_bn_gelu(256, 256),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        *_conv_bn_gelu(256, 512),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        nn.Flatten(),
        nn.Linear(512 * 4 * 4, 1024),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(1024, num_classes),
    )
    return kaiming_init(model, "relu")
