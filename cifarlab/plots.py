"""Figures as PNG files. Matplotlib runs headless (Agg); every function writes one file."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cifarlab.files import atomic_write_bytes  # noqa: E402


def _epoch_axis(ax) -> None:
    """Epochs are whole numbers: ticks only there (at most about 10 of them)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True, min_n_ticks=1))


def _save(fig, path: Path) -> Path:
    """Write the figure atomically (cifarlab.files), so that two processes writing the same
    figure, or a kill, never leave half a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    png = io.BytesIO()
    fig.savefig(png, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    atomic_write_bytes(path, png.getvalue())
    return path


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
            ax.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None,
                      vmin=0, vmax=255, interpolation="nearest")  # fmt: skip
        ax.set_title(classes[k], fontsize=10 if len(classes) <= 20 else 7)
    fig.suptitle(title)
    return _save(fig, path)


def class_distribution(counts: list[int], classes: list[str], title: str, path: Path) -> Path:
    """Bar chart of images per class, each bar labelled with its count (up to 20 classes;
    beyond that the chart widens and the class names get small)."""
    many = len(classes) > 20
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * len(classes)), 3.8))
    bars = ax.bar(classes, counts, color="#4C72B0")
    if not many:
        ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=8, padding=2)
    ax.set_ylabel("images")
    ax.set_ylim(0, max(counts) * 1.15 if counts and max(counts) else 1)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=90 if many else 35, labelsize=6 if many else 10)
    return _save(fig, path)


def training_curves(metrics: list[dict], path: Path, title: str = "") -> Path:
    """Loss and accuracy per epoch, train vs validation (the study's figures 6 and 7)."""
    epochs = [r["epoch"] for r in metrics]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((ax1, "loss", "loss"), (ax2, "acc", "accuracy (%)")):
        scale = 100 if key == "acc" else 1
        ax.plot(epochs, [scale * r[f"train_{key}"] for r in metrics], "o-", label="train")
        val = [(r["epoch"], r[f"val_{key}"]) for r in metrics if r.get(f"val_{key}") is not None]
        if val:  # runs without a validation split (--val-from none) have none
            ax.plot([e for e, _ in val], [scale * y for _, y in val], "s-", label="validation")
        _epoch_axis(ax)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title}: loss and accuracy" if title else "loss and accuracy")
    return _save(fig, path)


def sweep_curves(metrics: list[list[dict]], labels: list[str], path: Path, title: str) -> Path:
    """Validation accuracy and loss per epoch, one line per swept value."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for rows, label in zip(metrics, labels, strict=True):
        epochs = [r["epoch"] for r in rows]
        ax1.plot(epochs, [100 * r["val_acc"] for r in rows], "o-", label=label)
        ax2.plot(epochs, [r["val_loss"] for r in rows], "o-", label=label)
    for ax, name in ((ax1, "validation accuracy (%)"), (ax2, "validation loss")):
        _epoch_axis(ax)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def seed_results(rows: list[dict], stats: dict, path: Path) -> Path:
    """Test accuracy per seed, with the mean and its 95% confidence interval; the y-axis
    holds every bar top and the whole interval, with a margin."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    seeds = [str(r["seed"]) for r in rows]
    accs = [100 * r["test_acc"] for r in rows]
    bars = ax.bar(seeds, accs, color="#4C72B0")
    ax.bar_label(bars, labels=[f"{a:.2f}" for a in accs], fontsize=8, padding=2)
    ax.axhline(100 * stats["mean"], color="#C44E52", label=f"mean {100 * stats['mean']:.2f}%")
    shown = list(accs)
    if stats.get("ci95_low") is not None:
        band = (100 * stats["ci95_low"], 100 * stats["ci95_high"])
        ax.axhspan(*band, color="#C44E52", alpha=0.15, label="95% CI of the mean")
        shown += band
    lo, hi = min(shown), max(shown)
    margin = max(1.0, 0.12 * (hi - lo))
    ax.set_ylim(max(0.0, lo - margin), min(100.0, hi + margin))
    ax.set_xlabel("seed")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy per seed")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def epoch_study(metrics: list[dict], found: dict, path: Path) -> Path:
    """Train and validation loss over a long run, the best epoch marked (study's Fig. 5)."""
    epochs = [r["epoch"] for r in metrics]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [r["train_loss"] for r in metrics], "o-", label="train")
    ax1.plot(epochs, [r["val_loss"] for r in metrics], "s-", label="validation")
    ax2.plot(epochs, [100 * r["train_acc"] for r in metrics], "o-", label="train")
    ax2.plot(epochs, [100 * r["val_acc"] for r in metrics], "s-", label="validation")
    for ax in (ax1, ax2):
        ax.axvline(found["best_epoch"], color="#C44E52", ls="--",
                   label=f"lowest val loss: epoch {found['best_epoch']}")  # fmt: skip
        if found.get("gap_epoch"):
            ax.axvline(found["gap_epoch"], color="grey", ls=":",
                       label=f"gap opens: epoch {found['gap_epoch']}")  # fmt: skip
        _epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("loss")
    ax2.set_ylabel("accuracy (%)")
    fig.suptitle("Epoch study: where validation stops improving")
    return _save(fig, path)


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
            ax.text(j, i, f"{v:,}", ha="center", va="center", fontsize=7, color=colour)
    size = 8 if n <= 20 else 5
    ax.set_xticks(range(n), classes, rotation=40 if n <= 20 else 90, ha="right", fontsize=size)
    ax.set_yticks(range(n), classes, fontsize=size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="images")
    ax.set_title(title or "Confusion matrix")
    return _save(fig, path)
