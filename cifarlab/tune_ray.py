"""--executor ray for cifarlab.tune: the same search run by Ray Tune, on a local Ray or a
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

from cifarlab.config import TrainConfig, from_dict, resolve
from cifarlab.errors import CifarlabError
from cifarlab.executors import TEMPORARY, RayExecutor
from cifarlab.run_folder import LOCK, RunDir, config_key
from cifarlab.run_summary import summary_of_stopped
from cifarlab.tracking import Tracking
from cifarlab.train_loop import NonFiniteLoss, train
from cifarlab.tune_loop import (
    STUDY,
    Progress,
    TuneSettings,
    asked,
    ended,
    make_sampler,
)
from cifarlab.tune_space import METRICS, SearchSpace
from cifarlab.tune_trial import LOG, TRIALS

RAY_DIR = "ray"  # Tune's own folder (its checkpoints) inside the search's


@dataclass(frozen=True)
class RaySettings:
    """Where Ray Tune runs: a cluster's address (None: a local Ray) and CPUs per trial."""

    address: str | None = None
    cpus_per_run: int | None = None


def ray_settings(
    name: str, ray_address: str | None, ray_cpus_per_run: int | None
) -> RaySettings | None:
    """--executor local|ray with its options: the Ray settings, None for a local search."""
    if name == "ray":
        return RaySettings(ray_address, ray_cpus_per_run)
    if ray_address or ray_cpus_per_run:
        raise CifarlabError("--ray-address and --ray-cpus-per-run need --executor ray")
    return None


def scheduler(pruner: str, epochs: int) -> Any:
    """Tune's scheduler for --pruner, each epoch a step (as Optuna's pruners have it)."""
    from ray.tune import schedulers  # lazy: the optional extra

    if pruner == "median":
        return schedulers.MedianStoppingRule(
            time_attr="epoch", grace_period=1, min_samples_required=5
        )
    if pruner == "asha":
        return schedulers.ASHAScheduler(time_attr="epoch", max_t=max(epochs, 2), grace_period=1)
    if pruner == "hyperband":
        return schedulers.HyperBandScheduler(time_attr="epoch", max_t=max(epochs, 2))
    return schedulers.FIFOScheduler()


# --------------------------------------------------------------------------- worker


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
        last: dict[str, Any] = {}

        def send(row: dict[str, Any], **extra: Any) -> None:
            last.update(row)
            metrics = {metric: row[metric], "epoch": row["epoch"], **extra}
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(folder)))

        def on_epoch(row: dict[str, Any]) -> None:
            if row["epoch"] < cfg.epochs:  # the last one is sent with the test results
                send(row)

        folder.mkdir()
        try:
            with open(folder / LOG, "a") as log, contextlib.redirect_stdout(log):
                train(cfg, folder, progress=False, tracking=tracking, on_epoch=on_epoch)
        except NonFiniteLoss as e:
            send({metric: math.nan, "epoch": last.get("epoch", 0) + 1}, diverged=str(e))
            return
        except CifarlabError as e:
            send({metric: math.nan, "epoch": last.get("epoch", 0) + 1}, error=str(e))
            return
        send(RunDir(folder).metrics()[-1])


# --------------------------------------------------------------------------- driver


def _searcher_class() -> type:
    from ray.tune.search.optuna import OptunaSearch  # lazy: the optional extra

    class JournalSearch(OptunaSearch):
        """Ray's OptunaSearch on our journal study, telling it how each trial ended as a
        local search does (Ray's own says complete for a trial its scheduler stopped):
        complete, pruned (stopped before its last epoch, or diverged) or failed; with the
        trial's run folder and epochs as user attributes."""

        def __init__(self, epochs: int, flags: dict[str, Any], **kw: Any) -> None:
            super().__init__(**kw)
            self.epochs, self.flags = epochs, flags

        def on_trial_complete(
            self, trial_id: str, result: dict | None = None, error: bool = False
        ) -> None:
            if trial_id in self._completed_trials:
                return
            ot = self._ot_trials[trial_id]
            result = result or {}
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
            elif value is None or result.get("epoch", 0) < min(cfg.epochs, self.epochs):
                self._ot_study.tell(ot, state=TrialState.PRUNED)
            else:
                self._ot_study.tell(ot, value)
            self._completed_trials.add(trial_id)

    return JournalSearch


