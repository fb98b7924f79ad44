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


def epoch_axis(ax) -> None:
    """Epochs are whole numbers: ticks only there (at most about 10 of them)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True, min_n_ticks=1))


def save_figure(fig, path: Path) -> Path:
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
    return save_figure(fig, path)


def group_comparison(groups: list[dict], metric: str, path: Path) -> Path:
    """Each group's runs as points, with the group's mean and its 95% interval (cifarlab
    compare)."""
    scale, unit = (100, " (%)") if metric.endswith("_acc") else (1, "")
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(groups) + 2), 3.8))
    for i, g in enumerate(groups):
        values = [scale * v for v in g["values"]]
        offsets = [0.08 * (k - (len(values) - 1) / 2) for k in range(len(values))]
        ax.plot([i + o for o in offsets], values, "o", color="#4C72B0", alpha=0.7)
        mean = scale * g["mean"]
        if g["ci95"] is not None:
            low, high = (scale * c for c in g["ci95"])
            ax.errorbar(i + 0.3, mean, yerr=[[mean - low], [high - mean]], fmt="s",
                        color="#C44E52", capsize=4)  # fmt: skip
        else:
            ax.plot(i + 0.3, mean, "s", color="#C44E52")
    ax.set_xticks(range(len(groups)), [g["name"] for g in groups], rotation=20, ha="right")
    ax.set_ylabel(metric.replace("_", " ") + unit)
    ax.set_title(f"{metric}: runs (blue), mean and 95% interval (red)")
    ax.margins(x=0.15, y=0.15)
    return save_figure(fig, path)


def reliability_diagram(panels: list[tuple[str, dict]], path: Path) -> Path:
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration, the
    gap shaded red, ECE in each panel's title; one panel per (title, calibration) pair."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    for ax, (title, cal) in zip(axes.flat, panels, strict=True):
        for b in cal["bins"]:
            if not b["count"]:
                continue
            width, mid = b["hi"] - b["lo"], (b["lo"] + b["hi"]) / 2
            ax.bar(mid, b["accuracy"], width=width, color="#4C72B0", edgecolor="white")
            low, high = sorted((b["accuracy"], b["confidence"]))
            ax.bar(mid, high - low, bottom=low, width=width, color="#C44E52", alpha=0.35,
                   edgecolor="#C44E52", hatch="//")  # fmt: skip
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)",
               ylabel="accuracy", title=f"{title}: ECE {100 * cal['ece']:.2f}%")  # fmt: skip
    axes.flat[0].legend(handles=[plt.Rectangle((0, 0), 1, 1, color="#4C72B0"),
                                 plt.Rectangle((0, 0), 1, 1, color="#C44E52", alpha=0.35)],
                        labels=["accuracy", "gap to confidence"], loc="upper left",
                        fontsize=8)  # fmt: skip
    return save_figure(fig, path)


def image_grid(images: torch.Tensor, captions: list[str], path: Path, title: str) -> Path:
    """Images (uint8, N x C x H x W) in a grid, each with a caption of up to two lines."""
    n = len(images)
    cols = min(8, max(n, 1))
    rows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.55, rows * 1.95), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        image = images[k].permute(1, 2, 0).numpy()
        grey = image.shape[2] == 1
        ax.imshow(image[..., 0] if grey else image, cmap="gray" if grey else None,
                  vmin=0, vmax=255, interpolation="nearest")  # fmt: skip
        ax.set_title(captions[k], fontsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def robustness_curves(results: dict[str, dict], path: Path, title: str) -> Path:
    """Accuracy against severity, one panel per corruption family, a line per corruption
    (and per model: models differ by line style), the clean accuracy at severity 0."""
    first = next(iter(results.values()))
    families = sorted(set(first["families"].values()),
                      key=["noise", "blur", "weather", "digital"].index)  # fmt: skip
    fig, axes = plt.subplots(1, len(families), figsize=(3.6 * len(families), 3.6),
                             squeeze=False, sharey=True)  # fmt: skip
    styles = ["-", "--", ":", "-."]
    for ax, family in zip(axes.flat, families, strict=True):
        for m, (model, r) in enumerate(results.items()):
            names = [n for n, f in r["families"].items() if f == family]
            for k, name in enumerate(names):
                sev = [0, *map(int, r["corruptions"][name])]
                acc = [r["clean_acc"], *r["corruptions"][name].values()]
                ax.plot(sev, [100 * a for a in acc], styles[m % 4], marker="o", ms=3,
                        color=f"C{k}", label=f"{name}" + (f" ({model})" if len(results) > 1
                                                         else ""))  # fmt: skip
        ax.set(title=family, xlabel="severity (0: clean)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=6)
    axes.flat[0].set_ylabel("accuracy (%)")
    fig.suptitle(title, y=1.04)
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
        epoch_axis(ax)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{title}: loss and accuracy" if title else "loss and accuracy")
    return save_figure(fig, path)


def sweep_curves(metrics: list[list[dict]], labels: list[str], path: Path, title: str) -> Path:
    """Validation accuracy and loss per epoch, one line per swept value."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for rows, label in zip(metrics, labels, strict=True):
        epochs = [r["epoch"] for r in rows]
        ax1.plot(epochs, [100 * r["val_acc"] for r in rows], "o-", label=label)
        ax2.plot(epochs, [r["val_loss"] for r in rows], "o-", label=label)
    for ax, name in ((ax1, "validation accuracy (%)"), (ax2, "validation loss")):
        epoch_axis(ax)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


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
    return save_figure(fig, path)


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
        epoch_axis(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_ylabel("loss")
    ax2.set_ylabel("accuracy (%)")
    fig.suptitle("Epoch study: where validation stops improving")
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
            ax.text(j, i, f"{v:,}", ha="center", va="center", fontsize=7, color=colour)
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
    fig, axes = plt.subplots(n, cols, figsize=(1.25 * cols + 0.6, 1.45 * n + 0.7),
                             squeeze=False)  # fmt: skip
    for i in range(n):
        image = _panel(images[i], scale).numpy()
        maps = [maps_pred[i]] if cols == 2 else [maps_pred[i], maps_true[i]]
        axes[i, 0].imshow(image, interpolation="nearest")
        for ax, m in zip(axes[i, 1:], maps, strict=True):
            up = torch.nn.functional.interpolate(m[None, None].float(), size=image.shape[:2],
                                                 mode="bilinear", align_corners=False)  # fmt: skip
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


Curve = tuple[list[int], list[float], bool]


def search_curves(curves: list[Curve], metric: str, path: Path) -> Path:
    """A search's trials: (epochs, metric values, pruned) each; complete trials solid,
    pruned ones dashed, ending in a red cross where they were stopped."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for steps, values, pruned in curves:
        if pruned:
            ax.plot(steps, values, "--", color="0.6", lw=1)
            ax.plot(steps[-1:], values[-1:], "x", color="tab:red")
        else:
            ax.plot(steps, values, "-", lw=1.4, marker="o", ms=3)
    ax.set_ylabel(metric)
    ax.set_title("Learning curves of the trials (dashed, x: pruned)")
    epoch_axis(ax)
    return save_figure(fig, path)
