"""Figures as PNG files. Matplotlib runs headless (Agg); every function writes one file."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def sample_grid(
    images: torch.Tensor, labels: torch.Tensor, classes: list[str], title: str, path: Path
) -> Path:
    """One sample image per class (the first of each), labelled, in a 2 x 5 grid."""
    cols = 5
    rows = (len(classes) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9))
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(classes):
            continue
        hits = (labels == k).nonzero()
        if len(hits):
            ax.imshow(images[int(hits[0])].permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(classes[k], fontsize=10)
    fig.suptitle(title)
    return _save(fig, path)


def class_distribution(counts: list[int], classes: list[str], title: str, path: Path) -> Path:
    """Bar chart of images per class, each bar labelled with its count."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    bars = ax.bar(classes, counts, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=8, padding=2)
    ax.set_ylabel("images")
    ax.set_ylim(0, max(counts) * 1.15 if counts and max(counts) else 1)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=35)
    return _save(fig, path)


def training_curves(metrics: list[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train vs validation (the study's figures 6 and 7)."""
    epochs = [r["epoch"] for r in metrics]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((ax1, "loss", "loss"), (ax2, "acc", "accuracy (%)")):
        scale = 100 if key == "acc" else 1
        ax.plot(epochs, [scale * r[f"train_{key}"] for r in metrics], "o-", label="train")
        ax.plot(epochs, [scale * r[f"val_{key}"] for r in metrics], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
        if epochs:
            ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
    fig.suptitle(f"{title}: loss and accuracy" if title else "loss and accuracy")
    return _save(fig, path)
