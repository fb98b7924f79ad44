"""The training loop: data -> model -> epochs -> run folder.

    summary = train(cfg, run_dir)                 # a new run
    summary = train(cfg, run_dir, resume=True)    # continue from run_dir/checkpoint.pt

The run folder gets config.json, metrics.jsonl (a line per epoch), checkpoint.pt (written
atomically at the end of every epoch), curves.png and summary.json.

Started by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment), `train` trains with
DistributedDataParallel: --batch-size stays the global batch (each process takes
batch_size / world_size images of every global batch, see DeviceLoader), gradients and the
train metrics are summed across processes, validation and test are evaluated in shards
and summed, and only rank 0 writes files and prints. See cifarlab.distributed.
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
from cifarlab import distributed as dist
from cifarlab.analysis import channel_stats
from cifarlab.checkpoint import FILENAME, load_checkpoint, make_checkpoint, save_checkpoint
from cifarlab.config import TrainConfig, from_dict, same_run, validate
from cifarlab.data import Cifar10, Split, Splits, load_cifar10, make_splits
from cifarlab.engine import (
    DeviceLoader,
    autocast,
    evaluate,
    normalize_batch,
    pick_device,
    pick_precision,
)
from cifarlab.errors import CifarlabError
from cifarlab.models import build_model, count_parameters
from cifarlab.optim import WeightAverage, make_optimizer
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


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), else its architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, precision: str, world_size: int = 1) -> dict[str, Any]:
    env = {
        "device": device.type,
        "world_size": world_size,
        "device_name": cpu_name(),
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
    whiten_seconds: float = 0.0  # setting the whitening layer (part of `wall`)


WHITEN_IMAGES = 5000  # training images the whitening layer is computed from


def prepare_splits(cfg: TrainConfig, data: Cifar10) -> Splits:
    """The train/validation/test splits of a run (`evaluate` rebuilds them from a config)."""
    if cfg.val_from == "none":  # train on all training images, test on the test set
        no_val = data.test.subset(torch.arange(0))
        splits = Splits(data.train, no_val, data.test)
    else:
        splits = make_splits(data, cfg.val_from, cfg.val_size, cfg.split_seed)
    if cfg.limit is not None:
        splits.train = splits.train.subset(torch.arange(min(cfg.limit, len(splits.train))))
    if cfg.eval_limit is not None:
        for name in ("val", "test"):
            s = getattr(splits, name)
            setattr(splits, name, s.subset(torch.arange(min(cfg.eval_limit, len(s)))))
    return splits


def shard(split: Split, rank: int, world_size: int) -> Split:
    """This rank's contiguous part of an evaluation split (parts differ by one at most)."""
    if world_size == 1:
        return split
    n = len(split)
    return split.subset(torch.arange(n * rank // world_size, n * (rank + 1) // world_size))


def rank_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """The seed of rank > 0's torch RNG (dropout), distinct per rank (and resumed epoch)."""
    return (seed + 1_000_003 * rank + 7_919 * epoch) % 2**63


class Trainer:
    """One run's model, data, optimizer and state.

    With world_size > 1 (a process group must exist) it is one process of a data-parallel
    run: call `wrap_ddp()` (fit() does) after `restore()`; `checkpoint()` and the
    evaluations are then collectives that every rank must call.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        *,
        data: Cifar10 | None = None,
        progress: bool = True,
        rank: int = 0,
        world_size: int = 1,
        local_rank: int | None = None,
    ) -> None:
        validate(cfg)
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.rank = rank
        self.world_size = world_size
        self.local_rank = rank if local_rank is None else local_rank
        self.is_main = rank == 0
        self.distributed = world_size > 1
        self.device = pick_device(cfg.device)
        if self.distributed and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.local_rank)
        self.precision = pick_precision(cfg.precision, self.device)
        self.batch_size = dist.check_batch_size(cfg.batch_size, world_size)  # per process

        data = data if data is not None else load_cifar10(cfg.data_dir)
        self.classes = data.classes
        self.splits = prepare_splits(cfg, data)
        if len(self.splits.train) < world_size:
            raise CifarlabError("fewer training images than processes")
        self.mean, self.std = channel_stats(self.splits.train.images)

        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.model = build_model(cfg.model).to(self.device, memory_format=torch.channels_last)
        if self.distributed and cfg.sync_bn:
            self.model = dist.convert_sync_batchnorm(self.model, self.device)
        if rank > 0:  # the same weights everywhere (from the seed), other dropout masks
            torch.manual_seed(rank_seed(cfg.seed, rank))
        self.model_kwargs: dict[str, Any] = {}
        self.ddp_model: nn.Module = self.model
        self.train_loader = DeviceLoader(
            self.splits.train,
            self.batch_size,
            self.device,
            self.mean,
            self.std,
            shuffle=True,
            augment=cfg.augment,
            generator=self.generator,
            rank=rank,
            world_size=world_size,
            alt_flip=cfg.alt_flip,
        )
        eval_args = (cfg.eval_batch_size, self.device, self.mean, self.std)
        self.val_loader = DeviceLoader(shard(self.splits.val, rank, world_size), *eval_args)
        self.test_loader = DeviceLoader(shard(self.splits.test, rank, world_size), *eval_args)
        whitening = getattr(self.model, "whitening", None)
        if whitening is not None and not cfg.whiten:  # --no-whiten: an ordinary first conv
            whitening.weight.requires_grad_(True)
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg, len(self.train_loader))
        self.ema = WeightAverage(self.model, cfg.epochs, cfg.ema)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.state = State()
        self.env = environment(self.device, self.precision, world_size)

    def prepare(self) -> float:
        """Data-dependent initialization before the first epoch: the whitening layer, from
        the first WHITEN_IMAGES training images (normalized). Counted as training time.
        Nothing on a resumed run (the checkpoint holds the layer). Returns the seconds."""
        whitening = getattr(self.model, "whitening", None)
        if self.state.epoch > 0 or whitening is None or not self.cfg.whiten:
            return 0.0
        t0 = time.perf_counter()
        loader = self.train_loader
        images = normalize_batch(loader.images[:WHITEN_IMAGES], loader.mean, loader.std)
        self.model.init_whitening(images)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        self.state.whiten_seconds = seconds
        self.state.wall += seconds
        return seconds

    def wrap_ddp(self) -> None:
        """Wrap the model in DistributedDataParallel (once; nothing in one process).

        DDP copies rank 0's weights and buffers to the other ranks here. self.model stays
        the plain model, for checkpoints and evaluation.
        """
        if not self.distributed or self.ddp_model is not self.model:
            return
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)

    def _sync_buffers(self) -> None:
        """Rank 0's BatchNorm running statistics everywhere (without --sync-bn each rank's
        drift apart within an epoch), so that sharded evaluation uses one model: the one
        the checkpoint holds."""
        if self.distributed:
            import torch.distributed

            for b in self.model.buffers():
                torch.distributed.broadcast(b, 0)

    # ------------------------------------------------------------------ checkpoints

    def _own_rng(self) -> dict[str, torch.Tensor]:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint dict (a collective under torchrun: it gathers every rank's RNG)."""
        own = self._own_rng()
        rng = {**own, "data": self.generator.get_state()}
        if self.distributed:
            rng["ranks"] = dist.gather_objects(own)  # dropout streams differ per rank
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
            whiten_seconds=self.state.whiten_seconds,
            ema_started=self.ema.started,
        )

    def restore(self, ckpt: dict[str, Any]) -> None:
        if not same_run(from_dict(ckpt.get("config") or {}), self.cfg):
            raise CifarlabError(
                f"the checkpoint in {self.run_dir} was written with another config; "
                "start a new run instead of --resume"
            )
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        self.generator.set_state(rng["data"])  # the same on every rank
        ranks = rng.get("ranks")
        if ranks is not None and len(ranks) == self.world_size:
            own = ranks[self.rank]
        elif self.rank == 0:
            own = rng
        else:  # resumed with another number of processes: only dropout masks change
            own = {}
            torch.manual_seed(rank_seed(self.cfg.seed, self.rank, ckpt["epoch"]))
        if "torch" in own:
            torch.set_rng_state(own["torch"])
        if "cuda" in own and self.device.type == "cuda":
            torch.cuda.set_rng_state(own["cuda"], self.device)
        self.state = State(
            ckpt["epoch"],
            list(ckpt["metrics"]),
            float(ckpt["wall"]),
            float(ckpt.get("whiten_seconds", 0.0)),
        )
        self.ema.restart(bool(ckpt.get("ema_started")))

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
        self.train_loader.set_epoch(epoch)
        ema = self.ema.active(epoch)
        total_steps = cfg.epochs * steps
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
            if ema:
                self.ema.update((epoch - 1) * steps + step, total_steps)
            loss = loss.detach().float()
            loss_sum += loss * len(y)
            correct += (out.argmax(1) == y).sum()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            seen += len(y)
            if step % sync_every == 0 or step == steps:  # the same steps on every rank
                self._check_finite(epoch, first_bad)
                rate = seen * self.world_size / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{float(loss):.4f}", img_s=f"{rate:,.0f}", refresh=False)
                bar.update(step - bar.n)
        self.ema.to_model()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        bar.close()
        # the global numbers: sums over every rank's images
        totals = torch.stack([loss_sum, correct.to(torch.float64), loss_sum.new_tensor(seen)])
        loss_total, correct_total, seen_total = dist.all_reduce_(totals).tolist()
        return {
            "train_loss": loss_total / seen_total,
            "train_acc": correct_total / seen_total,
            "seconds": seconds,
            "images_per_second": seen_total / seconds,
        }

    def _check_finite(self, epoch: int, first_bad: torch.Tensor) -> None:
        """Stop on a NaN/infinite loss: on every rank at once (the first bad step of any
        rank is agreed by an all-reduce), so that no rank waits for one that stopped."""
        if self.distributed:
            never = torch.iinfo(torch.int64).max
            flag = torch.where(first_bad < 0, never, first_bad)
            bad = int(dist.all_reduce_(flag, "min"))
            bad = -1 if bad == never else bad
        else:
            bad = int(first_bad)
        if bad >= 0:
            raise dist.mark_every_rank(
                NonFiniteLoss(
                    f"the loss became NaN or infinite at epoch {epoch}, step {bad} "
                    f"(lr {self.cfg.lr}); try a lower learning rate, "
                    f"e.g. --lr {self.cfg.lr / 3:.3g}"
                )
            )

    def _evaluate(self, loader: DeviceLoader, tta: str = "none"):
        """Loss and accuracy over a split (each rank its shard, summed over ranks)."""
        self._sync_buffers()
        reduce = dist.all_reduce_ if self.distributed else None
        return evaluate(
            self.model,
            loader,
            self.device,
            self.precision,
            len(self.classes),
            reduce=reduce,
            tta=tta,
        )

    def evaluate_test(self, tta: str | None = None):
        """The final test evaluation, with the run's test-time augmentation unless `tta`
        names another."""
        return self._evaluate(self.test_loader, self.cfg.tta if tta is None else tta)

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
        self.prepare()  # before DDP, which then copies rank 0's whitening everywhere
        self.wrap_ddp()
        self.log(
            f"{cfg.model} CNN, {count_parameters(self.model):,} parameters | "
            f"train {len(self.splits.train):,} val {len(self.splits.val):,} "
            f"test {len(self.splits.test):,} | {self.env['device']} {self.precision}, "
            f"{self.env['threads']} threads{self._processes()} | run folder {self.run_dir}"
        )
        try:
            for epoch in range(self.state.epoch + 1, cfg.epochs + 1):
                t0 = time.perf_counter()
                row = self.train_epoch(epoch)
                val = self._evaluate(self.val_loader) if len(self.splits.val) else None
                row = {
                    "epoch": epoch,
                    "train_loss": row["train_loss"],
                    "train_acc": row["train_acc"],
                    "val_loss": val.loss if val else None,  # None: no validation split
                    "val_acc": val.acc if val else None,
                    "lr": self.optimizer.param_groups[0]["lr"],
                    "seconds": row["seconds"],
                    "images_per_second": row["images_per_second"],
                }
                if val and not math.isfinite(val.loss):  # summed over ranks: all stop
                    raise dist.mark_every_rank(
                        NonFiniteLoss(
                            f"the validation loss became NaN or infinite at epoch {epoch}; "
                            f"try a lower learning rate, e.g. --lr {cfg.lr / 3:.3g}"
                        )
                    )
                self.state.metrics.append(row)
                self.state.epoch = epoch
                self.state.wall += time.perf_counter() - t0
                ckpt = self.checkpoint()  # every rank: it gathers their RNG states
                if self.is_main:
                    write_jsonl(self.run_dir / "metrics.jsonl", self.state.metrics)
                    save_checkpoint(ckpt, self.run_dir / FILENAME)
                val_text = f"val loss {val.loss:.4f} acc {100 * val.acc:6.2f}%  " if val else ""
                self.log(
                    f"epoch {epoch:>3}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                    f"acc {100 * row['train_acc']:6.2f}%  {val_text}{row['seconds']:6.1f} s "
                    f"{row['images_per_second']:7,.0f} img/s"
                )
        except NonFiniteLoss as e:
            if self.is_main:
                write_json(self.run_dir / "summary.json", self._failure(str(e)))
            raise
        return self.finish()

    def _processes(self) -> str:
        if not self.distributed:
            return ""
        return f" x {self.world_size} processes (global batch {self.cfg.batch_size})"

    def _failure(self, message: str) -> dict[str, Any]:
        return {
            "status": "failed",
            "error": message,
            "epochs_completed": self.state.epoch,
            "command": command_for(self.cfg),
            **self.env,
        }

    def test_set_name(self) -> str:
        n = f"{len(self.splits.test):,} images"
        if self.cfg.val_from == "test":
            return f"{n} (the study's test half; the other half is validation)"
        if self.cfg.eval_limit is None:
            return f"the whole CIFAR-10 test set ({n})"
        return n

    def finish(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        test = self.evaluate_test()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        eval_seconds = time.perf_counter() - t0
        m = self.state.metrics
        v = [r for r in m if r["val_acc"] is not None]
        summary = {
            "status": "finished",
            "model": self.cfg.model,
            "parameters": count_parameters(self.model),
            "epochs_completed": self.state.epoch,
            "test_loss": test.loss,
            "test_acc": test.acc,
            "test_size": len(self.splits.test),
            "test_set": self.test_set_name(),
            "per_class_test_acc": dict(zip(self.classes, test.per_class_acc(), strict=True)),
            "confusion_matrix": test.confusion.tolist(),
            "tta": self.cfg.tta,
            "final_val_acc": m[-1]["val_acc"] if m else None,
            "best_val_acc": max(r["val_acc"] for r in v) if v else None,
            "best_val_epoch": max(v, key=lambda r: r["val_acc"])["epoch"] if v else None,
            "train_seconds": sum(r["seconds"] for r in m),
            "whiten_seconds": self.state.whiten_seconds,
            "test_seconds": eval_seconds,
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
                f"on {self.test_set_name()}  ({summary['total_seconds']:.0f} s in all)"
            )
        return summary


def train(
    cfg: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    data: Cifar10 | None = None,
    progress: bool = True,
    backend: str | None = None,
    dist_timeout: float | None = None,
) -> dict[str, Any]:
    """Train one configuration into `run_dir` and return its summary.

    Under torchrun (WORLD_SIZE > 1 in the environment) this process is one rank of a
    data-parallel run: the process group is created here (backend: auto, gloo or nccl;
    dist_timeout: seconds a collective waits) and destroyed at the end.
    """
    env = dist.from_env()
    device = None
    if env.enabled:  # checked before any process waits for another
        with dist.same_on_every_rank():
            validate(cfg)
            dist.check_batch_size(cfg.batch_size, env.world_size)
            device = pick_device(cfg.device)
            dist.pick_backend(backend, device)
        if device.type == "cuda":  # may differ per machine: each rank reports its own
            if env.local_rank >= torch.cuda.device_count():
                raise CifarlabError(
                    f"LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} "
                    "CUDA devices here; use --nproc_per_node up to the number of GPUs"
                )
            device = torch.device("cuda", env.local_rank)
    with dist.process_group(env, device, backend, dist_timeout):
        return _train(cfg, Path(run_dir), env, resume=resume, data=data, progress=progress)


def _check_new(run_dir: Path) -> None:
    if (run_dir / FILENAME).exists():
        raise CifarlabError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, "
            "or choose another --out"
        )


