"""`cifarlab tune`: a hyperparameter search with Optuna, every trial a cifarlab run.

    result, folder = run_tune(flags, ["lr=log:0.001:0.1"], TuneSettings(trials=20), out="s")

The search's state lives in its folder, in Optuna's journal file (SEARCH/optuna.journal,
safe for several processes on one machine): running the same command again continues it
until --trials trials have finished (complete or pruned). A trial that a killed process
left running is marked failed and its configuration queued again (its run folder resumes
from its checkpoint), so no trial is counted twice. --jobs N runs N trials at once, each
worker process asking the study for its next trial under a lock, so the count is exact.

Trials are sampled by TPE (default), at random or over a grid, seeded by --seed; the
median, successive-halving (asha) or Hyperband pruner stops poor trials after an epoch. The
validation split is the only one used for choosing: the test split is looked at only by
finished trials' own summaries and by --confirm-seeds. The outputs (trials.csv, tune.json,
best.yaml, report.html/md) are cifarlab.tune.report's.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna

from cifarlab.config.options import TrainConfig, flag
from cifarlab.data import Datasets
from cifarlab.errors import CifarlabError
from cifarlab.experiments.compare import compare, describe_group, find_runs
from cifarlab.experiments.placement import ExecutorSettings
from cifarlab.experiments.ray_executor import RayExecutor
from cifarlab.experiments.runner import Runner, configs_for, load_data
from cifarlab.files import read_json, write_json
from cifarlab.runs.folder import RunDir, new_run_dir
from cifarlab.runs.tracking import Tracking, experiment_run
from cifarlab.tune.loop import (
    Progress,
    TuneSettings,
    open_study,
    recover,
    work,
    work_in_processes,
)
from cifarlab.tune.ray_tune import run_on_ray
from cifarlab.tune.report import summarize, write_report
from cifarlab.tune.space import SearchSpace
from cifarlab.tune.trial import TrialPlan

SEARCH = "search.json"  # what defines the search: a rerun must give the same


# ---------------------------------------------------------------------------- entry


def check_search(out: Path, defining: dict[str, Any]) -> None:
    """A folder holds one search: a rerun must define the same one (or use another --out)."""
    path = out / SEARCH
    if not path.exists():
        write_json(path, defining)
        return
    held = read_json(path)
    differs = sorted(k for k in set(held) | set(defining) if held.get(k) != defining.get(k))
    if differs:
        what = ", ".join(
            "--param" if k == "params" else k if k == "flags" else flag(k) for k in differs
        )
        raise CifarlabError(
            f"{out} holds a search with other settings ({what} differ); give the same "
            f"options to continue it, or another --out"
        )


def _checked(
    flags: dict[str, Any], params: list[str], settings: TuneSettings
) -> tuple[SearchSpace, dict[str, Any], TrainConfig, TuneSettings]:
    """The search space, the fixed options, the trials' base config and the settings (a
    grid's --trials cut to its size), each checked before anything is written."""
    space = SearchSpace.parse(params)
    fixed = {k: v for k, v in flags.items() if v is not None}
    space.check_fixed(fixed)
    base = configs_for(fixed, [{}])[0]
    if base.val_from == "none":
        raise CifarlabError("tune chooses on the validation split: drop --val-from none")
    if settings.sampler == "grid" and settings.trials > space.grid_size():
        print(
            f"note: the grid has {space.grid_size()} points; --trials {settings.trials} "
            f"becomes {space.grid_size()}"
        )
        settings = TuneSettings(**{**asdict(settings), "trials": space.grid_size()})
    return space, fixed, base, settings


def _reopen(
    folder: Path, settings: TuneSettings, space: SearchSpace, fixed: dict[str, Any], epochs: int
) -> Any:
    """The search's Optuna study in `folder`, new or continued (refused where the folder
    holds another search); trials a killed process left running are queued again."""
    check_search(folder, {**settings.defining(), "params": space.specs(), "flags": fixed})
    study = open_study(folder, settings, space, epochs)
    retried = recover(study)
    if retried:
        print(
            f"trials {', '.join(map(str, retried))} were left running by a killed "
            "process: marked failed, their values queued again"
        )
    return study


