"""Which timm models run on 32x32 images, and at what resolution their last stage works.

    python benchmarks/timm_at_32.py [NAME ...]

For each model: timm.create_model(NAME, num_classes=10, pretrained=False) on a batch of two
3x32x32 images (eval mode, CPU), then again with img_size=32 where the first fails. Prints
whether it runs, the spatial size of its final feature map (forward_features), its
parameter count and the forward time of the batch; then a ResNet-18 given a CIFAR stem and
a ViT given 4x4 patches (what README suggests for models whose stems shrink 32x32 to 1x1).
"""

from __future__ import annotations

import argparse
import time

import timm
import torch

NAMES = [
    "resnet10t",
    "resnet18",
    "resnet50",
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "convnext_atto",
    "convnext_nano",
    "regnety_002",
    "densenet121",
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
    "swin_tiny_patch4_window7_224",
]


def feature_size(model: torch.nn.Module, x: torch.Tensor) -> str:
    """The final feature map's spatial size (HxW), or the token count of a transformer."""
    f = model.forward_features(x)
    if f.ndim == 4:  # NCHW, or NHWC (Swin)
        nhwc = f.shape[-1] == model.num_features and f.shape[1] != model.num_features
        return f"{f.shape[1]}x{f.shape[2]}" if nhwc else f"{f.shape[-2]}x{f.shape[-1]}"
    return f"{f.shape[1]} tokens"


def try_model(name: str, **kwargs) -> str:
    x = torch.zeros(2, 3, 32, 32)
    try:
        model = timm.create_model(name, num_classes=10, pretrained=False, **kwargs).eval()
        with torch.no_grad():
            start = time.perf_counter()
            out = model(x)
            seconds = time.perf_counter() - start
            size = feature_size(model, x)
    except Exception as e:
        return f"fails: {type(e).__name__}: {str(e).splitlines()[0][:90]}"
    params = sum(p.numel() for p in model.parameters())
    return f"runs, out {tuple(out.shape)}, features {size}, {params:,} params, {seconds:.2f} s"


def adapted() -> None:
    """The two fixes README suggests: a CIFAR stem for a ResNet, small patches for a ViT."""
    x = torch.zeros(2, 3, 32, 32)
    resnet = timm.create_model("resnet18", num_classes=10, pretrained=False)
    resnet.conv1 = torch.nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
    resnet.maxpool = torch.nn.Identity()
    vit = timm.create_model(
        "vit_tiny_patch16_224", num_classes=10, pretrained=False, img_size=32, patch_size=4
    )
    for name, model in (("resnet18, 3x3 stem, no max-pool", resnet), ("vit_tiny, patch 4", vit)):
        params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            print(f"{name:<30} features {feature_size(model.eval(), x)}, {params:,} params")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", default=NAMES)
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"timm {timm.__version__}, torch {torch.__version__}")
    for name in args.names:
        plain = try_model(name)
        print(f"{name:<30} {plain}")
        if plain.startswith("fails"):
            print(f"{'  img_size=32':<30} {try_model(name, img_size=32)}")
    if args.names == NAMES:
        adapted()


if __name__ == "__main__":
    main()