def _progress_callback(progress: Progress, study: optuna.Study) -> Any:
    from ray.tune import Callback  # lazy: the optional extra

    class ProgressLines(Callback):
        """Our progress lines and bar, from the journal, as Tune's loop turns. The Tuner
        pickles its callbacks (a terminal is not picklable): they pickle as nothing."""

        def __init__(self, progress: Progress, study: optuna.Study) -> None:
            self.progress, self.study = progress, study

        def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
            self.progress.update(self.study)

        def __getstate__(self) -> dict:
            return {}

    return ProgressLines(progress, study)


def run_on_ray(
    out: Path,
    study: optuna.Study,
    space: SearchSpace,
    settings: TuneSettings,
    fixed: dict[str, Any],
    tracking: Tracking,
    progress: Progress,
    ray_settings: RaySettings,
) -> None:
    """Run the trials the search still needs with Ray Tune, then bring their folders home."""
    remaining = settings.trials - len(ended(study))
    if remaining <= 0:
        return
    # one checkpoint an epoch is the point here: no warning about how often they are taken;
    # Tune's older reporter, which verbose=0 silences (our progress lines stand instead)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    executor = RayExecutor(ray_settings.address, ray_settings.cpus_per_run)
    ray = executor._ray()
    try:
        _fit(out, ray, executor, study, space, settings, fixed, tracking, progress, remaining)
    finally:
        executor.close()


def _fit(
    out: Path,
    ray: Any,
    executor: RayExecutor,
    study: optuna.Study,
    space: SearchSpace,
    settings: TuneSettings,
    fixed: dict[str, Any],
    tracking: Tracking,
    progress: Progress,
    remaining: int,
) -> None:
    from ray import tune  # lazy: the optional extra

    base = resolve(None, fixed)
    options, threads = executor._options(ray)
    resources = {"gpu": 1} if "num_gpus" in options else {"cpu": options["num_cpus"]}
    trainable = tune.with_resources(
        tune.with_parameters(
            ray_trial, flags=fixed, metric=settings.metric, threads=threads, tracking=tracking
        ),
        resources,
    )
    mode = "max" if METRICS[settings.metric] == "maximize" else "min"
    searcher = _searcher_class()(
        base.epochs,
        fixed,
        space=space.distributions(),
        metric=settings.metric,
        mode=mode,
        sampler=make_sampler(settings, space, 0, parallel=True, asked=asked(study)),
        study_name=STUDY,
        storage=study._storage,
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=mode,
            search_alg=searcher,
            scheduler=scheduler(settings.pruner, base.epochs),
            num_samples=remaining,
        ),
        run_config=tune.RunConfig(
            name="search",
            storage_path=str((out / RAY_DIR).resolve()),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[_progress_callback(progress, study)],
            verbose=0,
        ),
    )
    with warnings.catch_warnings():  # a diverged trial's NaN in the schedulers' quantiles
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        results = tuner.fit()
    progress.update(study)
    collect(out, study, [(r.metrics.get("trial_id"), r.checkpoint) for r in results])


def collect(out: Path, study: optuna.Study, checkpoints: list[tuple[str | None, Any]]) -> None:
    """Each Tune trial's last checkpoint into its run folder (SEARCH/trials/<n>-<hash>/),
    a trial stopped by the scheduler given a pruned run's summary.json."""
    by_id = {t.user_attrs.get("ray_trial"): t for t in study.get_trials(deepcopy=False)}
    for trial_id, checkpoint in checkpoints:
        t = by_id.get(trial_id)
        if t is None or checkpoint is None:
            continue
        folder = out / t.user_attrs["run"]
        with checkpoint.as_directory() as src:
            _copy_run(Path(src), folder)
        run = RunDir(folder)
        if t.state == TrialState.PRUNED and run.summary() is None:
            cfg: TrainConfig = from_dict(run.config())
            run.write_summary(summary_of_stopped(cfg, run.metrics(), "pruned"))


def _copy_run(src: Path, folder: Path) -> None:
    """A trial's folder from its checkpoint (not the lock or temporary files), under a
    temporary name first: a kill while copying leaves no half folder."""
    tmp = folder.with_name(f".{folder.name}.copy")
    shutil.rmtree(tmp, ignore_errors=True)
    skip = {LOCK, ".metadata.pkl", ".is_checkpoint"}

    def ignore(_: str, names: list[str]) -> set[str]:
        return {n for n in names if n in skip or TEMPORARY.match(n)}

    shutil.copytree(src, tmp, ignore=ignore)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
