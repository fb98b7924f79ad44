"""The figures of numbers: curves per epoch, sweeps, seeds, comparisons with intervals,
reliability and robustness. Every function writes one figure (PNG, and the vector formats
asked for) through canvas.save_figure; the figures of images are in image_figures.py."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import MaxNLocator

from cifarlab.report import style
from cifarlab.report.canvas import plt, save_figure
from cifarlab.report.style import series


def epoch_axis(ax) -> None:
    """Epochs are whole numbers: ticks only there (at most about 10 of them)."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True, min_n_ticks=1))


def metric_label(metric: str) -> str:
    """'test_acc' -> 'test accuracy (%)', 'val_loss' -> 'validation loss'."""
    words = metric.replace("val_", "validation_").replace("_acc", "_accuracy").split("_")
    return " ".join(words) + (" (%)" if metric.endswith("acc") else "")


def metric_scale(metric: str) -> float:
    """What a metric's values are multiplied by on a figure: 100 for an accuracy (in %)."""
    return 100.0 if metric.endswith("acc") else 1.0


def _scale(metric: str) -> tuple[float, tuple[float, float]]:
    """A metric's plotting scale and the range it can take: accuracy in %, losses >= 0."""
    if metric.endswith("acc"):
        return metric_scale(metric), (0.0, 100.0)
    return 1.0, (0.0, float("inf")) if "loss" in metric else (float("-inf"), float("inf"))


def _interval(ax, x: float, mean: float, low: float, high: float, bounds, k: int) -> bool:
    """A mean with its 95% interval as an error bar, cut to `bounds` (a cut end gets a
    triangle pointing past it); whether it was cut."""
    lo, hi, cut = style.clip(low, high, bounds)
    ax.errorbar(
        x,
        mean,
        yerr=[[mean - lo], [hi - mean]],
        fmt="D",
        ms=6,
        capsize=5,
        color=style.PALETTE[k % len(style.PALETTE)],
        zorder=3,
    )
    if low < bounds[0]:
        ax.plot(x, lo, "v", color=style.ACCENT, ms=7, zorder=4)
    if high > bounds[1]:
        ax.plot(x, hi, "^", color=style.ACCENT, ms=7, zorder=4)
    return cut


def group_comparison(groups: list[dict], metric: str, path: Path) -> Path:
    """Each group's runs as dots and its mean with the 95% interval as a bar beside them
    (cifarlab compare). A group of one run has no interval over seeds: where its test-set
    size is known, a hollow bar shows the 95% interval over its test images instead (the
    test set's spread alone), and its name says which it has."""
    scale, bounds = _scale(metric)
    fig, ax = plt.subplots(figsize=(max(4.8, 1.4 * len(groups) + 2.2), 3.8))
    cut = hollow = False
    names = []
    for i, g in enumerate(groups):
        values = [scale * v for v in g["values"]]
        offsets = [0.07 * (k - (len(values) - 1) / 2) for k in range(len(values))]
        colour = style.PALETTE[i % len(style.PALETTE)]
        ax.plot([i - 0.12 + o for o in offsets], values, "o", color=colour, alpha=0.75)
        images = g.get("test_images_ci95")
        if g["ci95"] is not None:
            low, high = (scale * c for c in g["ci95"])
            cut |= _interval(ax, i + 0.18, scale * g["mean"], low, high, bounds, i)
            names.append(g["name"])
        elif images is not None:
            low, high = (scale * c for c in images)
            mean = scale * g["mean"]
            ax.errorbar(
                i + 0.18,
                mean,
                yerr=[[mean - low], [high - mean]],
                fmt="D",
                ms=6,
                mfc="white",
                capsize=5,
                color=colour,
                ls="none",
                zorder=3,
            )
            hollow = True
            names.append(g["name"] + "\n(1 run: test images only)")
        else:
            names.append(g["name"] + "\n(1 run: no interval)")
    ax.set_xticks(range(len(groups)), names, rotation=15 if len(groups) > 3 else 0)
    ax.set_ylabel(metric_label(metric))
    notes = []
    if hollow:
        notes.append("hollow: a single run's interval over its test images, not over seeds")
    if cut:
        notes.append("a triangle: the interval runs past the metric's range and is cut there")
    ax.set_title(
        f"{metric_label(metric)}: runs (dots), mean and 95% interval (bars)"
        + "".join(f"\n({n})" for n in notes),
        fontsize=10 if notes else None,
    )
    ax.margins(x=0.12, y=0.12)
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
            ax.bar(mid, b["accuracy"], width=width, color=style.PALETTE[0], edgecolor="white")
            low, high = sorted((b["accuracy"], b["confidence"]))
            ax.bar(
                mid,
                high - low,
                bottom=low,
                width=width,
                color=style.ACCENT,
                alpha=0.35,
                edgecolor=style.ACCENT,
                hatch="//",
            )
        ax.plot([0, 1], [0, 1], "--", color=style.MUTED, lw=1, marker="none")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence (top probability)",
            ylabel="accuracy",
            title=f"{title}: ECE {100 * cal['ece']:.2f}%",
        )
    axes.flat[0].legend(
        handles=[
            plt.Rectangle((0, 0), 1, 1, color=style.PALETTE[0]),
            plt.Rectangle((0, 0), 1, 1, color=style.ACCENT, alpha=0.35),
        ],
        labels=["accuracy", "gap to confidence"],
        loc="upper left",
        fontsize=8,
    )
    return save_figure(fig, path)