def _finished_summary(run_dir: Path, cfg: TrainConfig, epoch: int) -> dict[str, Any] | None:
    summary_path = run_dir / "summary.json"
    if epoch >= cfg.epochs and summary_path.exists():
        summary = read_json(summary_path)
        if summary.get("status") == "finished":
            return summary
    return None


def _load_data(cfg: TrainConfig, env: dist.DistEnv) -> Cifar10:
    """Each machine's first process loads (and downloads, if needed) first, then the rest,
    so that processes never download into the same cache at once."""
    first = env.local_rank == 0
    data = dist.agreed(lambda: load_cifar10(cfg.data_dir) if first else None)
    later = dist.agreed(lambda: None if first else load_cifar10(cfg.data_dir))
    return data if first else later


def _train(
    cfg: TrainConfig,
    run_dir: Path,
    env: dist.DistEnv,
    *,
    resume: bool,
    data: Cifar10 | None,
    progress: bool,
) -> dict[str, Any]:
    # one run folder for all (a default name holds the time, which may differ per rank)
    run_dir = Path(dist.broadcast_object(str(run_dir)))
    if not resume:
        dist.agreed(lambda: _check_new(run_dir))
    if data is None:
        data = _load_data(cfg, env)
    trainer = dist.agreed(
        lambda: Trainer(
            cfg,
            run_dir,
            data=data,
            progress=progress,
            rank=env.rank,
            world_size=env.world_size,
            local_rank=env.local_rank,
        )
    )
    if resume:  # every rank reads the checkpoint (the run folder must be shared)
        dist.agreed(lambda: trainer.restore(load_checkpoint(run_dir / FILENAME)))
        done = dist.agreed(
            lambda: _finished_summary(run_dir, cfg, trainer.state.epoch) if env.rank == 0 else None
        )
        done = dist.broadcast_object(done)
        if done is not None:
            trainer.log(f"{run_dir} has already finished; nothing to resume")
            return done
        trainer.log(f"resuming {run_dir} after epoch {trainer.state.epoch}")
    return trainer.fit()
