"""Experiments made of many runs: a sweep over options (a grid), a seed study, the epoch
study. Each trains its configurations through a Runner (cifarlab.experiments.runner: data loaded
once, runs cached, a local worker pool or Ray) and writes NAME.json and NAME.png.

    result = sweep(flags, {"lr": [0.01, 0.03]}, out, runner=runner)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cifarlab.config.options import OPTIONS, TrainConfig
from cifarlab.config.parse import expand_grid, list_separator, parse_list, parse_seeds
from cifarlab.errors import CifarlabError
from cifarlab.experiments.placement import ExecutorSettings
from cifarlab.experiments.results import SeedsResult, SweepResult
from cifarlab.experiments.runner import Runner, configs_for, run_names
from cifarlab.experiments.stats import describe, find_overfitting, loss_stability
from cifarlab.files import read_json, write_json
from cifarlab.report import figures as plots
from cifarlab.runs.folder import new_run_dir
from cifarlab.runs.tracking import Tracking, experiment_run

__all__ = ["epoch_study", "run_seeds", "run_sweep", "seed_study", "sweep", "sweep_table"]

Result = TypeVar("Result", SeedsResult, SweepResult)

# ------------------------------------------------------------------------------ studies


def sweep_table(runs: list[dict], names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        m, s = run["metrics"], run["summary"]
        rows.append(
            {
                **{n: run["config"][n] for n in names},
                "final_val_acc": m[-1]["val_acc"],
                "best_val_acc": max(r["val_acc"] for r in m),
                "best_val_epoch": max(m, key=lambda r: r["val_acc"])["epoch"],
                "test_acc": s["test_acc"],
                "test_loss": s["test_loss"],
                **loss_stability(m),
                "run_dir": run["run_dir"],
            }
        )
    return rows


def sweep(
    flags: dict[str, Any],
    grid: dict[str, list[Any]],
    out: Path,
    *,
    name: str = "sweep",
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Train every combination of `grid` on top of `flags`; write NAME.json and NAME.png."""
    combos = expand_grid(grid)
    configs = configs_for(flags, combos)
    runs = (runner or Runner()).run(configs, out, run_names(combos))
    names = list(grid)
    result = {"fixed": flags, "options": names, "grid": grid, "rows": sweep_table(runs, names)}
    labels = [", ".join(f"{n}={c[n]}" for n in names) for c in combos]
    model = configs[0].model if len({c.model for c in configs}) == 1 else "model"
    plots.sweep_curves(
        [r["metrics"] for r in runs],
        labels,
        Path(out) / f"{name}.png",
        title=f"{model}: validation accuracy and loss per epoch, by " + ", ".join(names),
    )
    write_json(Path(out) / f"{name}.json", result)
    return result


