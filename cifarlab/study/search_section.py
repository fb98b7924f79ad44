"""The study report's section on its hyperparameter search (a spec's `tune` step, run by
cifarlab.tune.search into OUT/tune): what was searched, how the trials ended, the best config and,
with confirm_seeds, its test accuracy against the model's own recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.report.document import Report
from cifarlab.report.format import metric_value, points
from cifarlab.study.wording import the
from cifarlab.tune.report import confirm_table


def tune_section(doc: Report, s: Any) -> None:
    """The report's section: s is the report's Study (heading, figure, results, spec)."""
    if not s.spec.tune or "tune" not in s.results:
        return
    r, tune = s.results["tune"], s.spec.tune
    folder, settings = Path(r["folder"]), r["settings"]
    title = s.spec.plan(tune["model"]).label()
    s.heading(doc, f"Hyperparameter search, {title}")
    searched = ", ".join(f"`{n}={spec}`" for n, spec in settings["params"].items())
    doc.text(
        f"{settings['sampler']} sampler (seed {settings['seed']}), {settings['pruner']} "
        f"pruner, choosing on {settings['metric']} (the validation split) over {searched}, "
        f"{the(title)}'s other options fixed. {r['n_complete']} trials complete, "
        f"{r['n_pruned']} pruned ({r.get('n_diverged', 0)} of them diverged), "
        f"{r['n_failed']} failed; every trial's folder and the full report are in "
        f"{folder.name}/ ([report]({folder.name}/report.md))."
    )
    best = r["best"]
    if best is None:
        doc.text("No trial completed: there is no best configuration.")
        return
    values = ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in best["params"].items()
    )
    doc.text(
        f"Best: trial {best['number']} ({values}), {settings['metric']} "
        f"{metric_value(settings['metric'], best['value'])}."
    )
    s.figure(
        doc,
        folder / "figures" / "history.png",
        "tune_history",
        f"the search's {settings['metric']} per trial",
    )
    confirm = r.get("confirm")
    if confirm:
        doc.text(confirm["note"])
        confirm_table(doc, confirm)
        for p in confirm.get("pairs", []):
            low, high = p["ci95"]
            doc.text(
                f"Best minus recipe: {points(p['diff'])} points (95% interval "
                f"{points(low)} to {points(high)}), {p['test']} p = {p['p']:.3g}."
            )
