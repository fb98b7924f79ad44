"""What a training run says and leaves behind besides its weights: its History (the metrics
rows and seconds, stored in every checkpoint), summary.json of a finished, stopped or failed
run, and the lines it prints (header, one per epoch)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from cifarlab.config.options import TrainConfig
from cifarlab.config.parse import command_for
from cifarlab.data import Splits
from cifarlab.models.builtin import count_parameters
from cifarlab.report.format import percent
from cifarlab.runs.folder import RunDir
from cifarlab.training.evaluation import EvalResult
from cifarlab.training.trainer import Trainer


@dataclass
class History:
    """What a run has done so far: a metrics row per epoch and the seconds spent
    (whitening, training, validation); stored in every checkpoint."""

    metrics: list[dict] = field(default_factory=list)
    wall: float = 0.0

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> History:
        return cls(list(ckpt["metrics"]), float(ckpt["wall"]))


def test_set_name(splits: Splits) -> str:
    """What the run's test set is, in words (cifarlab.data.splits.describe_test_set)."""
    return splits.test_set or f"{len(splits.test):,} images"


def finished_summary(
    trainer: Trainer, history: History, test: EvalResult, eval_seconds: float
) -> dict[str, Any]:
    """summary.json of a finished run."""
    cfg, m = trainer.cfg, history.metrics
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
        **val_fields(m),
        **early_stop_fields(trainer),
        "train_seconds": sum(r["seconds"] for r in m),
        "whiten_seconds": trainer.whiten_seconds,
        "test_seconds": eval_seconds,
        "total_seconds": history.wall + eval_seconds,
        "mean_images_per_second": sum(r["images_per_second"] for r in m) / len(m) if m else None,
        "command": command_for(cfg),
        **trainer.hw.describe(trainer.world_size),
    }


def val_fields(metrics: list[dict]) -> dict[str, Any]:
    """The validation results of a run's epochs: final, best and the best's epoch."""
    v = [r for r in metrics if r["val_acc"] is not None]
    return {
        "final_val_acc": metrics[-1]["val_acc"] if metrics else None,
        "best_val_acc": max(r["val_acc"] for r in v) if v else None,
        "best_val_epoch": max(v, key=lambda r: r["val_acc"])["epoch"] if v else None,
    }


def early_stop_fields(trainer: Trainer) -> dict[str, Any]:
    """With --early-stop: which weights were tested ("best (epoch 3)", from best.pt) and
    the epoch the run stopped at (None: it ran all its epochs). Nothing without."""
    if not trainer.early_stop.enabled:
        return {}
    return {
        "tested_weights": trainer.early_stop.describe(),
        "early_stopped_at": trainer.epoch if stopped_early(trainer) else None,
    }


def stopped_early(trainer: Trainer) -> bool:
    """Whether early stopping ended the run before its last epoch."""
    return trainer.early_stop.stopped and trainer.epoch < trainer.cfg.epochs


def early_stop_line(trainer: Trainer) -> str:
    stop = trainer.early_stop
    return (
        f"early stop after epoch {trainer.epoch}: no better validation accuracy in "
        f"{stop.patience} epoch{'s' if stop.patience > 1 else ''}; testing the best weights "
        f"(epoch {stop.best_epoch}, val acc {percent(stop.best)}, best.pt)"
    )


def stopped_summary(trainer: Trainer, history: History, status: str) -> dict[str, Any]:
    """summary.json of a run stopped before its last epoch by its caller (status says why,
    e.g. 'pruned' by a hyperparameter search): no test evaluation, the test set is not
    looked at for a run that was not finished."""
    return {
        **summary_of_stopped(trainer.cfg, history.metrics, status, history.wall),
        "epochs_completed": trainer.epoch,
        "parameters": count_parameters(trainer.model),
        **trainer.hw.describe(trainer.world_size),
    }


def summary_of_stopped(
    cfg: TrainConfig, metrics: list[dict], status: str, wall: float | None = None
) -> dict[str, Any]:
    """What a stopped run's summary.json says that its config and metrics tell (a run
    stopped from outside its process, by Ray Tune's scheduler, has only these)."""
    train_seconds = sum(r["seconds"] for r in metrics)
    return {
        "status": status,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "epochs_completed": len(metrics),
        **val_fields(metrics),
        "train_seconds": train_seconds,
        "total_seconds": wall if wall is not None else train_seconds,
        "mean_images_per_second": (
            sum(r["images_per_second"] for r in metrics) / len(metrics) if metrics else None
        ),
        "command": command_for(cfg),
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


def model_words(model: str) -> str:
    """What a run's first line calls its model: the study's two CNNs by their names
    ('base CNN'), any other model by its own ('resnet18', 'timm:vit_tiny_patch16_224')."""
    return f"{model} CNN" if model in ("base", "improved") else model


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
        f"{model_words(trainer.cfg.model)}{f' ({name})' if name else ''}, "
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
        val = f"val loss {row['val_loss']:.4f} acc {percent(row['val_acc']):>7}  "
    return (
        f"epoch {row['epoch']:>3}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {percent(row['train_acc']):>7}  {val}{row['seconds']:6.1f} s "
        f"{row['images_per_second']:7,.0f} img/s"
    )


def log(main: bool, message: str) -> None:
    """A line for the user (rank 0 only), printed above any progress bar."""
    if main:
        tqdm.write(message)
        sys.stdout.flush()
