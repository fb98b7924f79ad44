"""Is one configuration really better than another? `cifarlab compare` over finished runs.

    result = compare(["runs/seeds-a", "runs/seeds-b"], metric="test_acc")
    write_comparison(result, "runs/compare")      # compare.json, compare.md, compare.png

Runs are found under the paths given (a run folder, or a seeds, sweep or study folder:
every finished run below it; the same run, same config and seed, found in two folders counts
once) and grouped by their configuration without the seed (or by
the fields of `by`). Per group: n, mean, standard deviation, the 95% t-interval of the
mean. Per pair of groups: the difference of means with its 95% interval, a test (paired t
when both groups have runs for the same seeds, else Welch's t; McNemar's exact test on
per-example correctness with one run a side; one run against several: whether it lies
outside the other group's seed-to-seed spread (a prediction interval); Mann-Whitney or
permutation on request, where each side has two runs or more),
p-values adjusted over all pairs with Holm's method, Hedges' g, the probability of
improvement, and the seeds per group a t-test would need to detect the difference with 80%
power at 5%. The tests and intervals are scipy.stats' (cifarlab.experiments.stats).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.config.choices import COMPARE_METRICS, COMPARE_TESTS
from cifarlab.config.options import FIELD_NAMES, flag, from_dict, identity, unknown_names
from cifarlab.errors import CifarlabError
from cifarlab.experiments import stats
from cifarlab.experiments.comparison_report import format_comparison as format_comparison
from cifarlab.experiments.comparison_report import verdict as verdict
from cifarlab.experiments.comparison_report import verdicts as verdicts
from cifarlab.experiments.comparison_report import write_comparison
from cifarlab.runs.folder import RunDir, new_run_dir

METRICS, TESTS = COMPARE_METRICS, COMPARE_TESTS


@dataclass
class Run:
    """A finished run: its folder, config, summary and the metric compared."""

    path: Path
    config: dict[str, Any]
    summary: dict[str, Any]
    value: float

    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))


def find_runs(
    paths: list[str | os.PathLike], metric: str = "test_acc", twice: list[Path] | None = None
) -> list[Run]:
    """Every finished run in or under the paths (a run folder holds config.json and
    summary.json), in path order; runs that failed or have not finished are skipped, and a
    run found again (the same config and seed in another folder: two sweeps that share a
    point) counts once, its other folders added to `twice` where given."""
    if metric not in METRICS:
        raise CifarlabError(f"--metric must be one of {', '.join(METRICS)}, not {metric!r}")
    runs: list[Run] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise CifarlabError(f"{path} does not exist; give run folders or folders of runs")
        folders = (
            [path]
            if (path / "config.json").exists()
            else sorted(
                p.parent for p in path.rglob("summary.json") if (p.parent / "config.json").exists()
            )
        )
        found = [r for r in map(_read_run, folders, [metric] * len(folders)) if r is not None]
        if not found:
            raise CifarlabError(
                f"{path} holds no finished cifarlab run (a folder with config.json and a "
                "finished summary.json); give run folders or a seeds, sweep or study folder"
            )
        seen = {_same_run_key(q): q for q in runs}
        for r in found:
            if _same_run_key(r) not in seen:
                runs.append(r)
                seen[_same_run_key(r)] = r
            elif r.path != seen[_same_run_key(r)].path and twice is not None:
                twice.append(r.path)
    return runs


def _same_run_key(run: Run) -> str:
    """What a run computes (its config's identity, the seed included; not where its data
    lies), as one comparable string."""
    return json.dumps(identity(from_dict(run.config)), sort_keys=True, default=str)


def _read_run(folder: Path, metric: str) -> Run | None:
    run = RunDir(folder)
    summary = run.summary()
    if not summary or summary.get("status") != "finished":
        return None
    key = "final_val_acc" if metric == "val_acc" else metric
    value = summary.get(key)
    if value is None:
        raise CifarlabError(
            f"{folder} has no {metric} (a run without a validation split?); choose another --metric"
        )
    return Run(folder, run.config(), summary, float(value))


def group_runs(runs: list[Run], by: list[str] | None = None) -> dict[str, list[Run]]:
    """Runs grouped by their configuration without the seed, or by the fields `by`; each
    group named by what tells it apart from the others (e.g. 'lr=0.03')."""
    for name in by or []:
        if name not in FIELD_NAMES:
            raise CifarlabError(f"--by {name}: not a train option: {unknown_names([name])}")
    keys, full = [], []
    for r in runs:
        cfg = from_dict(r.config)  # checked once per run; its values where a key omits them
        full.append(cfg.to_dict())
        if by:
            keys.append({name: r.config.get(name) for name in by})
        else:
            ident = identity(cfg)
            ident.pop("seed", None)
            keys.append(ident)
    differ = sorted({k for key in keys for k in key if any(o.get(k) != key.get(k) for o in keys)})
    groups: dict[str, list[Run]] = {}
    for r, key, values in zip(runs, keys, full, strict=True):
        shown = by or differ
        name = ",".join(f"{k}={key[k] if k in key else values[k]}" for k in shown)
        groups.setdefault(name or "all runs", []).append(r)
    return {name: sorted(rs, key=lambda r: r.seed) for name, rs in groups.items()}


def check_same_test(runs: list[Run], metric: str) -> None:
    """All runs must be evaluated on the same images: the same dataset and split sizes."""
    size_key = "test_size" if metric != "val_acc" else None
    seen = {
        (
            r.config.get("dataset", "cifar10"),
            r.summary.get(size_key) if size_key else None,
            r.config.get("val_from", "test"),
            r.config.get("eval_limit"),
            r.config.get("split_seed", 0),
            r.config.get("val_size"),
        )
        for r in runs
    }
    if len(seen) > 1:
        raise CifarlabError(
            "these runs were evaluated on different data (dataset, test size, --val-from, "
            "--eval-limit or --split-seed differ); compare runs tested on the same images"
        )


def compare(
    paths: list[str | os.PathLike],
    *,
    by: list[str] | None = None,
    metric: str = "test_acc",
    test: str = "t",
) -> dict[str, Any]:
    """The comparison of the runs under `paths` (see the module): compare.json's content."""
    if test not in TESTS:
        raise CifarlabError(f"--test must be one of {', '.join(TESTS)}, not {test!r}")
    twice: list[Path] = []
    runs = find_runs(paths, metric, twice)
    check_same_test(runs, metric)
    groups = group_runs(runs, by)
    if len(groups) < 2:
        raise CifarlabError(
            f"all {len(runs)} runs are one group ({next(iter(groups))}): compare needs two; "
            "give runs of other configurations, or group them with --by FIELD"
        )
    pairs = [
        compare_pair(a, b, groups[a], groups[b], metric, test)
        for a, b in itertools.combinations(groups, 2)
    ]
    for pair, adjusted in zip(pairs, stats.holm([p["p"] for p in pairs]), strict=True):
        pair["p_holm"] = adjusted
    return {
        "metric": metric,
        "test": test,
        "groups": [describe_group(name, rs, metric) for name, rs in groups.items()],
        "pairs": pairs,
        "counted_once": [str(p) for p in twice],
    }


