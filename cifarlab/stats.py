"""Statistics of runs: the spread of a metric over seeds (mean, sample standard deviation,
95% confidence interval of the mean), how unsteady a validation loss is, where a run starts
to overfit. Plain numbers in, plain numbers out: nothing here trains or reads files."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable
from typing import Any

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]  # fmt: skip


def t95(df: int) -> float:
    return _T95[df - 1] if df <= len(_T95) else 1.960 + 2.4 / df  # close beyond 30


def describe(values: Iterable[float]) -> dict[str, float | int | None]:
    """Mean, sample std, min, max, range and the 95% confidence interval of the mean."""
    xs = list(values)
    n = len(xs)
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if n > 1 else None
    half = t95(n - 1) * std / math.sqrt(n) if std is not None else None
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": min(xs),
        "max": max(xs),
        "range": max(xs) - min(xs),
        "ci95_low": mean - half if half is not None else None,
        "ci95_high": mean + half if half is not None else None,
    }


def loss_stability(metrics: list[dict]) -> dict[str, float]:
    """How unsteady the validation loss is: the number of epochs it rose, and the largest rise."""
    losses = [r["val_loss"] for r in metrics]
    rises = [b - a for a, b in itertools.pairwise(losses) if b > a]
    return {"val_loss_rises": len(rises), "largest_val_loss_rise": max(rises, default=0.0)}


def find_overfitting(metrics: list[dict], gap_threshold: float = 0.02) -> dict[str, Any]:
    """Where the validation loss stops improving, and where train and validation part.

    best_epoch: the epoch of the lowest validation loss (training longer does not help
    it). gap_epoch: the first epoch from which the train-minus-validation accuracy gap
    exceeds gap_threshold and keeps growing.
    """
    val = [r["val_loss"] for r in metrics]
    best = min(range(len(val)), key=val.__getitem__)
    gaps = [r["train_acc"] - r["val_acc"] for r in metrics]
    gap_epoch = None
    for i, g in enumerate(gaps):
        if g > gap_threshold and all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps[i:])):
            gap_epoch = metrics[i]["epoch"]
            break
    rising = [metrics[i]["epoch"] for i in range(best + 1, len(val)) if val[i] > val[best]]
    return {
        "best_epoch": metrics[best]["epoch"],
        "best_val_loss": val[best],
        "val_loss_rises_after": rising,
        "gap_epoch": gap_epoch,
        "gaps": gaps,
    }
