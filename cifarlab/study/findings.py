"""The study report's first and last sections: a summary of what was found (each measured
number with its 95% interval, beside the published one for the original study) and the
conclusions the evidence supports, each with its test.

Both read what the steps left: the models' main runs, the seed study, the epoch study and the
comparisons that cifarlab.study.evidence wrote into OUT/evidence/NAME/compare.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.experiments.comparison_report import verdict
from cifarlab.experiments.stats import accuracy_interval
from cifarlab.files import read_json
from cifarlab.report.document import Report
from cifarlab.report.format import percent
from cifarlab.runs.folder import RunDir
from cifarlab.study.evidence import MCNEMAR_NOTE, oriented
from cifarlab.study.wording import command, the

ORIGINAL = (
    'the report "Assignment 2: Image Classification using CNNs" (a CIFAR-10 CNN study; '
    "undated, figures not published with it)"
)
INTERVALS = (
    "Intervals: for one run, the 95% Wilson interval of its accuracy over its test images "
    "(the spread of the test set, not of seeds); for several seeds, the 95% t interval of "
    "their mean."
)


def _interval(acc: float, n: int) -> str:
    ci = accuracy_interval(acc, n)
    return f"{percent(acc)} ({percent(ci[0])} .. {percent(ci[1])})" if ci else percent(acc)


def _published(s: Any, key: str) -> str:
    value = (s.published or {}).get(key)
    return f"{value}%" if isinstance(value, int | float) else "-"


def _model_rows(s: Any) -> list[list[str]]:
    rows = []
    for plan in s.spec.models:
        run = s.runs[plan.name]
        summary, seed = run["summary"], run["config"]["seed"]
        measured = _interval(summary["test_acc"], summary.get("test_size", 0))
        rows.append(
            [
                f"{plan.label()}: test accuracy (seed {seed})",
                measured,
                _published(s, f"{plan.name}_test"),
            ]
        )
    return rows


def _seed_row(s: Any) -> list[list[str]]:
    if not s.spec.seed_study:
        return []
    st, seeds = s.results["seeds"]["test_acc"], s.results["seeds"]["rows"]
    label = s.spec.plan(s.spec.seed_study["model"]).label()
    ci = (
        f", mean in {percent(st['ci95_low'])} .. {percent(st['ci95_high'])}"
        if st["ci95_low"]
        else ""
    )
    std = f" ± {percent(st['std']).rstrip('%')}" if st["std"] is not None else ""
    published = (s.published or {}).get("seeds")
    shown = f"{published['mean']}% ± {published['std']}" if published else "-"
    return [
        [
            f"{label}: test accuracy over {len(seeds)} seeds (mean ± std)",
            f"{percent(st['mean'])}{std}{ci}",
            shown,
        ]
    ]


def _epoch_row(s: Any) -> list[list[str]]:
    if not s.spec.epoch_study:
        return []
    e = s.results["epochs"]
    label = s.spec.plan(s.spec.epoch_study["model"]).label()
    published = (s.published or {}).get("overfit_epoch")
    return [
        [
            f"{label}: the epoch of the lowest validation loss (of {e['epochs']})",
            str(e["best_epoch"]),
            f"{published - 1} (the loss rises from epoch {published})" if published else "-",
        ]
    ]


def summary_section(doc: Report, s: Any) -> None:
    """After the introduction: the study reproduced, and each finding in one row."""
    doc.heading("Summary of findings")
    if s.published is not None:
        doc.text(
            f"This study reproduces {ORIGINAL} step by step; each number it published stands "
            "beside the one measured here."
        )
    rows = _model_rows(s) + _seed_row(s) + _epoch_row(s)
    if s.published is None:
        doc.table(["finding", "measured (95% interval)"], [r[:2] for r in rows])
    else:
        doc.table(["finding", "measured (95% interval)", "published"], rows)
    doc.text(INTERVALS)


def _comparison(out: Path, name: str) -> dict[str, Any] | None:
    path = Path(out) / "evidence" / name / "compare.json"
    return read_json(path) if path.exists() else None


def _lr_conclusion(s: Any, plan: Any) -> str | None:
    result = _comparison(s.out, f"lr-{plan.name}")
    if not result or not result["pairs"]:
        return None
    best = max(result["groups"], key=lambda g: g["mean"])
    tests = [
        verdict(oriented(p, best["name"]), "test_acc", mcnemar_note=False)
        for p in result["pairs"]
        if best["name"] in (p["a"], p["b"])
    ]
    return (
        f"Learning rate of {the(plan.label())}: {best['name']} is best by mean test accuracy. "
        + " ".join(tests)
    )


def conclusions_section(doc: Report, s: Any) -> None:
    """Before Reproduce: what the evidence supports, each claim with its test."""
    s.heading(doc, "Conclusions")
    items = []
    for plan in s.spec.models:
        run = s.runs[plan.name]["summary"]
        acc, n = run["test_acc"], run.get("test_size", 0)
        ci = accuracy_interval(acc, n)
        text = f"{the(plan.label(), capital=True)} reaches {_interval(acc, n)} test accuracy"
        published = (s.published or {}).get(f"{plan.name}_test")
        if published is not None and ci and not s.study.get("quick"):
            inside = ci[0] <= published / 100 <= ci[1]
            text += (
                f"; the published {published}% is {'inside' if inside else 'outside'} that interval"
            )
        items.append(text + ".")
        lr = _lr_conclusion(s, plan) if plan.lrs else None
        if lr:
            items.append(lr)
    first, *others = s.spec.models
    mcnemar = False
    for plan in others:
        result = _comparison(s.out, f"{plan.name}-vs-{first.name}")
        if result and result["pairs"]:
            (pair,) = result["pairs"]
            mcnemar |= pair["test"] == "mcnemar"
            mine = f"model={plan.model}"  # this model first: "improved vs base: +6.25 points"
            first_name = mine if mine in (pair["a"], pair["b"]) else pair["a"]
            items.append(verdict(oriented(pair, first_name), "test_acc", mcnemar_note=False))
    if s.spec.seed_study and s.results["seeds"]["test_acc"]["std"] is not None:
        st = s.results["seeds"]["test_acc"]
        label = s.spec.plan(s.spec.seed_study["model"]).label()
        items.append(
            f"Seeds alone move the test accuracy of {the(label)} "
            f"by up to {100 * st['range']:.2f} points (std {100 * st['std']:.2f}): a difference "
            "between two single runs smaller than that is within seed-to-seed noise."
        )
    doc.bullets(items)
    if mcnemar:
        doc.text(MCNEMAR_NOTE)


def reproduce(doc: Report, s: Any) -> None:
    doc.heading("Reproduce")
    doc.text(
        "Each run, with its test accuracy, by the command that trains it again (from the "
        "folder the study ran in, into reproduce/; the same seed, device and precision give "
        "the same metrics):"
    )
    r, seen = s.results, []
    for key in s.spec.steps():
        if key == "epochs":
            seen += [row["run_dir"] for row in r[key].get("per_seed", [r[key]])]
        elif key not in ("analysis", "failures", "tune", "audit"):  # their own folders say how
            seen += [row["run_dir"] for row in r[key]["rows"]]
    lines = []
    for d in dict.fromkeys(seen):
        acc = (RunDir(d).summary() or {}).get("test_acc")
        lines += [f"# {Path(d).name}: test accuracy {percent(acc)}", command(d)]
    doc.code("\n".join(lines))