def run_tune(
    flags: dict[str, Any],
    params: list[str],
    settings: TuneSettings,
    out: str | Path | None = None,
    *,
    confirm_seeds: int = 0,
    progress: bool = True,
    tracking: Tracking | None = None,
    executor: ExecutorSettings | dict[str, Any] | None = None,
    baseline: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], Path]:
    """`cifarlab tune`: search (or continue searching) into `out` (default runs/tune-<time>),
    then write its outputs; with confirm_seeds, retrain the best config with that many
    fresh seeds against the fixed options' recipe. executor: where runs train (ExecutorSettings, or
    its mapping; default local): with ray, Ray Tune runs the trials
    (cifarlab.tune.ray_tune) and Ray the confirmation's runs; baseline: the options
    --confirm-seeds compares the best with (default: the fixed ones, the recipe).
    tune.json's content and the folder."""
    where = ExecutorSettings.of(executor)  # checked, as --jobs with it, before any work
    where.check(settings.jobs)
    ray = where.make() if where.name == "ray" else None  # Ray Tune's; it closes it
    space, fixed, base, settings = _checked(flags, params, settings)
    data = load_data([base])  # bad data or a model that does not fit: before any folder
    folder = new_run_dir(out, "tune")
    with RunDir(folder).lock(wait=False):
        study = _reopen(folder, settings, space, fixed, base.epochs)
        params_log = {**fixed, **space.specs(), **settings.defining()}
        with experiment_run(tracking or Tracking(), folder, "tune", params_log) as tracked:
            _search(
                folder,
                study,
                space,
                settings,
                fixed,
                base.epochs,
                data,
                tracked,
                progress,
                params,
                ray,
            )
            result = summarize(folder, study, space, settings.defining(), fixed)
            if confirm_seeds and result["best"]:
                result["confirm"] = confirm(
                    folder,
                    result["best"],
                    fixed,
                    confirm_seeds,
                    settings,
                    tracked,
                    progress,
                    baseline,
                    where,
                )
                write_json(folder / "tune.json", result)
            write_report(folder, study, space, result)
            return result, folder


def confirm(
    folder: Path,
    best: dict[str, Any],
    fixed: dict[str, Any],
    n: int,
    settings: TuneSettings,
    tracking: Tracking,
    progress: bool,
    baseline: dict[str, Any] | None = None,
    executor: ExecutorSettings | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The best config and the fixed options' recipe (the search's starting point; or
    the baseline options), each trained with n fresh seeds (after the search's --seed)
    into SEARCH/confirm/runs (where executor says: ExecutorSettings) and compared
    on the test split (cifarlab.experiments.compare)."""
    seeds = [settings.seed + 1 + k for k in range(n)]
    chosen = configs_for({**fixed, **best["params"]}, [{"seed": s} for s in seeds])
    recipe = configs_for(baseline or fixed, [{"seed": s} for s in seeds])
    names = [f"best seed={s}" for s in seeds] + [f"recipe seed={s}" for s in seeds]
    print(
        f"confirming trial {best['number']} with seeds {', '.join(map(str, seeds))}, "
        "against the recipe with the same seeds"
    )
    with Runner.start(
        chosen + recipe,
        jobs=settings.jobs,
        progress=progress,
        executor=executor,
        tracking=tracking,
    ) as runner:
        runs = runner.run(chosen + recipe, folder / "confirm", names=names)
    dirs = [r["run_dir"] for r in runs]
    note = (
        f"The best trial's config and {'the recipe' if baseline is None else 'the options'} "
        f"it started from, each trained with "
        f"seeds {', '.join(map(str, seeds))}; test accuracy."
    )
    if dirs[:n] == dirs[n:]:  # the same runs: nothing to compare
        group = describe_group("best = recipe", find_runs(dirs[:n]))
        return {"note": note + " The best config is the recipe itself.", "groups": [group]}
    result = compare(dirs)
    return {"note": note, **result}


def _search(
    folder: Path,
    study: optuna.Study,
    space: SearchSpace,
    settings: TuneSettings,
    fixed: dict[str, Any],
    epochs: int,
    data: Datasets,
    tracking: Tracking,
    show: bool,
    params: list[str],
    ray: RayExecutor | None,
) -> None:
    progress = Progress(study, space, settings, show)
    try:
        if ray is not None:
            run_on_ray(folder, study, space, settings, fixed, epochs, tracking, progress, ray)
        elif settings.jobs == 1:
            plan = TrialPlan(folder, fixed, settings.metric, data, tracking)
            work(study, plan, space, settings.trials, progress.update)
        else:
            work_in_processes(folder, settings, params, fixed, epochs, tracking, progress)
    finally:
        progress.close()
