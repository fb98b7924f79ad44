"""The built-in models: plain torch modules, each made by a builder function
`(num_classes, in_channels, image_size) -> nn.Module` that fits the data's shape.

Which name builds which model (and models from outside the package) is the business of
cifarlab.models.registry; nothing here knows about names, recipes or files.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.errors import CifarlabError


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


def _too_small(name: str, image_size: int, least: int) -> None:
    if image_size < least:
        raise CifarlabError(
            f"the {name} CNN needs images of at least {least}x{least} pixels, not "
            f"{image_size}x{image_size}; use a larger --image-size"
        )


def base_cnn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """Conv(C->32) Conv(32->64) ReLU MaxPool | Conv(64->128) Conv(128->128) ReLU MaxPool | FC.

    3x3 kernels, stride 1, padding 0: 32 -> 30 -> 28 -> 14 -> 12 -> 10 -> 5; 128*5*5 = 3200
    (28 -> ... -> 4: 2048).
    Initialization: PyTorch's default (Kaiming-uniform with a=sqrt(5)), as in the study's
    lecture code. Kaiming-normal with the ReLU gain makes this net (two convs in a row
    with no activation between them, no BatchNorm) diverge at lr 0.03: measured, NaN
    loss within 6 steps.
    """
    _too_small("base", image_size, 16)
    side = ((image_size - 4) // 2 - 4) // 2
    model = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3),
        nn.Conv2d(128, 128, 3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128 * side * side, num_classes),
    )
    return model


def _conv_bn_gelu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.GELU()]


def improved_cnn(
    num_classes: int = 10, in_channels: int = 3, image_size: int = 32, dropout: float = 0.2
) -> nn.Module:
    """Three blocks (C->64->128, 128->256->256, 256->512) of 3x3 convs, padding 1, each
    conv followed by BatchNorm and GELU, each block by MaxPool(2) and Dropout; then
    512 * (size // 8)^2 (8192 at 32x32) -> 1024 (GELU, Dropout) -> classes. Kaiming init.
    """
    _too_small("improved", image_size, 8)
    side = image_size // 8
    model = nn.Sequential(
        *_conv_bn_gelu(in_channels, 64),
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
        nn.Linear(512 * side * side, 1024),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(1024, num_classes),
    )
    return kaiming_init(model, "relu")


# ------------------------------------------------------------------------------ ResNet-18


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers (the first with ReLU, the first maybe strided), added to the
    input (through a 1x1 conv + BN where the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def resnet18(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """ResNet-18 for 32x32 images: a 3x3 stride-1 stem (C->64, BN, ReLU), no max-pool, four
    stages of two basic blocks (64, 128, 256, 512; stride 2 at the first block of stages
    2-4, with a 1x1 conv + BN shortcut), global average pool, linear head. Feature maps
    32 -> 32 -> 16 -> 8 -> 4 (28 -> 28 -> 14 -> 7 -> 4). 11,173,962 parameters for 10
    classes at 3x32x32. Kaiming init.
    """
    _too_small("resnet18", image_size, 8)
    widths = (64, 128, 256, 512)
    blocks: list[nn.Module] = []
    cin = 64
    for i, width in enumerate(widths):
        blocks += [BasicBlock(cin, width, stride=1 if i == 0 else 2), BasicBlock(width, width)]
        cin = width
    model = nn.Sequential(
        nn.Conv2d(in_channels, 64, 3, padding=1, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        *blocks,
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(widths[-1], num_classes),
    )
    return kaiming_init(model, "relu")


# ------------------------------------------------------------------------- the fast model


class Scale(nn.Module):
    """Multiply by a constant (the fast model's logit scale)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor:.4g}"


def _bn_no_scale(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with a learned shift only (the scale stays 1: the next conv can scale),
    a tiny eps and a fast-moving running average (momentum 0.4)."""
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


def _conv_identity_init(cin: int, cout: int) -> nn.Conv2d:
    """3x3 'same' conv without bias; its first min(cin, cout) filters start as the
    identity (Dirac) so that each block starts close to passing its input through."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(cin, cout)])
    return conv


def _fast_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        _conv_identity_init(cin, cout),
        nn.MaxPool2d(2),
        _bn_no_scale(cout),
        nn.GELU(),
        _conv_identity_init(cout, cout),
        _bn_no_scale(cout),
        nn.GELU(),
    )


class FastNet(nn.Sequential):
    """The airbench94-style network: a frozen 2x2 patch-whitening conv (3 -> 24: 12
    whitening filters and their negatives) and GELU, three blocks conv-pool-BN-GELU-conv-
    BN-GELU (widths 64, 256, 256), max-pool to 1x1, a linear layer without bias and a
    fixed logit scale. 32 -> 31 (whitening) -> 15 -> 7 -> 3 -> 1 (28 -> 27 -> 13 -> 6 -> 3).
    """

    def __init__(
        self,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (64, 256, 256),
        scale: float = 1 / 9,
        patch: int = 2,
        in_channels: int = 3,
        image_size: int = 32,
    ) -> None:
        _too_small("fast", image_size, 9)
        side = (image_size - patch + 1) // 8  # after the whitening conv and three pools
        whiten_width = 2 * in_channels * patch * patch
        whiten = nn.Conv2d(in_channels, whiten_width, patch, padding=0, bias=True)
        whiten.weight.requires_grad_(False)
        nn.init.zeros_(whiten.bias)
        super().__init__(
            whiten,
            nn.GELU(),
            _fast_block(whiten_width, widths[0]),
            _fast_block(widths[0], widths[1]),
            _fast_block(widths[1], widths[2]),
            nn.MaxPool2d(side),
            nn.Flatten(),
            nn.Linear(widths[2], num_classes, bias=False),
            Scale(scale),
        )

    @property
    def whitening(self) -> nn.Conv2d:
        return self[0]

    @property
    def blocks(self) -> list[nn.Module]:
        """The three conv blocks, input to output (what --freeze-from freezes)."""
        return [self[2], self[3], self[4]]

    @torch.no_grad()
    def init_whitening(self, images: torch.Tensor, eps: float = 5e-4, chunk: int = 500) -> None:
        """Set the whitening filters from normalized training images (N, C, H, W).

        With C the (uncentered) covariance of all patch x patch patches and C = V diag(l) V^T,
        the filters are the rows of diag(1 / sqrt(l + eps)) V^T (and their negatives): the
        outputs on those patches have covariance diag(l / (l + eps)), nearly the identity.
        The covariance is summed in float64 over chunks of images (any device), the
        eigendecomposition done on the CPU in float64.
        """
        conv = self.whitening
        k = conv.kernel_size[0]
        d = conv.in_channels * k * k
        cov = torch.zeros(d, d, dtype=torch.float64, device=images.device)
        count = 0
        for start in range(0, len(images), chunk):
            x = images[start : start + chunk].float()
            p = F.unfold(x, k).transpose(1, 2).reshape(-1, d)  # (patches, c*k*k)
            cov += (p.T @ p).double()
            count += p.shape[0]
        cov = (cov / max(count, 1)).cpu()
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        order = eigenvalues.argsort(descending=True)
        eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
        filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps).unsqueeze(1)
        filters = filters.reshape(d, conv.in_channels, k, k)
        weight = torch.cat([filters, -filters]).to(conv.weight.dtype)
        conv.weight.copy_(weight.to(conv.weight.device))


def fast_cnn(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    return FastNet(num_classes, in_channels=in_channels, image_size=image_size)
