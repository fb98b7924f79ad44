"""A training run: a Trainer (the computation) and a RunDir (the files), epoch by epoch.

    summary = train(cfg, run_dir)                 # a new run
    summary = train(cfg, run_dir, resume=True)    # continue from run_dir/checkpoint.pt

The run folder gets config.json, metrics.jsonl (a line per epoch), checkpoint.pt (written
atomically at the end of every epoch), curves.png, confusion_matrix.png and summary.json;
and, as `tracking` asks (cifarlab.runs.tracking), TensorBoard events in tb/ and an MLflow run.

Started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment), `train` trains with
DistributedDataParallel: --batch-size stays the global batch (each process takes
batch_size / world_size images of every global batch, see DeviceLoader), gradients and the
train metrics are summed across processes, validation and test are evaluated in shards
and summed, and only rank 0 writes files and prints. See cifarlab.training.distributed.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from cifarlab.config.options import TrainConfig, flag, from_dict, resolve
from cifarlab.config.parse import read_config_file
from cifarlab.data import Dataset, load_dataset, make_splits
from cifarlab.errors import CifarlabError
from cifarlab.report.format import percent
from cifarlab.runs.folder import RunDir, new_run_dir
from cifarlab.runs.tracking import RunTrackers, Tracking
from cifarlab.training import distributed as dist
from cifarlab.training.hardware import Hardware
from cifarlab.training.optim import NAMES
from cifarlab.training.summary import (
    History,
    early_stop_line,
    epoch_line,
    failure_summary,
    finished_summary,
    header_line,
    limit_note,
    log,
    stopped_early,
    stopped_summary,
)
from cifarlab.training.trainer import NonFiniteLoss, Trainer, lower_lr_hint

__all__ = ["EpochHook", "NonFiniteLoss", "train", "train_from_options"]

# Called (on rank 0) after each epoch, once its metrics row and checkpoint are saved, with
# that row: None trains on; a word ('pruned') stops the run there, its summary.json saying
# "status": <the word> (no test evaluation). A hyperparameter search prunes trials so.
EpochHook = Callable[[dict[str, Any]], str | None]


def train(
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    data: Dataset | None = None,
    progress: bool = True,
    backend: str | None = None,
    dist_timeout: float | None = None,
    tracking: Tracking | None = None,
    on_epoch: EpochHook | None = None,
) -> dict[str, Any]:
    """Train one configuration into `run_dir` and return its summary.

    tracking: TensorBoard and MLflow (default: TensorBoard only), written by rank 0.
    on_epoch: see EpochHook; it may stop the run early.

    Under torchrun (WORLD_SIZE > 1 in the environment) this process is one rank of a
    data-parallel run: the process group is created here (backend: auto, gloo or nccl;
    dist_timeout: seconds a collective waits) and destroyed at the end.
    """
    env = dist.from_env()
    with dist.same_on_every_rank():  # checked before any process waits for another
        hardware = Hardware.choose(cfg)
        if env.enabled:
            dist.check_batch_size(cfg.batch_size, env.world_size)
            dist.pick_backend(backend, hardware.device)
    if env.enabled:  # CUDA devices may differ per machine: each rank reports its own
        hardware = hardware.for_rank(env.local_rank)
    with dist.process_group(env, hardware.device, backend, dist_timeout):
        # one run folder for all (a default name holds the time, which may differ per rank)
        run = RunDir(dist.broadcast_object(str(run_dir)))
        trainer, history = _setup(cfg, run, hardware, env, resume, data, progress)
        if trainer is None:
            return history  # already finished: its summary
        main = env.rank == 0
        tracking = (tracking or Tracking()) if main else None
        return _fit(trainer, run, history, main, tracking, on_epoch)


def train_from_options(
    flags: dict[str, Any],
    *,
    config_file: str | None = None,
    out: str | None = None,
    resume: str | None = None,
    progress: bool = True,
    backend: str | None = None,
    dist_timeout: float | None = None,
    tracking: Tracking | None = None,
) -> dict[str, Any]:
    """`cifarlab train`: the config from the model's recipe, a --config file and the flags
    given (or, with `resume`, the run folder's own config.json), then train()."""
    tracking = tracking or Tracking()
    with dist.same_on_every_rank():
        if resume is not None:
            cfg, run_dir, has_checkpoint = resumed_config(resume, flags, config_file or out)
        else:
            file_values = read_config_file(config_file) if config_file else None
            cfg = resolve(file_values, flags)
            run_dir, has_checkpoint = new_run_dir(out, "train", create=False), False
        tracking.check_required()  # --mlflow-required: a server that is down stops us here
    return train(
        cfg,
        run_dir,
        resume=has_checkpoint,
        progress=progress,
        backend=backend,
        dist_timeout=dist_timeout,
        tracking=tracking,
    )


def resumed_config(
    resume: str, flags: dict[str, Any], other: Any
) -> tuple[TrainConfig, Path, bool]:
    """The config of the run to resume (its config.json; --data-dir may point elsewhere),
    its folder, and whether it has a checkpoint: a run killed before its first epoch
    ended has none, and starts afresh (with a notice)."""
    given = sorted(k for k, v in flags.items() if v is not None and k != "data_dir")
    if given or other:
        extra = ", ".join(flag(k) for k in given) or "--config/--out"
        raise CifarlabError(f"--resume takes its options from {resume}/config.json; drop {extra}")
    run = RunDir(resume)
    if not (run.path / "config.json").exists():
        raise CifarlabError(
            f"--resume {resume}: no run there (no config.json); give the folder of a run "
            "that `cifarlab train` started"
        )
    values = run.config()
    if flags.get("data_dir"):
        values["data_dir"] = flags["data_dir"]
    try:
        cfg = from_dict(values)
    except CifarlabError as e:
        raise CifarlabError(f"{run.path}/config.json: {e}") from None
    if dist.from_env().rank == 0:  # another process training it: say so before any work
        with run.lock(wait=False):
            pass
    has_checkpoint = run.checkpoint_path.exists()
    if not has_checkpoint:
        log(
            dist.from_env().rank == 0,
            f"{run} has no checkpoint yet (it stopped before its "
            "first epoch ended): starting it afresh",
        )
    return cfg, run.path, has_checkpoint


def _load_data(cfg: TrainConfig, env: dist.DistEnv) -> Dataset:
    """Each machine's first process loads (and downloads, if needed) first, then the rest,
    so that processes never download into the same cache at once."""
    first = env.local_rank == 0
    data = dist.agreed(lambda: load_dataset(**cfg.dataset_args()) if first else None)
    later = dist.agreed(lambda: None if first else load_dataset(**cfg.dataset_args()))
    return data if first else later


def _setup(
    cfg: TrainConfig,
    run: RunDir,
    hardware: Hardware,
    env: dist.DistEnv,
    resume: bool,
    data: Dataset | None,
    progress: bool,
) -> tuple[Trainer | None, Any]:
    """The Trainer and History of a new or resumed run; (None, summary) for a resumed run
    that has already finished."""
    if not resume:
        dist.agreed(run.check_new)
    if data is None:
        data = _load_data(cfg, env)
    trainer = dist.agreed(
        lambda: Trainer(
            cfg,
            make_splits(data, **cfg.split_args()),
            hardware,
            progress=progress,
            rank=env.rank,
            world_size=env.world_size,
        )
    )
    history = History()
    if not resume:
        return trainer, history
    ckpt = dist.agreed(run.load_checkpoint)  # every rank reads it (a shared folder)
    dist.agreed(lambda: trainer.load_state_dict(ckpt))
    history = History.from_checkpoint(ckpt)
    done = None
    if env.rank == 0 and (trainer.epoch >= cfg.epochs or trainer.early_stop.stopped):
        summary = run.summary()
        done = summary if summary and summary.get("status") == "finished" else None
    done = dist.broadcast_object(done)
    if done is not None:
        log(env.rank == 0, f"{run} has already finished; nothing to resume")
        return None, done
    return trainer, history


def _fit(
    trainer: Trainer,
    run: RunDir,
    history: History,
    main: bool,
    tracking: Tracking | None,
    on_epoch: EpochHook | None,
) -> dict[str, Any]:
    """Train the remaining epochs holding the run folder's lock (rank 0): another process
    writing the same folder stops with a message instead of mixing its files in."""
    with run.lock(wait=False) if main else contextlib.nullcontext():
        return _fit_locked(trainer, run, history, main, tracking, on_epoch)


def _fit_locked(
    trainer: Trainer,
    run: RunDir,
    history: History,
    main: bool,
    tracking: Tracking | None,
    on_epoch: EpochHook | None,
) -> dict[str, Any]:
    """Train the remaining epochs, checkpointing after each; then test and summarize.
    The trackers (rank 0) are called after each epoch's timing and files."""
    cfg = trainer.cfg
    if main:
        run.start(cfg)
    history.wall += trainer.prepare()  # before DDP, which copies rank 0's whitening layer
    trainer.wrap_ddp()
    log(main, header_line(trainer, run, tracking.run_name if tracking else None))
    note = limit_note(cfg, len(trainer.splits.train))
    if note:
        log(main, note)
    trackers = RunTrackers.open(tracking, run, cfg, trainer.hw.describe(trainer.world_size))
    try:
        trackers.start(history.metrics)
        while trainer.epoch < cfg.epochs and not trainer.early_stop.stopped:
            t0 = time.perf_counter()
            row = _epoch(trainer)
            best = trainer.early_stop.update(row["epoch"], row["val_acc"])  # --early-stop
            history.metrics.append(row)
            history.wall += time.perf_counter() - t0
            ckpt = {**trainer.state_dict(), "metrics": history.metrics, "wall": history.wall}
            if main:
                run.save_epoch(history.metrics, ckpt, best=best)
            trackers.epoch(row)
            log(main, epoch_line(row, cfg.epochs))
            stop = on_epoch(row) if main and on_epoch else None
            stop = dist.broadcast_object(stop)
            if stop is not None and trainer.epoch < cfg.epochs:
                return _stop(trainer, run, history, main, trackers, stop)
        if stopped_early(trainer):
            log(main, early_stop_line(trainer))
        return _finish(trainer, run, history, main, trackers)
    except NonFiniteLoss as e:
        if main:
            run.write_summary(failure_summary(trainer, len(history.metrics), str(e)))
        trackers.end("FAILED", str(e))
        raise
    except BaseException:  # killed or interrupted: --resume continues the same trackers
        trackers.end("KILLED")
        raise


def _epoch(trainer: Trainer) -> dict[str, Any]:
    """Train one epoch and validate: the metrics row of the epoch."""
    row = trainer.train_epoch()
    val = trainer.evaluate("val") if len(trainer.splits.val) else None
    if val and not math.isfinite(val.loss):  # summed over ranks: every rank stops
        raise dist.mark_every_rank(
            NonFiniteLoss(
                f"the validation loss became NaN or infinite at epoch {row['epoch']}; "
                f"{lower_lr_hint(trainer.cfg.lr)}"
            )
        )
    return {
        "epoch": row["epoch"],
        "train_loss": row["train_loss"],
        "train_acc": row["train_acc"],
        "val_loss": val.loss if val else None,  # None: no validation split
        "val_acc": val.acc if val else None,
        "lr": trainer.optimizer.param_groups[0]["lr"],
        "seconds": row["seconds"],
        "images_per_second": row["images_per_second"],
        # added last, so that the keys above stay as they were: "lr" is the end-of-epoch value
        "lr_mean": row["lr_mean"],
    }


def run_title(cfg: TrainConfig) -> str:
    """What a run's figures are titled: its model and what tells it from its neighbours."""
    optimizer = f"{NAMES[cfg.optimizer]} lr {cfg.lr:g}"
    return f"{cfg.model}, {optimizer}, batch {cfg.batch_size}, seed {cfg.seed}"


def _finish(
    trainer: Trainer, run: RunDir, history: History, main: bool, trackers: RunTrackers
) -> dict[str, Any]:
    """The final test evaluation (of the best epoch's weights with --early-stop), the
    summary, the figures; then the trackers'."""
    if trainer.early_stop.enabled:  # every rank reads best.pt (a shared folder)
        trainer.model.load_state_dict(dist.agreed(run.load_best)["state_dict"])
    t0 = time.perf_counter()
    test = trainer.evaluate("test")
    trainer.hw.synchronize()
    summary = finished_summary(trainer, history, test, time.perf_counter() - t0)
    probabilities = torch.cat(dist.gather_objects(test.probabilities))  # shards in rank order
    if main:
        split = trainer.splits.test
        run.write_predictions(split.labels, probabilities, split.positions)
        title = run_title(trainer.cfg)
        run.write_curves(history.metrics, title=title)
        run.write_confusion(
            summary["confusion_matrix"],
            trainer.classes,
            f"{title}: test confusion matrix, test accuracy {100 * test.acc:.2f}%",
        )
        run.write_summary(summary)
        trackers.finish(summary)
        log(
            main,
            f"test loss {test.loss:.4f}  test accuracy {percent(test.acc)} on "
            f"{summary['test_set']}  ({summary['total_seconds']:.0f} s in all)",
        )
    return summary


def _stop(
    trainer: Trainer, run: RunDir, history: History, main: bool, trackers: RunTrackers, why: str
) -> dict[str, Any]:
    """A run stopped early by its on_epoch hook: its curves and summary (status `why`)."""
    summary = stopped_summary(trainer, history, why)
    if main:
        run.write_curves(history.metrics, title=f"{run_title(trainer.cfg)} ({why})")
        run.write_summary(summary)
        trackers.stop(why)
        log(main, f"{why} after epoch {trainer.epoch} of {trainer.cfg.epochs}")
    return summary