def seed_study(
    flags: dict[str, Any],
    seeds: list[int],
    out: Path,
    *,
    name: str = "seeds",
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Train one configuration under each seed; statistics of test accuracy and loss.
    Writes NAME.json, and NAME.png when there are several seeds (one bar says nothing)."""
    variations = [{"seed": s} for s in seeds]
    configs = configs_for(flags, variations)
    runs = (runner or Runner()).run(configs, out, run_names(variations))
    rows = [
        {
            "seed": s,
            "test_acc": r["summary"]["test_acc"],
            "test_loss": r["summary"]["test_loss"],
            "run_dir": r["run_dir"],
        }
        for s, r in zip(seeds, runs, strict=True)
    ]
    result = {
        "fixed": flags,
        "rows": rows,
        "test_acc": describe(r["test_acc"] for r in rows),
        "test_loss": describe(r["test_loss"] for r in rows),
    }
    if len(rows) > 1:
        plots.seed_results(rows, result["test_acc"], Path(out) / f"{name}.png")
    write_json(Path(out) / f"{name}.json", result)
    return result


def epoch_study(
    flags: dict[str, Any],
    epochs: int,
    out: Path,
    *,
    name: str = "epochs",
    runner: Runner | None = None,
    seeds: list[int] | None = None,
) -> dict[str, Any]:
    """One longer run (or one per seed of `seeds`); the epoch where validation loss bottoms
    out and the gap opens: the first run's at the top level, every run's in `per_seed`."""
    variations = (
        [{"epochs": epochs}] if not seeds else [{"epochs": epochs, "seed": s} for s in seeds]
    )
    configs = configs_for(flags, variations)
    runs = (runner or Runner()).run(configs, out, run_names(variations))
    found = [find_overfitting(run["metrics"]) for run in runs]
    result = {"fixed": flags, "epochs": epochs, **found[0], "run_dir": runs[0]["run_dir"]}
    if seeds:
        result["per_seed"] = [
            {
                "seed": c.seed,
                "best_epoch": f["best_epoch"],
                "gap_epoch": f["gap_epoch"],
                "run_dir": r["run_dir"],
            }
            for c, f, r in zip(configs, found, runs, strict=True)
        ]
    plots.epoch_study(runs[0]["metrics"], found[0], Path(out) / f"{name}.png")
    write_json(Path(out) / f"{name}.json", result)
    return result


# ------------------------------------------------------------------- the commands' entries


def sweep_grid(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Split the options given to `cifarlab sweep` into fixed values and the grid: every
    option that changes what a run computes may be a comma list (one value is fixed)."""
    given = {k: v for k, v in options.items() if v is not None}
    lists = {k: parse_list(k, v) for k, v in given.items() if OPTIONS[k].identity}
    fixed = {k: v for k, v in given.items() if not OPTIONS[k].identity}
    fixed.update({k: v[0] for k, v in lists.items() if len(v) == 1})
    grid = {k: v for k, v in lists.items() if len(v) > 1}
    if not grid:
        raise CifarlabError("nothing to sweep: give an option several values, e.g. --lr 0.01,0.03")
    return fixed, grid


OTHER_KINDS = ("seeds.json", "study.json", "tune.json")  # folders a sweep never writes into


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


def check_sweep_folder(out: Path, fixed: dict[str, Any], grid: dict[str, list[Any]]) -> None:
    """A sweep writes into a new folder or one holding this same sweep (its runs are
    reused): never over another sweep's sweep.json and sweep.png, nor into a seed study,
    study or search."""
    for name in OTHER_KINDS:
        if (out / name).exists():
            raise CifarlabError(f"{out} holds a {name[:-5]} ({name}); choose another --out")
    if not (out / "sweep.json").exists():
        return
    old = read_json(out / "sweep.json")
    same = old.get("fixed") == _as_json(fixed) and old.get("options") == list(grid)
    if not same or old.get("grid", _as_json(grid)) != _as_json(grid):
        was = ", ".join(old.get("options") or ["?"])
        raise CifarlabError(
            f"{out} holds another sweep (over {was}, other options); its sweep.json and "
            "sweep.png would be replaced: choose another --out"
        )


def run_sweep(
    options: dict[str, Any],
    out: str | Path | None = None,
    *,
    jobs: int = 1,
    progress: bool = True,
    executor: ExecutorSettings | dict[str, Any] | None = None,
    tracking: Tracking | None = None,
) -> tuple[SweepResult, Path]:
    """`cifarlab sweep`: the grid of `options` (comma lists) into a new folder (default
    runs/sweep-<time>); its result (sweep.json, typed) and folder. executor: where the runs train
    (ExecutorSettings, or its mapping; default local)."""
    fixed, grid = sweep_grid(options)
    configs = configs_for(fixed, expand_grid(grid))  # reject bad values before any work
    if out is not None:
        check_sweep_folder(Path(out), fixed, grid)
    params = {**fixed, **{k: list_separator(k).join(map(str, v)) for k, v in grid.items()}}
    return _in_new_folder(
        "sweep",
        configs,
        out,
        params,
        jobs,
        progress,
        executor,
        tracking,
        lambda runner, d: SweepResult.from_dict(sweep(fixed, grid, d, runner=runner)),
    )


def run_seeds(
    seed_text: str,
    flags: dict[str, Any],
    out: str | Path | None = None,
    *,
    jobs: int = 1,
    progress: bool = True,
    executor: ExecutorSettings | dict[str, Any] | None = None,
    tracking: Tracking | None = None,
) -> tuple[SeedsResult, Path]:
    """`cifarlab seeds`: one configuration under the seeds of `seed_text` ('5-9', '1,3')
    into a new folder (default runs/seeds-<time>); its result (seeds.json, typed) and folder."""
    seed_list = parse_seeds(seed_text)
    if flags.get("seed") is not None:
        raise CifarlabError("use --seeds, not --seed, with `cifarlab seeds`")
    fixed = {k: v for k, v in flags.items() if v is not None}
    configs = configs_for(fixed, [{"seed": s} for s in seed_list])  # bad values: before work
    params = {**fixed, "seeds": seed_text}

    def study(runner: Runner, folder: Path) -> SeedsResult:
        return SeedsResult.from_dict(seed_study(fixed, seed_list, folder, runner=runner))

    return _in_new_folder("seeds", configs, out, params, jobs, progress, executor, tracking, study)


def _in_new_folder(
    kind: str,
    configs: list[TrainConfig],
    out: str | Path | None,
    params: dict[str, Any],
    jobs: int,
    progress: bool,
    executor: ExecutorSettings | dict[str, Any] | None,
    tracking: Tracking | None,
    body: Callable[[Runner, Path], Result],
) -> tuple[Result, Path]:
    """A Runner for the configs (data loaded first: bad data leaves no folder), then a new
    folder OUT (default runs/KIND-*) with its MLflow parent run, and body(runner, OUT)."""
    with Runner.start(configs, jobs=jobs, progress=progress, executor=executor) as runner:
        run_dir = new_run_dir(out, kind)
        with experiment_run(tracking or Tracking(), run_dir, kind, params) as tracked:
            return body(runner.reporting(tracking=tracked), run_dir), run_dir
