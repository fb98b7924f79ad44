"""--executor ray for cifarlab.tune.search: the same search run by Ray Tune, on a local Ray or a
cluster. Ray's OptunaSearch samples (our sampler, on the search's own journal study, so
trials.csv, tune.json, best.yaml and the report come out as for a local search) and a Tune
scheduler stops poor trials: --pruner median is Tune's MedianStoppingRule, asha its
ASHAScheduler, hyperband its HyperBandScheduler, none its FIFOScheduler.

Each trial is a cifarlab run, trained by a Tune function trainable in a temporary folder
that it reports after every epoch as a Tune checkpoint (with the epoch's validation metric);
when the search is over, each trial's last checkpoint becomes SEARCH/trials/<n>-<hash>/.
Tune keeps checkpoints in SEARCH/ray/, which on a cluster of several nodes must be a shared
filesystem (Ray Tune's own rule). A trial stopped by the scheduler gets the summary.json of
a pruned run, written from its metrics; a NaN loss ends a trial pruned with a NaN value, as
in a local search. A rerun continues the journal's count; a trial a killed driver left
running is failed and its values queued again, and it starts over.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from cifarlab.config.options import TrainConfig, from_dict, resolve
from cifarlab.errors import CifarlabError
from cifarlab.experiments.ray_executor import RayExecutor
from cifarlab.runs.folder import RunDir, config_key
from cifarlab.runs.tracking import Tracking, mark_stopped
from cifarlab.training.loop import NonFiniteLoss, train
from cifarlab.training.summary import summary_of_stopped
from cifarlab.tune.algorithms import PRUNERS
from cifarlab.tune.loop import (
    STUDY,
    Progress,
    TuneSettings,
    asked,
    ended,
    make_sampler,
)
from cifarlab.tune.space import METRICS, SearchSpace
from cifarlab.tune.trial import LOG, TRIALS, copy_run, not_run_files

RAY_DIR = "ray"  # Tune's own folder (its checkpoints) inside the search's


# --------------------------------------------------------------------------- worker


TUNE_FILES = (".metadata.pkl", ".is_checkpoint")  # a Tune checkpoint's own, not the run's


def ray_trial(
    params: dict[str, Any],
    flags: dict[str, Any],
    metric: str,
    threads: int | None,
    tracking: Tracking,
) -> None:
    """A Tune function trainable: train the trial's cifarlab run in a temporary folder,
    reporting the metric and the folder (a checkpoint) after every epoch and at the end."""
    from ray import tune  # lazy: runs on a Ray worker

    if threads:
        torch.set_num_threads(threads)
    for name in ("ray.train", "ray.tune"):  # not a line per checkpoint on the driver
        logging.getLogger(name).setLevel(logging.WARNING)
    cfg = resolve(None, {**flags, **params})
    tracking = tracking.replace(run_name=f"trial-{tune.get_context().get_trial_id()}")
    with tempfile.TemporaryDirectory(prefix="cifarlab-trial-") as tmp:
        folder = Path(tmp) / "run"

        def send(row: dict[str, Any], **extra: Any) -> None:
            metrics = {metric: row[metric], "epoch": row["epoch"], **extra}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))

        def on_epoch(row: dict[str, Any]) -> None:
            if row["epoch"] < cfg.epochs:  # the last one is sent with the test results
                send(row)

        restored = tune.get_checkpoint()  # a trial paused (Hyperband) or retried by Tune
        if restored is None:
            folder.mkdir()
        else:
            with restored.as_directory() as src:
                shutil.copytree(src, folder, ignore=not_run_files(TUNE_FILES))
        resume = RunDir(folder).status() == "partial"
        try:
            with open(folder / LOG, "a") as log, contextlib.redirect_stdout(log):
                train(
                    cfg, folder, resume=resume, progress=False, tracking=tracking, on_epoch=on_epoch
                )
        except CifarlabError as e:  # NaN at the epoch after the last one written
            done = len(RunDir(folder).metrics()) if (folder / "metrics.jsonl").exists() else 0
            why = {"diverged" if isinstance(e, NonFiniteLoss) else "error": str(e)}
            send({metric: math.nan, "epoch": done + 1}, **why)
            return
        send(RunDir(folder).metrics()[-1], finished=True)  # not stopped by the scheduler


# --------------------------------------------------------------------------- driver


def _searcher_class() -> type:
    from ray.tune.search.optuna import OptunaSearch  # lazy: the optional extra

    class JournalSearch(OptunaSearch):
        """Ray's OptunaSearch on our journal study, telling it how each trial ended as a
        local search does (Ray's own says complete for a trial its scheduler stopped):
        complete, pruned (stopped by the scheduler, or diverged) or failed; with the
        trial's run folder and epochs as user attributes."""

        def __init__(self, flags: dict[str, Any], **kw: Any) -> None:
            super().__init__(**kw)
            self.flags = flags
            self.last: dict[str, dict] = {}  # each trial's last result

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            self.last[trial_id] = result
            super().on_trial_result(trial_id, result)

        def on_trial_complete(
            self, trial_id: str, result: dict | None = None, error: bool = False
        ) -> None:
            if trial_id in self._completed_trials:
                return
            ot = self._ot_trials[trial_id]
            result = result or self.last.get(trial_id, {})  # none for a paused trial stopped
            cfg = resolve(None, {**self.flags, **ot.params})
            ot.set_user_attr("run", f"{TRIALS}/{ot.number}-{config_key(cfg)[:8]}")
            ot.set_user_attr("ray_trial", trial_id)
            ot.set_user_attr("epochs", int(result.get("epoch", 0)))
            value = result.get(self.metric)
            if value is not None and "epoch" in result:  # the last result, if Tune stopped it
                with warnings.catch_warnings():  # before sending it on (reported twice: kept once)
                    warnings.simplefilter("ignore")
                    ot.report(value, int(result["epoch"]))
            if error or "error" in result:
                ot.set_user_attr("error", result.get("error", "the Ray trial raised an error"))
                self._ot_study.tell(ot, state=TrialState.FAIL)
            elif "diverged" in result:
                ot.set_user_attr("diverged", result["diverged"])
                self._ot_study.tell(ot, state=TrialState.PRUNED)
            elif result.get("finished"):  # its last epoch, or early stopping's
                self._ot_study.tell(ot, value)
            else:  # stopped by the scheduler
                self._ot_study.tell(ot, state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)

    return JournalSearch


def _callback(out: Path, progress: Progress, study: optuna.Study, tracking: Tracking) -> Any:
    from ray.tune import Callback  # lazy: the optional extra

    class TrialEnds(Callback):
        """Our progress lines and bar, from the journal, as Tune's loop turns; and each
        trial's folder brought home as soon as it ends (Tune tells the searcher first).
        The Tuner pickles its callbacks (a terminal is not picklable): they pickle as
        nothing, and nothing is taken from the function's scope."""

        def __init__(
            self, out: Path, progress: Progress, study: optuna.Study, tracking: Tracking
        ) -> None:
            self.out, self.progress, self.study, self.tracking = out, progress, study, tracking
            self.home: set[str] = set()

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            self.progress.update(self.study)

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            collect(self.out, self.study, trial.trial_id, trial.checkpoint, self.tracking)
            self.home.add(trial.trial_id)

        on_trial_error = on_trial_complete

        def __getstate__(self) -> dict:
            return {}

    return TrialEnds(out, progress, study, tracking)


def run_on_ray(
    out: Path,
    study: optuna.Study,
    space: SearchSpace,
    settings: TuneSettings,
    fixed: dict[str, Any],
    epochs: int,
    tracking: Tracking,
    progress: Progress,
    executor: RayExecutor,
) -> None:
    """Run the trials the search still needs with Ray Tune on the executor's Ray (a local
    one it starts, or its cluster), bringing their folders home; then close it."""
    remaining = settings.trials - len(ended(study))
    if remaining <= 0:
        return
    # one checkpoint an epoch is the point here: no warning about how often they are taken;
    # Tune's older reporter, which verbose=0 silences (our progress lines stand instead)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray = executor._ray()
    try:
        search = _Search(out, study, space, settings, fixed, epochs, tracking, progress)
        _fit(search, ray, executor, remaining)
    finally:
        executor.close()


@dataclass(frozen=True)
class _Search:
    """What Tune's side of a search reads: its folder, study, space, settings, fixed
    options and their epochs, tracking and progress lines."""

    out: Path
    study: optuna.Study
    space: SearchSpace
    settings: TuneSettings
    fixed: dict[str, Any]
    epochs: int
    tracking: Tracking
    progress: Progress


def _fit(s: _Search, ray: Any, executor: RayExecutor, remaining: int) -> None:
    from ray import tune  # lazy: the optional extra

    options, threads = executor._options(ray)
    resources = {"gpu": 1} if "num_gpus" in options else {"cpu": options["num_cpus"]}
    trainable = tune.with_resources(
        tune.with_parameters(
            ray_trial, flags=s.fixed, metric=s.settings.metric, threads=threads, tracking=s.tracking
        ),
        resources,
    )
    mode = "max" if METRICS[s.settings.metric] == "maximize" else "min"
    searcher = _searcher_class()(
        s.fixed,
        space=s.space.distributions(),
        metric=s.settings.metric,
        mode=mode,
        sampler=make_sampler(s.settings, s.space, 0, parallel=True, asked=asked(s.study)),
        study_name=STUDY,
        storage=s.study._storage,
    )
    ends = _callback(s.out, s.progress, s.study, s.tracking)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=s.settings.metric,
            mode=mode,
            search_alg=searcher,
            scheduler=PRUNERS.find(s.settings.pruner).ray(s.epochs),
            num_samples=remaining,
            reuse_actors=True,  # a trial starts in a warm worker (torch and cifarlab imported)
        ),
        run_config=tune.RunConfig(
            name="search",
            storage_path=str((s.out / RAY_DIR).resolve()),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[ends],
            verbose=0,
        ),
    )
    with warnings.catch_warnings():  # a diverged trial's NaN in the schedulers' quantiles
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        results = tuner.fit()
    s.progress.update(s.study)
    for r in results:  # any trial the callback did not bring home
        trial_id = r.metrics.get("trial_id")
        if trial_id not in ends.home:
            collect(s.out, s.study, trial_id, r.checkpoint, s.tracking)


