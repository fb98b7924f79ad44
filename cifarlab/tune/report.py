"""What a search (cifarlab.tune.search) writes into its folder:

trials.csv          one row per trial: number, state, value, epochs, each parameter, run
tune.json           the best trial, the counts of complete/pruned/failed trials, the
                    settings (and, after --confirm-seeds, the confirmation)
best.yaml           the best trial's full config: `cifarlab train --config best.yaml`
report.html / .md   optimization history, parameter importances (fANOVA), parallel
                    coordinates, a slice plot per parameter, every trial's learning curve
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import optuna
import yaml
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState

from cifarlab.experiments.compare import verdicts
from cifarlab.files import atomic_write_bytes, write_json
from cifarlab.report import figures as plots
from cifarlab.report import search_figures
from cifarlab.report.document import Report
from cifarlab.report.format import metric_value, percent
from cifarlab.report.search_figures import Axis, TrialCurve
from cifarlab.runs.folder import RunDir
from cifarlab.tune.space import SearchSpace

STATES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}
FEW_TRIALS = 10  # parameter importances from fewer complete trials than this are shaky


def trial_value(t: FrozenTrial) -> float | None:
    """A complete trial's value; a pruned one's last reported value (None for one that
    diverged: its last value is NaN)."""
    if t.value is not None:
        return t.value
    steps = t.intermediate_values
    value = steps[max(steps)] if steps else None
    return None if value is None or math.isnan(value) else value


def diverged_words(n: int) -> str:
    """' (N of them diverged)' after the pruned count, when some did."""
    return f" ({n} of them diverged: a NaN loss)" if n else ""


@dataclass(frozen=True)
class BestTrial:
    number: int
    value: float
    params: dict[str, Any]
    run: str | None


@dataclass(frozen=True)
class ConfirmGroup:
    """A confirmation group (the best trial's config, or the recipe): its mean test
    accuracy over n seeds."""

    name: str
    mean: float
    n: int


@dataclass(frozen=True)
class TuneResult:
    """What `cifarlab tune` prints: tune.json's trial counts, its best trial and the
    confirmation groups (none without --confirm-seeds)."""

    n_complete: int
    n_pruned: int
    n_failed: int
    n_diverged: int
    best: BestTrial | None
    confirm: list[ConfirmGroup]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TuneResult:
        best = BestTrial(**d["best"]) if d.get("best") else None
        groups = (d.get("confirm") or {}).get("groups", [])
        return cls(
            d["n_complete"],
            d["n_pruned"],
            d["n_failed"],
            d.get("n_diverged", 0),
            best,
            [ConfirmGroup(g["name"], g["mean"], g["n"]) for g in groups],
        )

    def lines(self, metric: str) -> list[str]:
        """The trial counts, the best trial and each confirmation group, a line each."""
        diverged = diverged_words(self.n_diverged)
        out = [
            f"{self.n_complete} complete, {self.n_pruned} pruned{diverged}, {self.n_failed} failed"
        ]
        if self.best:
            values = ", ".join(f"{k}={v}" for k, v in self.best.params.items())
            value = metric_value(metric, self.best.value)
            out.append(f"best: trial {self.best.number}, {metric} {value} ({values})")
        out += [f"confirm {g.name}: test acc {percent(g.mean)} (n={g.n})" for g in self.confirm]
        return out


def trial_rows(study: optuna.Study, space: SearchSpace) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False, states=tuple(STATES)):
        row = {
            "number": t.number,
            "state": STATES[t.state],
            "value": trial_value(t),
            "epochs": t.user_attrs.get("epochs", len(t.intermediate_values)),
        }
        row.update({n: t.params.get(n) for n in space.names})
        row["run"] = t.user_attrs.get("run", "")
        rows.append(row)
    return rows


def write_trials_csv(path: Path, rows: list[dict[str, Any]], space: SearchSpace) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["number", "state", "value", "epochs", *space.names, "run"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, out.getvalue().encode())


def summarize(
    folder: Path,
    study: optuna.Study,
    space: SearchSpace,
    settings: dict[str, Any],
    fixed: dict[str, Any],
) -> dict[str, Any]:
    """trials.csv, best.yaml and tune.json (returned) of the search so far."""
    rows = trial_rows(study, space)
    write_trials_csv(folder / "trials.csv", rows, space)
    counts = {f"n_{s}": sum(r["state"] == s for r in rows) for s in STATES.values()}
    counts["n_diverged"] = sum("diverged" in t.user_attrs for t in study.get_trials(deepcopy=False))
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    best = None
    if complete:
        b = study.best_trial
        best = {
            "number": b.number,
            "value": b.value,
            "params": b.params,
            "run": b.user_attrs.get("run"),
        }
        write_best_yaml(folder, best)
    result = {
        "best": best,
        **counts,
        "settings": {**settings, "params": space.specs(), "fixed": fixed},
    }
    write_json(folder / "tune.json", result)
    return result


def write_best_yaml(folder: Path, best: dict[str, Any]) -> None:
    config = RunDir(folder / best["run"]).config()
    head = (
        f"# The best trial ({best['number']}) of the search in {folder}: its full config.\n"
        f"# Train it with: cifarlab train --config {folder / 'best.yaml'}\n"
    )
    text = head + yaml.safe_dump(config, sort_keys=False)
    atomic_write_bytes(folder / "best.yaml", text.encode())


# ------------------------------------------------------------------------------ figures


def _quiet_plot(plot: Any, *args: Any, **kwargs: Any) -> Any:
    """An optuna plot, its style kept to itself: optuna switches matplotlib to "ggplot"
    for the whole process, which would grey every figure drawn after it."""
    with warnings.catch_warnings(), plt.rc_context():
        warnings.simplefilter("ignore")  # optuna's matplotlib plots are marked experimental
        return plot(*args, **kwargs)


def _restyle(fig: Any, title: str) -> None:
    """Optuna's plots in cifarlab's style: trials coloured by a colour map that ends in no
    white (its default 'Blues' draws the first trial white on grey: invisible), trial
    numbers as whole numbers on their axis, and the figure's own caption for a title
    (optuna's is the plot's kind: 'Slice Plot')."""
    fig.axes[0].set_title(title, fontsize=11)
    for ax in fig.axes:
        for collection in ax.collections:
            if collection.get_array() is not None:
                collection.set_cmap("viridis")
        if "trial" in ax.get_xlabel().lower():
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save_axes(axes: Any, path: Path, title: str) -> Path:
    ax = axes.flat[0] if hasattr(axes, "flat") else axes
    fig = ax.figure
    _restyle(fig, title)
    fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 4))
    return plots.save_figure(fig, path)


def learning_curves(study: optuna.Study, metric: str, path: Path) -> Path:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    curves = []
    for t in trials:
        steps = sorted(t.intermediate_values)
        values = [t.intermediate_values[s] for s in steps]
        curves.append(TrialCurve(t.number, steps, values, t.state == TrialState.PRUNED))
    return search_figures.search_curves(curves, metric, path)


def parallel_coordinates(study: optuna.Study, space: SearchSpace, metric: str, path: Path) -> Path:
    """The complete trials across their searched options (log axes where searched on
    a log scale) and their value."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    dists = space.distributions()
    axes = [
        Axis(n, [t.params[n] for t in trials], bool(getattr(dists[n], "log", False)))
        for n in space.names
    ]
    return search_figures.parallel_coordinates(axes, [t.value for t in trials], metric, path)


def figures(folder: Path, study: optuna.Study, space: SearchSpace, metric: str) -> list:
    """(path, caption) of each figure of the report that can be drawn."""
    vis = optuna.visualization.matplotlib
    out, complete = [], len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    target = {"target_name": metric}
    drawn = [
        (
            "history.png",
            lambda: vis.plot_optimization_history(study, **target),
            f"Optimization history: each complete trial's {metric} and the best so far",
        )
    ]
    if complete >= 2 and len(space.names) >= 1:
        drawn.append(
            (
                "importances.png",
                lambda: vis.plot_param_importances(study),
                "Parameter importances (fANOVA)",
            )
        )
    for n in space.names:
        drawn.append(
            (
                f"slice-{n}.png",
                lambda n=n: vis.plot_slice(study, params=[n], **target),
                f"{n}: {metric} of each complete trial",
            )
        )
    for name, draw, caption in drawn:
        if complete == 0:
            break
        try:
            path = _save_axes(_quiet_plot(draw), folder / "figures" / name, caption)
            out.append((path, caption))
        except (ValueError, RuntimeError) as e:  # e.g. importances of a constant parameter
            plt.close("all")
            out.append((None, f"{caption}: not drawn ({e})"))
    if complete >= 2 and len(space.names) >= 2:
        out.append(
            (
                parallel_coordinates(study, space, metric, folder / "figures" / "parallel.png"),
                f"Parallel coordinates of the complete trials: each option and {metric}",
            )
        )
    out.append(
        (
            learning_curves(study, metric, folder / "figures" / "curves.png"),
            f"Learning curves: {metric} per epoch of every trial",
        )
    )
    return out


# ------------------------------------------------------------------------------ report


def write_report(
    folder: Path, study: optuna.Study, space: SearchSpace, result: dict[str, Any]
) -> tuple[Path, Path]:
    s = result["settings"]
    doc = Report("Hyperparameter search")
    doc.text(
        f"{s['sampler']} sampler (seed {s['seed']}), {s['pruner']} pruner, choosing on "
        f"{s['metric']} (the validation split). Searched: "
        + ", ".join(f"`{n}={spec}`" for n, spec in s["params"].items())
        + f". Fixed: {', '.join(f'`{k}={v}`' for k, v in s['fixed'].items()) or 'the recipe'}."
    )
    doc.text(
        f"{result['n_complete']} trials complete, {result['n_pruned']} pruned"
        f"{diverged_words(result.get('n_diverged', 0))}, "
        f"{result['n_failed']} failed."
    )
    best = result["best"]
    if best:
        doc.heading("Best trial")
        doc.text(
            f"Trial {best['number']}: {s['metric']} "
            f"{metric_value(s['metric'], best['value'])} with "
            + ", ".join(f"`{k}={v}`" for k, v in best["params"].items())
            + f"; its run folder `{best['run']}`, its config `best.yaml`."
        )
    rows = trial_rows(study, space)
    doc.heading("Trials")
    doc.table(
        ["trial", "state", s["metric"], "epochs", *space.names],
        [
            [
                r["number"],
                r["state"],
                _fmt(r["value"]),
                r["epochs"],
                *(_fmt(r[n]) for n in space.names),
            ]
            for r in rows
        ],
    )
    _confirm_section(doc, result.get("confirm"))
    doc.heading("Figures")
    if result["n_complete"] < FEW_TRIALS:
        doc.text(
            f"Warning: parameter importances from {result['n_complete']} complete trials "
            f"(fewer than {FEW_TRIALS}) are a rough guide at best."
        )
    for path, caption in figures(folder, study, space, s["metric"]):
        if path is None:
            doc.text(caption)
        else:
            doc.figure(path, caption)
    return doc.write(folder)


def _confirm_section(doc: Report, confirm: dict[str, Any] | None) -> None:
    if not confirm:
        return
    doc.heading("Confirmation with fresh seeds")
    doc.text(confirm["note"])
    confirm_table(doc, confirm)
    if confirm.get("pairs"):
        doc.text(verdicts(confirm))


def confirm_table(doc: Report, confirm: dict[str, Any]) -> None:
    """The confirmation's groups: configuration, runs, mean test accuracy, its interval,
    seeds (in this report and in a study's section on its search)."""
    doc.table(
        ["configuration", "runs", "mean test acc", "95% CI", "seeds"],
        [
            [
                g["name"],
                g["n"],
                percent(g["mean"]),
                _ci(g["ci95"]),
                ", ".join(map(str, g["seeds"])),
            ]
            for g in confirm["groups"]
        ],
    )


def _ci(ci: list[float] | None) -> str:
    return "-" if ci is None else f"{percent(ci[0])} .. {percent(ci[1])}"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
