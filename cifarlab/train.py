"""The training loop: data -> model -> epochs -> run folder.

    summary = train(cfg, run_dir)                 # a new run
    summary = train(cfg, run_dir, resume=True)    # continue from run_dir/checkpoint.pt

The run folder gets config.json, metrics.jsonl (a line per epoch), checkpoint.pt (written
atomically at the end of every epoch), curves.png and summary.json.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cifarlab import __version__
from cifarlab.analysis import channel_stats
from cifarlab.checkpoint import FILENAME, load_checkpoint, make_checkpoint, save_checkpoint
from cifarlab.config import TrainConfig, validate
from cifarlab.data import Cifar10, Splits, load_cifar10, make_splits
from cifarlab.engine import (
    DeviceLoader,
    autocast,
    evaluate,
    lr_lambda,
    pick_device,
    pick_precision,
)
from cifarlab.errors import CifarlabError
from cifarlab.models import build_model, count_parameters
from cifarlab.runs import make_dir, read_json, write_json, write_jsonl


class NonFiniteLoss(CifarlabError):
    pass


def command_for(cfg: TrainConfig) -> str:
    """The `cifarlab train` command line that reproduces a config."""
    parts = ["cifarlab train"]
    for key, value in cfg.to_dict().items():
        if value is None or key == "data_dir":
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{key.replace('_', '-')}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def environment(device: torch.device, precision: str) -> dict[str, Any]:
    env = {
        "device": device.type,
        "device_name": platform.processor() or platform.machine(),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "torch_version": str(torch.__version__),
        "cifarlab_version": __version__,
        "python_version": platform.python_version(),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
    return env


@dataclass
class State:
    """What changes as training goes on; all of it goes into the checkpoint."""

    epoch: int = 0
    metrics: list[dict] = field(default_factory=list)
    wall: float = 0.0  # seconds of training, validation and checkpointing so far


def prepare_splits(cfg: TrainConfig, data: Cifar10) -> Splits:
    """The train/validation/test splits of a run (`evaluate` rebuilds them from a config)."""
    splits = make_splits(data, cfg.val_from, cfg.val_size, cfg.split_seed)
    if cfg.limit is not None:
        splits.train = splits.train.subset(torch.arange(min(cfg.limit, len(splits.train))))
    if cfg.eval_limit is not None:
        for name in ("val", "test"):
            s = getattr(splits, name)
            setattr(splits, name, s.subset(torch.arange(min(cfg.eval_limit, len(s)))))
    return splits


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        *,
        data: Cifar10 | None = None,
        progress: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        validate(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.rank = rank
        self.world_size = world_size
        self.is_main = rank == 0
        self.device = pick_device(cfg.device)
        self.precision = pick_precision(cfg.precision, self.device)

        data = data if data is not None else load_cifar10(cfg.data_dir)
        self.classes = data.classes
        self.splits = prepare_splits(cfg, data)
        if len(self.splits.train) < world_size:
            raise CifarlabError("fewer training images than processes")
        self.mean, self.std = channel_stats(self.splits.train.images)

        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.model = build_model(cfg.model).to(self.device, memory_format=torch.channels_last)
        self.model_kwargs: dict[str, Any] = {}
        self.ddp_model: nn.Module = self.model
        self.train_loader = DeviceLoader(
            self.splits.train,
            cfg.batch_size,
            self.device,
            self.mean,
            self.std,
            shuffle=True,
            augment=cfg.augment,
            generator=self.generator,
            rank=rank,
            world_size=world_size,
        )
        eval_args = (cfg.eval_batch_size, self.device, self.mean, self.std)
        self.val_loader = DeviceLoader(self.splits.val, *eval_args)
        self.test_loader = DeviceLoader(self.splits.test, *eval_args)
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
        steps = len(self.train_loader)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lr_lambda(cfg.schedule, cfg.epochs * steps, round(cfg.warmup_epochs * steps)),
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.state = State()
        self.env = environment(self.device, self.precision)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> dict[str, Any]:
        rng = {"torch": torch.get_rng_state(), "data": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return make_checkpoint(
            self.model,
            model_name=self.cfg.model,
            model_kwargs=self.model_kwargs,
            classes=self.classes,
            mean=self.mean,
            std=self.std,
            config=self.cfg.to_dict(),
            epoch=self.state.epoch,
            metrics=self.state.metrics,
            wall=self.state.wall,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng,
        )

    def restore(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("config") != self.cfg.to_dict():
            raise CifarlabError(
                f"the checkpoint in {self.run_dir} was written with another config; "
                "start a new run instead of --resume"
            )
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        self.generator.set_state(ckpt["rng"]["data"])
        if "cuda" in ckpt["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], self.device)
        self.state = State(ckpt["epoch"], list(ckpt["metrics"]), float(ckpt["wall"]))

    # ---------------------------------------------------------------------- epochs

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set. The step holds no host synchronization except
        on progress updates (every `sync_every` steps on CUDA, every step on the CPU)."""
        model, cfg, device = self.ddp_model, self.cfg, self.device
        model.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        first_bad = torch.full((), -1, device=device, dtype=torch.int64)
        seen = 0
        steps = len(self.train_loader)
        sync_every = 1 if device.type == "cpu" else 25
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch}/{cfg.epochs}",
            disable=not (self.progress and self.is_main),
            leave=False,
            unit="step",
            dynamic_ncols=True,
        )
        t0 = time.perf_counter()
        for step, (x, y) in enumerate(self.train_loader, start=1):
            with autocast(device, self.precision):
                out = model(x)
                loss = F.cross_entropy(out, y, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            loss = loss.detach().float()
            loss_sum += loss * len(y)
            correct += (out.argmax(1) == y).sum()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            seen += len(y)
            if step % sync_every == 0 or step == steps:
                self._check_finite(epoch, first_bad)
                rate = seen * self.world_size / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{float(loss):.4f}", img_s=f"{rate:,.0f}", refresh=False)
                bar.update(step - bar.n)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        bar.close()
        return {
            "train_loss": float(loss_sum) / seen,
            "train_acc": float(correct) / seen,
            "seconds": seconds,
            "images_per_second": seen * self.world_size / seconds,
        }

    def _check_finite(self, epoch: int, first_bad: torch.Tensor) -> None:
        bad = int(first_bad)
        if bad >= 0:
            raise NonFiniteLoss(
                f"the loss became NaN or infinite at epoch {epoch}, step {bad} "
                f"(lr {self.cfg.lr}); try a lower learning rate, e.g. --lr {self.cfg.lr / 3:.3g}"
            )

    def _evaluate(self, loader: DeviceLoader):
        return evaluate(self.model, loader, self.device, self.precision, len(self.classes))

    def log(self, message: str) -> None:
        if self.is_main:
            tqdm.write(message)
            sys.stdout.flush()

    # ------------------------------------------------------------------------- run

    def fit(self) -> dict[str, Any]:
        cfg = self.cfg
        if self.is_main:
            make_dir(self.run_dir)
            write_json(self.run_dir / "config.json", cfg.to_dict())
        self.log(
            f"{cfg.model} CNN, {count_parameters(self.model):,} parameters | "
            f"train {len(self.splits.train):,} val {len(self.splits.val):,} "
            f"test {len(self.splits.test):,} | {self.env['device']} {self.precision}, "
            f"{self.env['threads']} threads | run folder {self.run_dir}"
        )
        try:
            for epoch in range(self.state.epoch + 1, cfg.epochs + 1):
                t0 = time.perf_counter()
                row = self.train_epoch(epoch)
                val = self._evaluate(self.val_loader)
                row = {
                    "epoch": epoch,
                    "train_loss": row["train_loss"],
                    "train_acc": row["train_acc"],
                    "val_loss": val.loss,
                    "val_acc": val.acc,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "seconds": row["seconds"],
                    "images_per_second": row["images_per_second"],
                }
                if not math.isfinite(val.loss):
                    raise NonFiniteLoss(
                        f"the validation loss became NaN or infinite at epoch {epoch}; "
                        f"try a lower learning rate, e.g. --lr {cfg.lr / 3:.3g}"
                    )
                self.state.metrics.append(row)
                self.state.epoch = epoch
                self.state.wall += time.perf_counter() - t0
                if self.is_main:
                    write_jsonl(self.run_dir / "metrics.jsonl", self.state.metrics)
                    save_checkpoint(self.checkpoint(), self.run_dir / FILENAME)
                self.log(
                    f"epoch {epoch:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                    f"acc {100 * row['train_acc']:6.2f}%  val loss {val.loss:.4f} "
                    f"acc {100 * val.acc:6.2f}%  {row['seconds']:6.1f} s "
                    f"{row['images_per_second']:7,.0f} img/s"
                )
        except NonFiniteLoss as e:
            if self.is_main:
                write_json(self.run_dir / "summary.json", self._failure(str(e)))
            raise
        return self.finish()

    def _failure(self, message: str) -> dict[str, Any]:
        return {
            "status": "failed",
            "error": message,
            "epochs_completed": self.state.epoch,
            "command": command_for(self.cfg),
            **self.env,
        }

    def finish(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        test = self._evaluate(self.test_loader)
        eval_seconds = time.perf_counter() - t0
        m = self.state.metrics
        summary = {
            "status": "finished",
            "model": self.cfg.model,
            "parameters": count_parameters(self.model),
            "epochs_completed": self.state.epoch,
            "test_loss": test.loss,
            "test_acc": test.acc,
            "test_size": len(self.splits.test),
            "per_class_test_acc": dict(zip(self.classes, test.per_class_acc(), strict=True)),
            "confusion_matrix": test.confusion.tolist(),
            "final_val_acc": m[-1]["val_acc"] if m else None,
            "best_val_acc": max(r["val_acc"] for r in m) if m else None,
            "best_val_epoch": max(m, key=lambda r: r["val_acc"])["epoch"] if m else None,
            "train_seconds": sum(r["seconds"] for r in m),
            "total_seconds": self.state.wall + eval_seconds,
            "mean_images_per_second": (
                sum(r["images_per_second"] for r in m) / len(m) if m else None
            ),
            "command": command_for(self.cfg),
            **self.env,
        }
        if self.is_main:
            from cifarlab import plots

            plots.training_curves(m, self.run_dir / "curves.png", title=f"{self.cfg.model} CNN")
            write_json(self.run_dir / "summary.json", summary)
            self.log(
                f"test loss {test.loss:.4f}  test accuracy {100 * test.acc:.2f}% "
                f"on {len(self.splits.test):,} images  ({summary['total_seconds']:.0f} s in all)"
            )
        return summary


def train(
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    data: Cifar10 | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train one configuration into `run_dir` and return its summary."""
    run_dir = Path(run_dir)
    if not resume and (run_dir / FILENAME).exists():
        raise CifarlabError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
            "or choose another --out"
        )
    trainer = Trainer(cfg, run_dir, data=data, progress=progress)
    if resume:
        ckpt = load_checkpoint(run_dir / FILENAME)
        trainer.restore(ckpt)
        summary_path = run_dir / "summary.json"
        if trainer.state.epoch >= cfg.epochs and summary_path.exists():
            summary = read_json(summary_path)
            if summary.get("status") == "finished":
                trainer.log(f"{run_dir} has already finished; nothing to resume")
                return summary
        trainer.log(f"resuming {run_dir} after epoch {trainer.state.epoch}")
    return trainer.fit()