def collect(
    out: Path, study: optuna.Study, trial_id: str | None, checkpoint: Any, tracking: Tracking
) -> None:
    """A Tune trial's last checkpoint into its run folder (SEARCH/trials/<n>-<hash>/), a
    trial stopped by the scheduler given a pruned run's summary.json (and its MLflow run
    tagged pruned), through cifarlab.tune.trial.copy_run."""
    t = next(
        (
            t
            for t in study.get_trials(deepcopy=False)
            if trial_id and t.user_attrs.get("ray_trial") == trial_id
        ),
        None,
    )
    if t is None or checkpoint is None or "run" not in t.user_attrs:
        return
    folder = out / t.user_attrs["run"]
    with checkpoint.as_directory() as src:  # stopped by the scheduler: no summary of its own
        stopped = t.state == TrialState.PRUNED and not (Path(src) / "summary.json").exists()
        copy_run(Path(src), folder, skip=TUNE_FILES, finish=_pruned if stopped else None)
    if stopped:
        mark_stopped(tracking, folder, "pruned")


def _pruned(run: RunDir) -> None:
    """A pruned run's summary.json, from its config and metrics."""
    cfg: TrainConfig = from_dict(run.config())
    run.write_summary(summary_of_stopped(cfg, run.metrics(), "pruned"))
