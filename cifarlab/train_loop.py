"""A training run: a Trainer (the computation) and a RunDir (the files), epoch by epoch.

    summary = train(cfg, run_dir)                 # a new run
    summary = train(cfg, run_dir, resume=True)    # continue from run_dir/checkpoint.pt

The run folder gets config.json, metrics.jsonl (a line per epoch), checkpoint.pt (written
atomically at the end of every epoch), curves.png, confusion_matrix.png and summary.json;
and, as `tracking` asks (cifarlab.tracking), TensorBoard events in tb/ and an MLflow run.

Started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment), `train` trains with
DistributedDataParallel: --batch-size stays the global batch (each process takes
batch_size / world_size images of every global batch, see DeviceLoader), gradients and the
train metrics are summed across processes, validation and test are evaluated in shards
and summed, and only rank 0 writes files and prints. See cifarlab.distributed.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cifarlab import distributed as dist
from cifarlab.config import TrainConfig, flag, from_dict, resolve
from cifarlab.config_parse import command_for, read_config_file
from cifarlab.data import Dataset, Splits, load_dataset, make_splits
from cifarlab.errors import CifarlabError
from cifarlab.evaluation import EvalResult
from cifarlab.hardware import Hardware
from cifarlab.models import count_parameters
from cifarlab.run_folder import RunDir, new_run_dir
from cifarlab.tracking import RunTrackers, Tracking
from cifarlab.train_step import NonFiniteLoss, Trainer, lower_lr_hint

__all__ = ["NonFiniteLoss", "train", "train_from_options"]


@dataclass
class History:
    """What a run has done so far: a metrics row per epoch and the seconds spent
    (whitening, training, validation); stored in every checkpoint."""

    metrics: list[dict] = field(default_factory=list)
    wall: float = 0.0

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> History:
        return cls(list(ckpt["metrics"]), float(ckpt["wall"]))


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
) -> dict[str, Any]:
    """Train one configuration into `run_dir` and return its summary.

    tracking: TensorBoard and MLflow (default: TensorBoard only), written by rank 0.

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
        return _fit(trainer, run, history, main, tracking)


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
    return train(cfg, run_dir, resume=has_checkpoint, progress=progress, backend=backend,
                 dist_timeout=dist_timeout, tracking=tracking)  # fmt: skip


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
    has_checkpoint = run.checkpoint_path.exists()
    if not has_checkpoint:
        log(dist.from_env().rank == 0, f"{run} has no checkpoint yet (it stopped before its "
            "first epoch ended): starting it afresh")  # fmt: skip
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
    if env.rank == 0 and trainer.epoch >= cfg.epochs:
        summary = run.summary()
        done = summary if summary and summary.get("status") == "finished" else None
    done = dist.broadcast_object(done)
    if done is not None:
        log(env.rank == 0, f"{run} has already finished; nothing to resume")
        return None, done
    return trainer, history


def _fit(
    trainer: Trainer, run: RunDir, history: History, main: bool, tracking: Tracking | None
) -> dict[str, Any]:
    """Train the remaining epochs holding the run folder's lock (rank 0): another process
    writing the same folder stops with a message instead of mixing its files in."""
    with run.lock(wait=False) if main else contextlib.nullcontext():
        return _fit_locked(trainer, run, history, main, tracking)