def robustness_curves(results: dict[str, dict], path: Path, title: str) -> Path:
    """Accuracy against severity, one panel per corruption family, the clean accuracy at
    severity 0. One model: a colour and marker per corruption. Several: a colour and line
    style per model, a marker per corruption, one legend for each."""
    first = next(iter(results.values()))
    order = ["noise", "blur", "weather", "digital"]
    families = sorted(set(first["families"].values()), key=order.index)
    fig, axes = plt.subplots(
        1, len(families), figsize=(3.4 * len(families), 3.7), squeeze=False, sharey=True
    )
    several = len(results) > 1
    for ax, family in zip(axes.flat, families, strict=True):
        for m, r in enumerate(results.values()):
            names = [n for n, f in r["families"].items() if f == family]
            for k, name in enumerate(names):
                sev = [0, *map(int, r["corruptions"][name])]
                acc = [100 * a for a in (r["clean_acc"], *r["corruptions"][name].values())]
                look = series(m) if several else series(k)
                look["marker"] = style.MARKERS[k % len(style.MARKERS)]
                look["linestyle"] = style.LINES[m % len(style.LINES)]
                ax.plot(sev, acc, label=name.replace("_", " "), **look)
        if several:  # the corruptions by marker alone; the models get the figure's legend
            keys = [
                plt.Line2D([], [], color="0.3", marker=style.MARKERS[k % len(style.MARKERS)])
                for k in range(len(names))
            ]
            ax.legend(keys, [n.replace("_", " ") for n in names], loc="lower left", fontsize=7)
        else:
            ax.legend(loc="lower left", fontsize=7)
        ax.set(title=family, xlabel="severity (0: clean)", ylim=(0, 100))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.flat[0].set_ylabel("accuracy (%)")
    if several:
        keys = [
            # colour and line style only: a marker names a corruption, not a model
            plt.Line2D(
                [],
                [],
                **{**series(m), "marker": "none"},
                linestyle=style.LINES[m % len(style.LINES)],
            )
            for m in range(len(results))
        ]
        # below the panels: above them it ran into the title
        fig.legend(keys, list(results), loc="outside lower center", ncols=len(results))
    fig.suptitle(title)
    return save_figure(fig, path)


def class_distribution(counts: list[int], classes: list[str], title: str, path: Path) -> Path:
    """Bar chart of images per class, each bar labelled with its count (up to 20 classes;
    beyond that the chart widens and the class names get small)."""
    many = len(classes) > 20
    fig, ax = plt.subplots(figsize=(max(8, 0.16 * len(classes)), 3.8))
    bars = ax.bar(classes, counts, color=style.PALETTE[0])
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
        ax.plot(epochs, [scale * r[f"train_{key}"] for r in metrics], label="train", **series(0))
        val = [(r["epoch"], r[f"val_{key}"]) for r in metrics if r.get(f"val_{key}") is not None]
        if val:  # runs without a validation split (--val-from none) have none
            ax.plot(
                [e for e, _ in val], [scale * y for _, y in val], label="validation", **series(1)
            )
        epoch_axis(ax)
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(f"{title}: loss and accuracy per epoch" if title else "loss and accuracy")
    return save_figure(fig, path)


