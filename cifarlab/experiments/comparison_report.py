"""How a comparison reads and where it is written: compare.md's tables, one verdict
sentence per pair, and compare.json, compare.md and compare.png (compare.py computes it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cifarlab.files import atomic_write_bytes, write_json
from cifarlab.report import figures as plots
from cifarlab.report.format import is_accuracy, metric_value
from cifarlab.runs.folder import make_dir


def _p(p: float) -> str:
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def format_comparison(result: dict[str, Any]) -> str:
    """compare.md: the groups, then the pairs (differences in points for accuracies)."""
    m = result["metric"]
    unit = " (points)" if is_accuracy(m) else ""
    lines = [
        f"# Comparison of {m}",
        "",
        "| group | n | mean | std | 95% CI of the mean | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for g in result["groups"]:
        ci = "-" if g["ci95"] is None else " .. ".join(metric_value(m, x) for x in g["ci95"])
        std = metric_value(m, g["std"]).rstrip("%")
        seeds = ", ".join(map(str, g["seeds"]))
        mean = metric_value(m, g["mean"])
        lines.append(f"| {g['name']} | {g['n']} | {mean} | {std} | {ci} | {seeds} |")
    lines += [
        "",
        f"| a - b | difference{unit} | 95% CI | test | p | p (Holm) | Hedges' g | "
        "P(a > b) | seeds for 80% power |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["pairs"]:
        ci = "-" if p["ci95"] is None else " .. ".join(metric_value(m, x, True) for x in p["ci95"])
        g = "-" if p["effect_size"] is None else f"{p['effect_size']:+.2f}"
        n = p["seeds_for_80_power"] if p["seeds_for_80_power"] is not None else "-"
        lines.append(
            f"| {p['a']} - {p['b']} | {metric_value(m, p['diff'], True)} | {ci} | {p['test']} | "
            f"{_p(p['p'])} | {_p(p['p_holm'])} | {g} | {p['prob_improvement']:.2f} | {n} |"
        )
    lines += ["", verdicts(result)]
    if result.get("counted_once"):
        lines += [
            "",
            "Found again and counted once (the same config and seed as a run above): "
            + ", ".join(result["counted_once"]),
        ]
    return "\n".join(lines) + "\n"


def p_text(p: float) -> str:
    """'p = 0.0123', or 'p < 0.0001' (never 'p = < 0.0001')."""
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}"


def verdict(
    pair: dict[str, Any], metric: str, alpha: float = 0.05, mcnemar_note: bool = True
) -> str:
    """One sentence on a pair: the difference, its interval, the test and the Holm p.
    mcnemar_note: say what McNemar's test (one run a side) does not cover; a caller that
    says it once for several verdicts passes False."""
    ci = pair["ci95"]
    ci_text = (
        ""
        if ci is None
        else (f" (95% CI {' .. '.join(metric_value(metric, x, True) for x in ci)})")
    )
    unit = " points" if is_accuracy(metric) else ""
    diff = metric_value(metric, pair["diff"], True)
    head = (
        f"{pair['a']} vs {pair['b']}: {diff}{unit}{ci_text}, "
        f"{pair['test']} {p_text(pair['p'])}, Holm {p_text(pair['p_holm'])}"
    )
    note = f" ({pair['note'][0].upper()}{pair['note'][1:]}.)" if pair.get("note") else ""
    if pair["p_holm"] >= alpha:
        return head + ": not distinguishable from noise." + note
    better = pair["a"] if (pair["diff"] > 0) == (metric != "test_loss") else pair["b"]
    text = head + f": {better} is better." + note
    if pair["test"] == "mcnemar" and mcnemar_note:
        text += (
            " (One run each: McNemar's test covers the test images, not the seed-to-seed spread.)"
        )
    return text


def verdicts(result: dict[str, Any]) -> str:
    return "\n".join(f"- {verdict(p, result['metric'])}" for p in result["pairs"])


def write_comparison(result: dict[str, Any], out: str | os.PathLike) -> Path:
    """compare.json, compare.md and compare.png into `out`."""
    out = Path(out)
    make_dir(out)
    write_json(out / "compare.json", result)
    atomic_write_bytes(out / "compare.md", format_comparison(result).encode())
    plots.group_comparison(result["groups"], result["metric"], out / "compare.png")
    return out