def describe_group(name: str, runs: list[Run], metric: str = "test_acc") -> dict[str, Any]:
    values = [r.value for r in runs]
    ci = stats.mean_interval(values)
    return {
        "name": name,
        "runs": [str(r.path) for r in runs],
        "seeds": [r.seed for r in runs],
        "values": values,
        "n": len(values),
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
        "ci95": list(ci) if ci else None,
        "test_images_ci95": _test_images_interval(runs) if metric == "test_acc" else None,
    }


def _test_images_interval(runs: list[Run]) -> list[float] | None:
    """One run's test accuracy with its 95% Wilson interval over its test images (the
    spread of the test set alone, the one McNemar's test covers); None for a group of
    several runs, or a summary without its test-set size."""
    if len(runs) != 1 or "test_size" not in runs[0].summary:
        return None
    ci = stats.accuracy_interval(runs[0].value, int(runs[0].summary["test_size"]))
    return list(ci) if ci else None


def compare_pair(
    name_a: str, name_b: str, a: list[Run], b: list[Run], metric: str, test: str
) -> dict[str, Any]:
    """One pair of groups: the difference of means, its interval, the test, effect sizes."""
    va, vb = [r.value for r in a], [r.value for r in b]
    paired = _paired(a, b)
    if len(a) == 1 and len(b) == 1:
        result = _mcnemar(name_a, name_b, a[0], b[0], metric)
    elif min(len(a), len(b)) == 1:
        result = _one_against_group(va, vb, test)
    elif test == "permutation":
        result = (
            stats.permutation(paired[0], paired[1], True)
            if paired
            else stats.permutation(va, vb, False)
        )
    elif test == "mann-whitney":
        result = stats.mann_whitney(va, vb)
    else:
        result = stats.paired_t(*paired) if paired else stats.welch_t(va, vb)
    if math.isnan(result["p"]):  # no spread at all (identical runs): no evidence of a difference
        result["p"] = 1.0
    ci = result.pop("ci95", None)
    if ci is None and min(len(a), len(b)) > 1:  # rank and permutation tests: the t interval
        ci = (stats.paired_t(*paired) if paired else stats.welch_t(va, vb))["ci95"]
    return {
        "a": name_a,
        "b": name_b,
        "diff": float(np.mean(va) - np.mean(vb)),
        "ci95": ci,
        "paired_seeds": sorted(r.seed for r in a if r.seed in {q.seed for q in b})
        if paired
        else [],
        **result,
        "effect_size": stats.hedges_g(va, vb),
        "prob_improvement": stats.prob_improvement(va, vb),
        "seeds_for_80_power": stats.seeds_for_power(*(paired or (va, vb)), bool(paired)),
    }


