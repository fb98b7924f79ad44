"""The figures of images: samples per class, image grids with captions, the confusion
heatmap, and Grad-CAM maps over their images. Each writes one figure (save_figure)."""

from __future__ import annotations

from pathlib import Path

import torch

from cifarlab.report.canvas import plt, save_figure


def sample_grid(
    images: torch.Tensor, labels: torch.Tensor, classes: list[str], title: str, path: Path
) -> Path:
    """One sample image per class (the first of each), labelled: 5 columns for up to 20
    classes (2 x 5 for CIFAR-10), 10 for more (10 x 10 for CIFAR-100)."""
    cols = 5 if len(classes) <= 20 else 10
    rows = (len(classes) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(classes):
            continue
        hits = (labels == k).nonzero()
        if len(hits):
            image = images[int(hits[0])].permute(1, 2, 0).numpy()
            grey = image.shape[2] == 1
            ax.imshow(
                image[..., 0] if grey else image,
                cmap="gray" if grey else None,
                vmin=0,
                vmax=255,
                interpolation="nearest",
            )
        ax.set_title(classes[k], fontsize=10 if len(classes) <= 20 else 7)
    fig.suptitle(title)
    return save_figure(fig, path)


def image_grid(images: torch.Tensor, captions: list[str], path: Path, title: str) -> Path:
    """Images (uint8, N x C x H x W) in a grid of up to 8 columns, each with its caption (one
    line or more) above it. The grid is one picture with the captions written over its gaps
    (one Axes, not one per image: a grid of 40 draws in a fraction of the time)."""
    n, (c, h, w) = len(images), images.shape[1:]
    cols = min(8, max(n, 1))
    rows = max(1, (n + cols - 1) // cols)
    lines = max((caption.count("\n") + 1 for caption in captions), default=1)
    inch = 1.3 / w  # an image 1.3 inches wide, pixels square
    gap, top = round(0.1 / inch), round((0.14 * lines + 0.06) / inch)  # between, caption
    cell_w, cell_h = w + gap, h + top
    canvas = torch.full((rows * cell_h, cols * cell_w, c), 255, dtype=torch.uint8)
    corners = [((k // cols) * cell_h + top, (k % cols) * cell_w + gap // 2) for k in range(n)]
    for k, (y, x) in enumerate(corners):
        canvas[y : y + h, x : x + w] = images[k].permute(1, 2, 0)
    fig = plt.figure(figsize=(cols * cell_w * inch, rows * cell_h * inch + 0.35))
    # no layout engine, kept through savefig: a figure made with layout="none" has none at
    # all, and the first savefig's "tight" bbox then restores the rc default (constrained)
    fig.set_layout_engine("none")
    ax = fig.add_axes((0, 0, 1, rows * cell_h * inch / fig.get_figheight()))
    grey = c == 1
    ax.imshow(
        (canvas[..., 0] if grey else canvas).numpy(),
        cmap="gray" if grey else None,
        vmin=0,
        vmax=255,
        interpolation="nearest",
    )
    for (y, x), caption in zip(corners, captions, strict=False):
        ax.text(
            x + w / 2,
            y - 0.03 / inch,
            caption,
            ha="center",
            va="bottom",
            fontsize=7,
            linespacing=1.15,
        )
    ax.axis("off")
    fig.suptitle(title, y=1 - 0.08 / fig.get_figheight(), va="top")
    return save_figure(fig, path)


def confusion_heatmap(
    confusion: torch.Tensor | list[list[int]], classes: list[str], path: Path, title: str = ""
) -> Path:
    """Confusion matrix as a heat map (rows: true class, columns: predicted), counts in cells."""
    c = torch.as_tensor(confusion, dtype=torch.int64)
    n = len(classes)
    cell = 0.62 if n <= 20 else 0.16  # beyond 20 classes: no numbers, small names
    fig, ax = plt.subplots(figsize=(1.6 + cell * n, 1.0 + cell * 0.9 * n))
    im = ax.imshow(c.numpy(), cmap="Blues", vmin=0)
    top = int(c.max()) if c.numel() else 0
    for i in range(n if n <= 20 else 0):
        for j in range(n):
            v = int(c[i, j])
            colour = "white" if v > top / 2 else "black"
            text = ax.text(j, i, f"{v:,}", ha="center", va="center", fontsize=7, color=colour)
            text.set_in_layout(False)  # inside its cell: the layout need not measure it
    size = 8 if n <= 20 else 5
    ax.set_xticks(range(n), classes, rotation=40 if n <= 20 else 90, ha="right", fontsize=size)
    ax.set_yticks(range(n), classes, fontsize=size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="images")
    ax.set_title(title or "Confusion matrix")
    return save_figure(fig, path)


def _panel(image: torch.Tensor, scale: int) -> torch.Tensor:
    """uint8 (C, H, W) -> float (H*scale, W*scale, 3) in [0, 1], pixels kept sharp."""
    big = image.float().div(255).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    return big.expand(3, -1, -1).permute(1, 2, 0) if big.shape[0] == 1 else big.permute(1, 2, 0)


def gradcam_figure(
    images: torch.Tensor,
    maps_pred: torch.Tensor,
    maps_true: torch.Tensor | None,
    labels: list[int] | None,
    preds: list[int],
    probs: list[float],
    classes: list[str],
    path: Path,
    title: str,
) -> Path:
    """One row per image: the image (uint8 (N, C, H, W)), the Grad-CAM map (N, H, W) in
    [0, 1] of the predicted class over it and, where labels are known, that of the true
    class; each panel about 100 px (the image upsampled sharp, the map smoothly)."""
    n, cols = len(images), 2 if maps_true is None or labels is None else 3
    scale = max(1, round(96 / images.shape[-1]))
    fig, axes = plt.subplots(n, cols, figsize=(1.25 * cols + 0.6, 1.45 * n + 0.7), squeeze=False)
    for i in range(n):
        image = _panel(images[i], scale).numpy()
        maps = [maps_pred[i]] if cols == 2 else [maps_pred[i], maps_true[i]]
        axes[i, 0].imshow(image, interpolation="nearest")
        for ax, m in zip(axes[i, 1:], maps, strict=True):
            up = torch.nn.functional.interpolate(
                m[None, None].float(), size=image.shape[:2], mode="bilinear", align_corners=False
            )
            ax.imshow(image, interpolation="nearest")
            ax.imshow(up[0, 0].clamp(0, 1).numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        caption = f"predicted: {classes[preds[i]]} ({probs[i]:.2f})"
        if labels is not None:
            caption = f"true: {classes[labels[i]]}, " + caption
        axes[i, 0].set_title(caption, loc="left", fontsize=8)
        for ax in axes[i]:
            ax.axis("off")
    heads = ["image", "map: predicted class", "map: true class"][:cols]
    fig.suptitle(f"{title}\n({' | '.join(heads)}; red: where it looks)", fontsize=9)
    return save_figure(fig, path)
