"""The figures of a search (cifarlab tune) that optuna does not draw the way a reader needs:
every trial's learning curve, and the parallel coordinates of the complete trials. Both
colour a complete trial by its final value (viridis, the colour bar says which value) and
name the best trial, so the two figures and the trials table read together."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import cm
from matplotlib.colors import Normalize

from cifarlab.report import style
from cifarlab.report.canvas import plt, save_figure
from cifarlab.report.figures import epoch_axis, metric_label, metric_scale


@dataclass(frozen=True)
class TrialCurve:
    """One trial's metric per epoch; pruned: stopped early (or diverged)."""

    number: int
    epochs: list[int]
    values: list[float]
    pruned: bool


@dataclass(frozen=True)
class Axis:
    """One searched option across the complete trials: its values (numbers, or the
    category names), drawn on a log scale when it was searched on one."""

    name: str
    values: list[float | int | str]
    log: bool = False


def _colours(values: list[float], metric: str):
    scale = metric_scale(metric)
    lo, hi = min(values) * scale, max(values) * scale
    norm = Normalize(lo, hi if hi > lo else lo + 1e-9)
    mapper = cm.ScalarMappable(norm=norm, cmap="viridis")
    return mapper, [mapper.to_rgba(v * scale) for v in values]


def _best(values: list[float], metric: str) -> int:
    return int(np.argmin(values) if "loss" in metric else np.argmax(values))


def search_curves(curves: list[TrialCurve], metric: str, path: Path) -> Path:
    """Each trial's learning curve: complete trials coloured by their final value and
    numbered at their end (the best one drawn thick), pruned ones grey and dashed,
    ending in a cross where they were stopped."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    scale = metric_scale(metric)
    complete = [c for c in curves if not c.pruned and c.values]
    for c in curves:
        if c.pruned and c.values:
            ys = [scale * v for v in c.values]
            ax.plot(c.epochs, ys, "--", color=style.MUTED, lw=1, zorder=1)
            ax.plot(c.epochs[-1:], ys[-1:], "x", color=style.ACCENT, ms=6, zorder=2)
    keys, labels = [], []
    if complete:
        finals = [c.values[-1] for c in complete]
        mapper, colours = _colours(finals, metric)
        best = _best(finals, metric)
        ends: dict[tuple[int, float], list[int]] = {}  # trials that end at one point
        for k, (c, colour) in enumerate(zip(complete, colours, strict=True)):
            ys = [scale * v for v in c.values]
            thick = k == best
            ax.plot(c.epochs, ys, "-o", color=colour, lw=2.6 if thick else 1.3, ms=3, zorder=3)
            ends.setdefault((c.epochs[-1], round(ys[-1], 6)), []).append(k)
        for (epoch, y), ks in ends.items():
            ax.annotate(
                ", ".join(f"#{complete[k].number}" for k in ks),
                (epoch, y),
                xytext=(5, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                fontweight="bold" if best in ks else "normal",
            )
        fig.colorbar(mapper, ax=ax, pad=0.08).set_label(f"final {metric_label(metric)}")
        keys.append(plt.Line2D([], [], color=colours[best], lw=2.6, marker="o", ms=3))
        labels.append(f"best trial (#{complete[best].number})")
        keys.append(plt.Line2D([], [], color="#444444", lw=1.3, marker="o", ms=3))
        labels.append("complete trial (#number, colour: final value)")
    if len(complete) < len(curves):
        keys.append(plt.Line2D([], [], ls="--", color=style.MUTED, marker="x", mec=style.ACCENT))
        labels.append("pruned trial (x: where it was stopped)")
    ax.legend(keys, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)
    ax.set_ylabel(metric_label(metric))
    epochs = max((c.epochs[-1] for c in curves if c.epochs), default=1)
    ax.set_xlim(right=epochs + 0.35)  # room for the trial numbers
    ax.set_title(
        f"Learning curves of the {len(curves)} trials "
        f"({len(complete)} complete, {len(curves) - len(complete)} pruned)"
    )
    epoch_axis(ax)
    return save_figure(fig, path)


def _positions(axis: Axis) -> tuple[list[float], list[tuple[float, str]]]:
    """Where each value sits on its axis (0 bottom .. 1 top) and the axis's tick labels:
    categories in their order; numbers at their min, middle and max, log-spaced for a
    log axis."""
    if any(isinstance(v, str) for v in axis.values):
        names = list(dict.fromkeys(map(str, axis.values)))
        at = {n: (k / (len(names) - 1) if len(names) > 1 else 0.5) for k, n in enumerate(names)}
        return [at[str(v)] for v in axis.values], [(at[n], n) for n in names]
    xs = [float(v) for v in axis.values]
    log = axis.log and min(xs) > 0
    t = [math.log10(x) for x in xs] if log else xs
    lo, hi = min(t), max(t)
    span = hi - lo

    def place(x: float) -> float:
        return (x - lo) / span if span > 0 else 0.5

    ticks = [lo, (lo + hi) / 2, hi] if span > 0 else [lo]
    text = [f"{10**x if log else x:.3g}" for x in ticks]
    return [place(x) for x in t], [(place(x), s) for x, s in zip(ticks, text, strict=True)]


def parallel_coordinates(axes: list[Axis], values: list[float], metric: str, path: Path) -> Path:
    """Each complete trial as a line across one vertical axis per searched option and a
    last one for its value, coloured by that value (the best trial thick). Every axis is
    scaled to its own range; its labels sit left of it on white, never under a line."""
    metric_axis = Axis(metric, [v * metric_scale(metric) for v in values])
    columns = [_positions(a) for a in [*axes, metric_axis]]
    names = [a.name for a in axes] + [metric_label(metric)]
    fig, ax = plt.subplots(figsize=(max(6.5, 2.2 * len(names) + 1.5), 4.4))
    mapper, colours = _colours(values, metric)
    best = _best(values, metric)
    xs = list(range(len(names)))
    order = sorted(range(len(values)), key=lambda i: i == best)  # the best drawn last
    for i in order:
        ys = [col[0][i] for col in columns]
        ax.plot(xs, ys, color=colours[i], lw=2.8 if i == best else 1.3, alpha=0.9, zorder=2)
    for x, (_, ticks) in zip(xs, columns, strict=True):
        ax.axvline(x, color="#555555", lw=1, zorder=1)
        for y, text in ticks:
            ax.text(
                x - 0.04,
                y,
                text,
                ha="right",
                va="center",
                fontsize=8,
                zorder=4,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1},
            )
    ax.set_xticks(xs, names)
    ax.set_xlim(-0.45, len(names) - 0.8)
    ax.set_ylim(-0.06, 1.06)
    ax.set_yticks([])
    ax.grid(False)
    fig.colorbar(mapper, ax=ax, pad=0.02).set_label(metric_label(metric))
    ax.set_title(f"Parallel coordinates of the {len(values)} complete trials (thick: the best)")
    return save_figure(fig, path)