def _paired(a: list[Run], b: list[Run]) -> tuple[list[float], list[float]] | None:
    """The values of a and b paired by seed, when both groups have runs of the same seeds
    (at least two); else None."""
    seeds_a, seeds_b = {r.seed: r.value for r in a}, {r.seed: r.value for r in b}
    if len(seeds_a) != len(a) or len(seeds_b) != len(b) or set(seeds_a) != set(seeds_b):
        return None
    if len(seeds_a) < 2:
        return None
    order = sorted(seeds_a)
    return [seeds_a[s] for s in order], [seeds_b[s] for s in order]


def _one_against_group(va: list[float], vb: list[float], test: str) -> dict[str, Any]:
    """One run against a group of several: the prediction-interval t test (stats), a note
    saying what it can and cannot conclude, and why a test asked for does not apply."""
    one_is_a = len(va) == 1
    x, values = (va[0], vb) if one_is_a else (vb[0], va)
    result = stats.one_against_group(x, values)
    if not one_is_a:  # the difference is a - b: turn x - mean(a) around
        low, high = result["ci95"]
        result.update(statistic=-result["statistic"], ci95=[-high, -low])
    note = (
        f"one run against {len(values)}: the test asks whether that run lies outside the "
        "other group's seed-to-seed spread, assuming its configuration varies as much across "
        "seeds; train more seeds of it (`cifarlab seeds`) to measure its own spread"
    )
    if test != "t":
        note = f"--test {test} needs two runs a side, so a prediction-interval t test: {note}"
    return {**result, "note": note}


def _mcnemar(name_a: str, name_b: str, a: Run, b: Run, metric: str) -> dict[str, Any]:
    """McNemar's test between two single runs, from their per-example predictions."""
    if metric != "test_acc":
        raise CifarlabError(
            f"{name_a} and {name_b} have one run each: only --metric test_acc can be "
            "compared then (McNemar's test on the test images); train more seeds "
            "(`cifarlab seeds`) to compare other metrics"
        )
    pa, pb = RunDir(a.path).predictions(), RunDir(b.path).predictions()
    if pa is None or pb is None:
        missing = a.path if pa is None else b.path
        raise CifarlabError(
            f"{name_a} and {name_b} have one run each and {missing} has no "
            "test_predictions.npz (trained before cifarlab wrote it), so no test applies: "
            "train more seeds (`cifarlab seeds`) or train the runs again"
        )
    if not np.array_equal(pa["index"], pb["index"]):
        raise CifarlabError(
            f"{a.path} and {b.path} were tested on different images (their "
            "test_predictions.npz index differs); compare runs tested on the same images"
        )
    return stats.mcnemar(
        pa["probabilities"].argmax(1) == pa["labels"], pb["probabilities"].argmax(1) == pb["labels"]
    )


def compare_command(
    paths: list[str], out: str | None, by: str | None, metric: str, test: str
) -> tuple[dict[str, Any], Path]:
    """`cifarlab compare`: compare, then write (into --out, default runs/compare-<time>); nothing
    is written when the comparison fails."""
    fields = [f.strip().replace("-", "_") for f in by.split(",")] if by else None
    if fields is not None and not all(fields):
        raise CifarlabError(
            f"--by {by!r}: give option names separated by commas, e.g. {flag('model')[2:]},lr"
        )
    result = compare(paths, by=fields, metric=metric, test=test)
    return result, write_comparison(result, new_run_dir(out, "compare", create=False))
