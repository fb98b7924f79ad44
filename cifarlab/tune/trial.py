"""One trial of a search (cifarlab.tune): a normal cifarlab run in SEARCH/trials/<number>-<hash>/
that reports its validation metric to Optuna after every epoch and stops where the pruner
says (its summary.json then says "status": "pruned").

A trial whose configuration another trial has run already (the same short hash) starts from
a copy of that folder: a finished one is reused as it is, a pruned one stays pruned, and a
partial one (its process was killed) is resumed from its checkpoint. Its epochs are
reported to Optuna again first, so the trial's learning curve is whole either way.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from cifarlab.config.options import TrainConfig, resolve
from cifarlab.data import Datasets
from cifarlab.errors import CifarlabError
from cifarlab.experiments.executors import TEMPORARY
from cifarlab.runs.folder import LOCK, RunDir, config_key
from cifarlab.runs.tracking import Tracking
from cifarlab.training.loop import NonFiniteLoss, train

TRIALS = "trials"
LOG = "train.log"  # a trial's own lines (header, epochs), kept out of the search's output
RANK = {"finished": 3, "pruned": 2, "partial": 1, "failed": 0, "new": 0}


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a search shares: the folder, the fixed options, the metric, the
    data (loaded once per process) and the tracking of the search (its MLflow parent)."""

    out: Path
    flags: dict[str, Any]
    metric: str
    data: Datasets
    tracking: Tracking

    def config(self, params: dict[str, Any]) -> TrainConfig:
        """A trial's config: the model's recipe < the fixed options < the trial's values."""
        return resolve(None, {**self.flags, **params})


def trial_folder(out: Path, number: int, cfg: TrainConfig) -> Path:
    return out / TRIALS / f"{number}-{config_key(cfg)[:8]}"


def _reusable(folder: Path) -> Path | None:
    """The most advanced folder of another trial with the same configuration, if any."""
    key = folder.name.split("-", 1)[1]
    others = [d for d in folder.parent.glob(f"*-{key}") if d != folder and d.is_dir()]
    ranked = [
        (RANK[RunDir(d).status()], len(RunDir(d).metrics()), d)
        for d in others
        if (d / "metrics.jsonl").exists()
    ]
    return max(ranked)[2] if ranked and max(ranked)[0] > 0 else None


def not_run_files(skip: tuple[str, ...] = ()) -> Callable[[str, list[str]], set[str]]:
    """A copytree filter: the names in skip, the lock, temporary files a killed write left."""

    def ignore(_: str, names: list[str]) -> set[str]:
        return {n for n in names if n in (LOCK, *skip) or TEMPORARY.match(n)}

    return ignore


def copy_run(
    source: Path,
    folder: Path,
    skip: tuple[str, ...] = (),
    finish: Callable[[RunDir], None] | None = None,
) -> None:
    """A copy of a run folder into `folder` (replacing it), less the names in skip, its lock
    and temporary files; written under a temporary name, finished by finish(copy), then
    renamed: a kill while copying leaves no half folder."""
    tmp = folder.with_name(f".{folder.name}.copy")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=not_run_files(skip))
    if finish is not None:
        finish(RunDir(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def run_trial(study: optuna.Study, trial: optuna.Trial, plan: TrialPlan) -> None:
    """Run a trial asked of `study` and tell the study how it ended: complete (its value
    the last epoch's metric), pruned, diverged (a NaN loss: told as pruned at that epoch
    with a NaN value, Optuna's worst, so TPE learns to avoid the region) or failed (its
    error in the trial's user attributes). Interrupts and kills leave it running: the
    next start of the search marks it failed and tries its configuration again."""
    cfg = plan.config(trial.params)
    folder = trial_folder(plan.out, trial.number, cfg)
    trial.set_user_attr("run", str(folder.relative_to(plan.out)))
    source = _reusable(folder)
    if source is not None and not folder.exists():
        copy_run(source, folder, skip=("mlflow.json",))  # its own MLflow run, not theirs
        trial.set_user_attr("reused", source.name)
    run = RunDir(folder)
    status = run.status()
    rows = run.metrics() if (folder / "metrics.jsonl").exists() else []
    for row in rows:
        _report(trial, row, plan.metric)
    if status in ("finished", "pruned"):
        state = TrialState.COMPLETE if status == "finished" else TrialState.PRUNED
        _tell(study, trial, state, rows[-1][plan.metric], len(rows))
        return
    try:
        summary = _train(trial, cfg, folder, plan, resume=status == "partial")
    except NonFiniteLoss as e:
        epoch = len(run.metrics()) + 1 if (folder / "metrics.jsonl").exists() else 1
        trial.set_user_attr("diverged", str(e))
        _report(trial, {plan.metric: math.nan, "epoch": epoch}, plan.metric)
        _tell(study, trial, TrialState.PRUNED, math.nan, epoch)
        return
    except CifarlabError as e:
        trial.set_user_attr("error", str(e))
        study.tell(trial, state=TrialState.FAIL)
        return
    rows = run.metrics()
    state = TrialState.PRUNED if summary["status"] == "pruned" else TrialState.COMPLETE
    _tell(study, trial, state, rows[-1][plan.metric], len(rows))


def _report(trial: optuna.Trial, row: dict[str, Any], metric: str) -> None:
    with warnings.catch_warnings():  # an epoch reported twice (a resumed trial) is kept once
        warnings.simplefilter("ignore")
        trial.report(row[metric], row["epoch"])


def _tell(
    study: optuna.Study, trial: optuna.Trial, state: TrialState, value: float, epochs: int
) -> None:
    trial.set_user_attr("epochs", epochs)
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)


def _train(
    trial: optuna.Trial, cfg: TrainConfig, folder: Path, plan: TrialPlan, resume: bool
) -> dict[str, Any]:
    """Train (or resume) the trial's run, its lines into its train.log, asking the pruner
    after every epoch."""

    def on_epoch(row: dict[str, Any]) -> str | None:
        _report(trial, row, plan.metric)
        return "pruned" if trial.should_prune() else None

    folder.mkdir(parents=True, exist_ok=True)
    tracking = plan.tracking.replace(run_name=f"trial-{trial.number}")
    with open(folder / LOG, "a") as log, contextlib.redirect_stdout(log):
        return train(
            cfg,
            folder,
            resume=resume,
            data=plan.data.get(cfg.dataset_args()),
            progress=False,
            tracking=tracking,
            on_epoch=on_epoch,
        )
