"""Statistics of runs: the spread of a metric over seeds (mean, sample standard deviation,
95% confidence interval of the mean), how unsteady a validation loss is, where a run starts
to overfit, and whether one group of runs differs from another beyond noise (tests,
intervals, effect sizes, power: scipy.stats where it has them). Plain numbers in, plain
numbers out: nothing here trains or reads files."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.stats


def t95(df: int) -> float:
    """The two-sided 95% quantile of Student's t with df degrees of freedom."""
    return float(scipy.stats.t.ppf(0.975, df))


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


# ------------------------------------------------------------------ one group against another


def mean_interval(values: list[float]) -> tuple[float, float] | None:
    """The 95% t-interval of the mean (None for fewer than two values)."""
    if len(values) < 2:
        return None
    x = np.asarray(values, dtype=float)
    sem = x.std(ddof=1) / math.sqrt(len(x))
    if sem == 0:
        return float(x.mean()), float(x.mean())
    low, high = scipy.stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sem)
    return float(low), float(high)


def paired_t(a: list[float], b: list[float]) -> dict[str, Any]:
    """Paired t-test of a - b (a[i] and b[i] share a seed): statistic, p, 95% interval."""
    r = scipy.stats.ttest_rel(a, b)
    ci = r.confidence_interval(0.95)
    return {
        "test": "paired-t",
        "statistic": float(r.statistic),
        "p": float(r.pvalue),
        "ci95": [float(ci.low), float(ci.high)],
    }


def welch_t(a: list[float], b: list[float]) -> dict[str, Any]:
    """Welch's t-test of mean(a) - mean(b) (unequal variances): statistic, p, 95% interval."""
    r = scipy.stats.ttest_ind(a, b, equal_var=False)
    ci = r.confidence_interval(0.95)
    return {
        "test": "welch-t",
        "statistic": float(r.statistic),
        "p": float(r.pvalue),
        "ci95": [float(ci.low), float(ci.high)],
    }


def mann_whitney(a: list[float], b: list[float]) -> dict[str, Any]:
    """The Mann-Whitney U test (two-sided, exact where scipy can): statistic U of a, p."""
    r = scipy.stats.mannwhitneyu(a, b, alternative="two-sided")
    return {"test": "mann-whitney", "statistic": float(r.statistic), "p": float(r.pvalue)}


def permutation(a: list[float], b: list[float], paired: bool) -> dict[str, Any]:
    """A permutation test of mean(a) - mean(b): seeds' pairs swapped (paired) or the runs
    relabelled (independent); exact where the permutations are few, else 9,999 draws."""
    kind = "samples" if paired else "independent"
    r = scipy.stats.permutation_test(
        (a, b),
        lambda x, y: np.mean(x) - np.mean(y),
        permutation_type=kind,
        n_resamples=9999,
        alternative="two-sided",
        rng=0,
    )
    return {"test": "permutation", "statistic": float(r.statistic), "p": float(r.pvalue)}


def one_against_group(x: float, values: list[float]) -> dict[str, Any]:
    """One run's value x against a group of runs (at least two): does x lie outside what
    the group's seed-to-seed spread predicts for one more run? The t statistic of the
    prediction interval, (x - mean) / (s * sqrt(1 + 1/n)) on n - 1 degrees of freedom, and
    the 95% interval of x - mean from it. It assumes the one run's configuration varies
    across seeds as much as the group's does: its own spread is not measured."""
    n, mean, sd = len(values), float(np.mean(values)), float(np.std(values, ddof=1))
    half_width = sd * math.sqrt(1 + 1 / n)
    t95 = float(scipy.stats.t.ppf(0.975, n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = (x - mean) / half_width if half_width else math.copysign(math.inf, x - mean)
    p = 1.0 if x == mean else float(2 * scipy.stats.t.sf(abs(statistic), n - 1))
    diff = x - mean
    return {
        "test": "prediction-t",
        "statistic": float(statistic),
        "p": p,
        "ci95": [diff - t95 * half_width, diff + t95 * half_width],
    }


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, Any]:
    """McNemar's exact test on per-example correctness of two models on the same images:
    the images only a gets right (b01) against those only b gets right (b10), a binomial
    test of b01 against b01 + b10 at one half. statistic: min(b01, b10). ci95: the Wald
    interval of the difference of the paired accuracies."""
    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b, n = int((a & ~b).sum()), int((~a & b).sum()), len(a)
    p = 1.0 if only_a + only_b == 0 else scipy.stats.binomtest(only_a, only_a + only_b).pvalue
    diff = (only_a - only_b) / n
    half = scipy.stats.norm.ppf(0.975) * math.sqrt(only_a + only_b - n * diff**2) / n
    return {
        "test": "mcnemar",
        "statistic": float(min(only_a, only_b)),
        "p": float(p),
        "ci95": [float(diff - half), float(diff + half)],
        "only_a": only_a,
        "only_b": only_b,
    }


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment of p-values for multiple comparisons (in input order)."""
    pvalues = [1.0 if math.isnan(p) else p for p in pvalues]  # no evidence either way
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def hedges_g(a: list[float], b: list[float]) -> float | None:
    """Hedges' g: (mean(a) - mean(b)) over the pooled standard deviation, corrected for
    small samples; None where it is undefined (one run a side, or no spread)."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    pooled = math.sqrt(
        ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    )
    if pooled == 0:
        return None
    correction = 1 - 3 / (4 * (na + nb) - 9)
    return float(correction * (np.mean(a) - np.mean(b)) / pooled)


def prob_improvement(a: list[float], b: list[float]) -> float:
    """P(a > b): the share of all (run of a, run of b) pairs where a's value is higher,
    ties counted half."""
    wins = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    return float(wins / (len(a) * len(b)))


def seeds_for_power(
    a: list[float], b: list[float], paired: bool, power: float = 0.8, alpha: float = 0.05
) -> int | None:
    """How many seeds per group a two-sided t-test (paired or Welch's) needs to detect the
    observed difference with `power` at level `alpha`, taking the observed spread as the
    truth (noncentral t); None where there is no spread to judge by or no difference."""
    if len(a) < 2 or len(b) < 2:
        return None
    if paired:
        d = np.asarray(a) - np.asarray(b)
        sd, diff = float(np.std(d, ddof=1)), float(np.mean(d))
    else:
        sd = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
        diff = float(np.mean(a) - np.mean(b))
    if sd == 0 or diff == 0:
        return None
    effect = abs(diff) / sd
    for n in range(2, 10_001):
        df = n - 1 if paired else 2 * n - 2
        nc = effect * math.sqrt(n if paired else n / 2)
        crit = scipy.stats.t.ppf(1 - alpha / 2, df)
        reached = scipy.stats.nct.sf(crit, df, nc) + scipy.stats.nct.cdf(-crit, df, nc)
        if not math.isfinite(reached):  # scipy's nct fails far out in the tail: power ~ 1
            reached = 1.0 if nc > crit else 0.0
        if reached >= power:
            return n
    return None


def accuracy_interval(accuracy: float, n: int) -> tuple[float, float] | None:
    """The 95% Wilson interval of an accuracy measured on n test images (the spread of the
    test set alone: one run says nothing of the seed-to-seed spread); None for n < 1."""
    if n < 1:
        return None
    k = round(accuracy * n)
    ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)