def _fit_locked(
    trainer: Trainer, run: RunDir, history: History, main: bool, tracking: Tracking | None
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
        while trainer.epoch < cfg.epochs:
            t0 = time.perf_counter()
            row = _epoch(trainer)
            history.metrics.append(row)
            history.wall += time.perf_counter() - t0
            ckpt = {**trainer.state_dict(), "metrics": history.metrics, "wall": history.wall}
            if main:
                run.save_epoch(history.metrics, ckpt)
            trackers.epoch(row)
            log(main, epoch_line(row, cfg.epochs))
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


def _finish(
    trainer: Trainer, run: RunDir, history: History, main: bool, trackers: RunTrackers
) -> dict[str, Any]:
    """The final test evaluation, the summary, the figures; then the trackers'."""
    t0 = time.perf_counter()
    test = trainer.evaluate("test")
    trainer.hw.synchronize()
    summary = finished_summary(trainer, history, test, time.perf_counter() - t0)
    probabilities = torch.cat(dist.gather_objects(test.probabilities))  # shards in rank order
    if main:
        split = trainer.splits.test
        run.write_predictions(split.labels, probabilities, split.positions)
        title = f"{trainer.cfg.model} CNN"
        run.write_curves(history.metrics, title=title)
        run.write_confusion(summary["confusion_matrix"], trainer.classes,
                            f"{title}: test confusion matrix, test accuracy "
                            f"{100 * test.acc:.2f}%")  # fmt: skip
        run.write_summary(summary)
        trackers.finish(summary)
        log(
            main,
            f"test loss {test.loss:.4f}  test accuracy {100 * test.acc:.2f}% on "
            f"{summary['test_set']}  ({summary['total_seconds']:.0f} s in all)",
        )
    return summary


# ------------------------------------------------------------------ summaries and lines


def test_set_name(splits: Splits) -> str:
    """What the run's test set is, in words (cifarlab.data.splits.describe_test_set)."""
    return splits.test_set or f"{len(splits.test):,} images"


def finished_summary(
    trainer: Trainer, history: History, test: EvalResult, eval_seconds: float
) -> dict[str, Any]:
    """summary.json of a finished run."""
    cfg, m = trainer.cfg, history.metrics
    v = [r for r in m if r["val_acc"] is not None]
    return {
        "status": "finished",
        "model": cfg.model,
        "model_source": trainer.model_source,
        "dataset": cfg.dataset,
        "parameters": count_parameters(trainer.model),
        "epochs_completed": trainer.epoch,
        "test_loss": test.loss,
        "test_acc": test.acc,
        "test_size": len(trainer.splits.test),
        "test_set": test_set_name(trainer.splits),
        "per_class_test_acc": dict(zip(trainer.classes, test.per_class_acc(), strict=True)),
        "confusion_matrix": test.confusion.tolist(),
        "tta": cfg.tta,
        "final_val_acc": m[-1]["val_acc"] if m else None,
        "best_val_acc": max(r["val_acc"] for r in v) if v else None,
        "best_val_epoch": max(v, key=lambda r: r["val_acc"])["epoch"] if v else None,
        "train_seconds": sum(r["seconds"] for r in m),
        "whiten_seconds": trainer.whiten_seconds,
        "test_seconds": eval_seconds,
        "total_seconds": history.wall + eval_seconds,
        "mean_images_per_second": sum(r["images_per_second"] for r in m) / len(m) if m else None,
        "command": command_for(cfg),
        **trainer.hw.describe(trainer.world_size),
    }


def failure_summary(trainer: Trainer, epochs_completed: int, message: str) -> dict[str, Any]:
    """summary.json of a run stopped by a NaN or infinite loss."""
    return {
        "status": "failed",
        "error": message,
        "epochs_completed": epochs_completed,
        "command": command_for(trainer.cfg),
        **trainer.hw.describe(trainer.world_size),
    }


def header_line(trainer: Trainer, run: RunDir, name: str | None = None) -> str:
    """The line a run starts with; name: what tells it apart in a sweep or study (lr=0.05)."""
    s, hw = trainer.splits, trainer.hw
    resuming = ""
    if trainer.epoch > 0:
        resuming = f" | resuming at epoch {trainer.epoch + 1} of {trainer.cfg.epochs}"
    processes = ""
    if trainer.distributed:
        processes = f" x {trainer.world_size} processes (global batch {trainer.cfg.batch_size})"
    return (
        f"{trainer.cfg.model} CNN{f' ({name})' if name else ''}, "
        f"{count_parameters(trainer.model):,} parameters | "
        f"train {len(s.train):,} val {len(s.val):,} test {len(s.test):,} | "
        f"{hw.device.type} {hw.precision} ({hw.why}), {hw.describe()['threads']} threads"
        f"{processes} | run folder {run}{resuming}"
    )


def limit_note(cfg: TrainConfig, train_size: int) -> str | None:
    """A --limit above the training set's size trains on all of it: said once, not silently."""
    if cfg.limit is None or cfg.limit <= train_size:
        return None
    return (
        f"note: --limit {cfg.limit} is more than the {train_size:,} training images; "
        "using all of them"
    )


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = ""
    if row["val_loss"] is not None:
        val = f"val loss {row['val_loss']:.4f} acc {100 * row['val_acc']:6.2f}%  "
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {100 * row['train_acc']:6.2f}%  {val}{row['seconds']:6.1f} s "
        f"{row['images_per_second']:7,.0f} img/s"
    )


def log(main: bool, message: str) -> None:
    """A line for the user (rank 0 only), printed above any progress bar."""
    if main:
        tqdm.write(message)
        sys.stdout.flush()