def sweep_curves(metrics: list[list[dict]], labels: list[str], path: Path, title: str) -> Path:
    """Validation accuracy and loss per epoch, one line per swept value."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, (rows, label) in enumerate(zip(metrics, labels, strict=True)):
        epochs = [r["epoch"] for r in rows]
        ax1.plot(epochs, [100 * r["val_acc"] for r in rows], label=label, **series(k, True))
        ax2.plot(epochs, [r["val_loss"] for r in rows], label=label, **series(k, True))
    for ax, name in ((ax1, "validation accuracy (%)"), (ax2, "validation loss")):
        epoch_axis(ax)
        ax.set_ylabel(name)
    ax1.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def seed_results(rows: list[dict], stats: dict, path: Path) -> Path:
    """Test accuracy of each seed as a dot, and their mean with its 95% confidence interval
    (cut at 0-100%, marked) beside them: a dot plot, whose axis may start near the data
    without making differences look larger than they are."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    accs = [100 * r["test_acc"] for r in rows]
    xs = list(range(len(rows)))
    ax.plot(xs, accs, "o", color=style.PALETTE[0], ms=7, label="one seed's run")
    for x, a in zip(xs, accs, strict=True):
        ax.annotate(
            f"{a:.2f}", (x, a), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8
        )
    mean, n = 100 * stats["mean"], len(rows)
    words = f"mean {mean:.2f}%"
    if stats.get("ci95_low") is not None:
        low, high = 100 * stats["ci95_low"], 100 * stats["ci95_high"]
        _interval(ax, len(rows) + 0.5, mean, low, high, (0.0, 100.0), 3)
        words += f" (95% CI {max(low, 0):.2f}-{min(high, 100):.2f}%)"
    else:
        ax.plot(len(rows) + 0.5, mean, "D", color=style.ACCENT, ms=6)
    ax.axhline(mean, color=style.ACCENT, ls="--", lw=1, label="mean")
    ax.set_xticks([*xs, len(rows) + 0.5], [str(r["seed"]) for r in rows] + ["mean"])
    ax.set_xlabel("seed")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Test accuracy over {n} seed{'s' * (n != 1)}: {words}")
    ax.margins(x=0.1, y=0.25)
    ax.legend(loc="lower left")
    return save_figure(fig, path)


def epoch_study(metrics: list[dict], found: dict, path: Path) -> Path:
    """Train and validation loss and accuracy over a long run, the epoch of the lowest
    validation loss marked, and the epoch from which train accuracy pulls away from
    validation accuracy for good (study's Fig. 5)."""
    epochs = [r["epoch"] for r in metrics]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(epochs, [r["train_loss"] for r in metrics], label="train", **series(0))
    ax1.plot(epochs, [r["val_loss"] for r in metrics], label="validation", **series(1))
    ax2.plot(epochs, [100 * r["train_acc"] for r in metrics], label="train", **series(0))
    ax2.plot(epochs, [100 * r["val_acc"] for r in metrics], label="validation", **series(1))
    for ax in (ax1, ax2):
        ax.axvline(
            found["best_epoch"],
            color=style.ACCENT,
            ls="--",
            label=f"lowest validation loss (epoch {found['best_epoch']})",
        )
        if found.get("gap_epoch"):
            ax.axvline(
                found["gap_epoch"],
                color=style.MUTED,
                ls=":",
                label=f"train accuracy pulls away from validation "
                f"for good (epoch {found['gap_epoch']})",
            )
        epoch_axis(ax)
    ax1.set_ylabel("loss")
    ax2.set_ylabel("accuracy (%)")
    fig.legend(*ax1.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    fig.suptitle(f"Epoch study: validation loss is lowest at epoch {found['best_epoch']}")
    return save_figure(fig, path)
