"""One run's model, optimizer, schedule and data, and nothing of files.

    trainer = Trainer(cfg, make_splits(data, **cfg.split_args()))
    trainer.prepare()                     # data-dependent init (the whitening layer)
    for _ in range(cfg.epochs):
        row = trainer.train_epoch()       # {"epoch", "train_loss", "train_acc", ...}
        val = trainer.evaluate("val")
    test = trainer.evaluate("test")       # with the run's test-time augmentation
    state = trainer.state_dict()          # everything a checkpoint needs to resume

`cifarlab.training.loop.train` puts a Trainer and a run folder together. With world_size > 1 (a
process group must exist) a Trainer is one process of a data-parallel run: `wrap_ddp()`
after `load_state_dict()`, and `state_dict()` and `evaluate()` are collectives that every
rank calls.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cifarlab.config.options import TrainConfig, from_dict, same_run
from cifarlab.data import Normalize, Splits
from cifarlab.errors import CifarlabError
from cifarlab.models.registry import build_model, check_outputs, source_of
from cifarlab.runs.checkpoint import make_checkpoint
from cifarlab.training import distributed as dist
from cifarlab.training.batches import DeviceLoader
from cifarlab.training.early_stop import EarlyStop
from cifarlab.training.evaluation import EvalResult, evaluate
from cifarlab.training.hardware import Hardware
from cifarlab.training.optim import WHITEN_BIAS_EPOCHS, Lookahead, make_optimizer
from cifarlab.training.pruning import EasyPruning
from cifarlab.training.regularizers import BatchRegularizer, count_correct

WHITEN_IMAGES = 5000  # training images the whitening layer is computed from


class NonFiniteLoss(CifarlabError):
    pass


def rank_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """The seed of rank > 0's torch RNG (dropout), distinct per rank (and resumed epoch)."""
    return (seed + 1_000_003 * rank + 7_919 * epoch) % 2**63


def lower_lr_hint(lr: float) -> str:
    return f"try a lower learning rate, e.g. --lr {lr / 3:.3g}"


def compiled(model: nn.Module, mode: str) -> nn.Module:
    """torch.compile(model) for --compile MODE (the model itself for none)."""
    if mode == "none":
        return model
    return torch.compile(model, mode=None if mode == "default" else mode)


def model_args(splits: Splits) -> dict[str, int]:
    """What the model builder needs to fit the data: classes, channels, image size."""
    c, h = splits.train.images.shape[1:3]
    return {"num_classes": len(splits.classes), "in_channels": int(c), "image_size": int(h)}


def build_run_model(t: Trainer) -> nn.Module:
    """The run's model from the seed already set (the same weights on every rank), checked
    on a dummy batch, channels_last on the device; then rank > 0 reseeds for its own
    dropout masks."""
    cfg, device, rank, world_size = t.cfg, t.device, t.rank, t.world_size
    model = build_model(cfg.model, **t.model_args)  # on the CPU: lazy modules get their shapes
    shape = tuple(t.splits.train.images.shape[1:])
    check_outputs(model, cfg.model, len(t.classes), shape)
    if cfg.train_crop:
        check_crop(model, cfg, len(t.classes), shape)
    if world_size > 1:
        check_one_process(cfg)
    if cfg.freeze_from:
        check_freeze(model, cfg)
    model = model.to(device, memory_format=torch.channels_last)
    if world_size > 1 and cfg.sync_bn:
        model = dist.convert_sync_batchnorm(model, device)
    if rank > 0:
        torch.manual_seed(rank_seed(cfg.seed, rank))
    whitening = getattr(model, "whitening", None)
    if whitening is not None and not cfg.whiten:  # --no-whiten: an ordinary, trained conv
        whitening.weight.requires_grad_(True)
    return model


def check_crop(model: nn.Module, cfg: TrainConfig, classes: int, shape: tuple[int, ...]) -> None:
    """--train-crop: no larger than the images, and a size the model runs on."""
    c, h, w = shape
    if cfg.train_crop > min(h, w):
        raise CifarlabError(
            f"--train-crop {cfg.train_crop} is larger than the {h}x{w} images; give at most "
            f"{min(h, w)}, or 0 for none"
        )
    try:
        check_outputs(model, cfg.model, classes, (c, cfg.train_crop, cfg.train_crop))
    except CifarlabError as e:
        raise CifarlabError(f"--train-crop {cfg.train_crop}: {e}; try a larger crop") from None


# The options a run under torchrun refuses, and why.
ONE_PROCESS = {
    "freeze_from": "DDP waits for the gradient of every parameter it was given",
    "prune_easy": "each process would score only its own images",
}


def check_one_process(cfg: TrainConfig) -> None:
    """Under torchrun: none of the ONE_PROCESS options set."""
    for name, why in ONE_PROCESS.items():
        if getattr(cfg, name):
            flag = "--" + name.replace("_", "-")
            raise CifarlabError(f"{flag} does not run under torchrun ({why}): drop it")


def check_freeze(model: nn.Module, cfg: TrainConfig) -> None:
    """--freeze-from: a model made of blocks (a `blocks` list of two or more)."""
    if len(getattr(model, "blocks", ())) < 2:
        raise CifarlabError(
            f"--freeze-from needs a model made of blocks (fast, fast-muon, fast-cpu); "
            f"{cfg.model} has none: drop the option"
        )


def whole_epochs(share: float, epochs: int) -> int:
    """A share of the epochs as whole epochs, rounded down (0.5 of 8: 4; of 1: 0)."""
    return math.floor(share * epochs + 1e-9)


def freeze_epochs(cfg: TrainConfig, blocks: int) -> list[int]:
    """After how many epochs each block but the last stops training (--freeze-from S): the
    first after round-down(S x epochs), at least 1, the others evenly spaced after it over
    the last 1 - S of the epochs. [] without the option."""
    if not cfg.freeze_from or blocks < 2:
        return []
    s, n = cfg.freeze_from, blocks - 1
    return [max(1, whole_epochs(s + (1 - s) * i / n, cfg.epochs)) for i in range(n)]


def steady_batchnorm(model: nn.Module, parts: int) -> None:
    """BatchNorm's running averages, updated `parts` times a step (--micro-batch), each move
    1 - (1 - m) ** (1 / parts) of the way instead of m: over a step they weigh as many
    images as one update by the whole batch would."""
    if parts <= 1:
        return
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    for m in model.modules():
        if isinstance(m, norms) and m.momentum is not None:
            m.momentum = 1 - (1 - m.momentum) ** (1 / parts)


def crop_epochs(cfg: TrainConfig) -> int:
    """How many of the first epochs train on --train-crop crops (--train-crop-share)."""
    return whole_epochs(cfg.train_crop_share, cfg.epochs) if cfg.train_crop else 0


def make_loaders(t: Trainer, batch_size: int) -> dict[str, DeviceLoader]:
    """A Trainer's batches: training (shuffled and augmented with its generator; this
    rank's share of each global batch) and this rank's shard of validation and test."""
    cfg, r, w = t.cfg, t.rank, t.world_size
    train = DeviceLoader(
        t.splits.train,
        batch_size,
        t.device,
        t.normalize,
        shuffle=True,
        augment=cfg.augment,
        generator=t.generator,
        rank=r,
        world_size=w,
        alt_flip=cfg.alt_flip,
        crop=cfg.train_crop,
        crop_epochs=crop_epochs(cfg),
    )
    evals = {
        name: DeviceLoader(
            getattr(t.splits, name).shard(r, w), cfg.eval_batch_size, t.device, t.normalize
        )
        for name in ("val", "test")
    }
    return {"train": train, **evals}


def rng_state(
    device: torch.device, generator: torch.Generator, regularizer: BatchRegularizer
) -> dict[str, Any]:
    """The random state a resumed run needs: torch's (dropout) and CUDA's of this process,
    its batch regularizers' (random erasing, MixUp, CutMix; when on), the data generator's
    (shuffling, augmentation; the same on every rank), and under torchrun every rank's own
    torch/CUDA/regularizer state."""
    own = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        own["cuda"] = torch.cuda.get_rng_state(device)
    if regularizer.enabled:
        own["regularizers"] = regularizer.state
    rng = {**own, "data": generator.get_state()}
    if dist.is_enabled():
        rng["ranks"] = dist.gather_objects(own)
    return rng


def restore_rng(rng: dict[str, Any], trainer: Trainer, epoch: int) -> None:
    """Set the random state saved by rng_state() (resumed with another number of
    processes, ranks > 0 reseed: only their dropout masks differ from the first run)."""
    trainer.generator.set_state(rng["data"])
    ranks = rng.get("ranks")
    if ranks is not None and len(ranks) == trainer.world_size:
        own = ranks[trainer.rank]
    elif trainer.rank == 0:
        own = rng
    else:
        own = {}
        torch.manual_seed(rank_seed(trainer.cfg.seed, trainer.rank, epoch))
    if "torch" in own:
        torch.set_rng_state(own["torch"])
    if "cuda" in own and trainer.device.type == "cuda":
        torch.cuda.set_rng_state(own["cuda"], trainer.device)
    if "regularizers" in own:
        trainer.regularizer.state = own["regularizers"]


class Trainer:
    """Model, optimizer, schedule and data of one run (see the module's docstring).

    hardware: the device and precision, chosen once per run (default: from the config).
    progress: a progress bar per epoch, shown only on a terminal and on rank 0.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        splits: Splits,
        hardware: Hardware | None = None,
        *,
        progress: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.cfg = cfg
        self.hw = hardware or Hardware.choose(cfg)
        self.device, self.precision = self.hw.device, self.hw.precision
        self.rank, self.world_size = rank, world_size
        self.distributed = world_size > 1
        self.progress = progress and rank == 0 and sys.stderr.isatty()
        batch_size = dist.check_batch_size(cfg.batch_size, world_size)  # per process
        if len(splits.train) < world_size:
            raise CifarlabError("fewer training images than processes")
        self.splits = splits
        self.classes = splits.classes
        self.normalize = Normalize.fit(splits.train.images)
        self.model_args = model_args(splits)

        torch.manual_seed(cfg.seed)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.model = build_run_model(self)
        self.freeze_after = freeze_epochs(cfg, len(getattr(self.model, "blocks", ())))
        if cfg.micro_batch:  # a step updates BatchNorm's averages once per micro-batch
            steady_batchnorm(self.model, -(-batch_size // cfg.micro_batch))
        self.model_source = source_of(cfg.model)  # the code's hash, once per run
        self.ddp_model: nn.Module = self.model
        self.step_model: nn.Module | None = None  # what the training step calls (compiled)
        self.loaders = make_loaders(self, batch_size)
        last_pruned = whole_epochs(cfg.prune_until, cfg.epochs)
        self.pruning = EasyPruning(len(splits.train), cfg.prune_easy, last_pruned, self.device)
        self.regularizer = BatchRegularizer(cfg, len(self.classes), rank)
        self.early_stop = EarlyStop(cfg.early_stop)
        if self.early_stop.enabled and not len(splits.val):
            raise CifarlabError("--early-stop needs validation images; this run has none")
        self.optimizer, self.scheduler = make_optimizer(self.model, cfg, len(self.loaders["train"]))
        self.lookahead = Lookahead(self.model, cfg.epochs, cfg.lookahead)
        self.scaler = self.precision.scaler()
        self.epoch = 0  # epochs trained
        self.whiten_seconds = 0.0

    def prepare(self) -> float:
        """Data-dependent initialization before the first epoch: the whitening layer, from
        the first WHITEN_IMAGES training images (normalized); it counts as training time.
        Nothing after a resume (the checkpoint holds the layer). Returns the seconds.
        Call it before wrap_ddp(), which then copies rank 0's layer to every rank."""
        whitening = getattr(self.model, "whitening", None)
        if self.epoch > 0 or whitening is None or not self.cfg.whiten:
            return 0.0
        t0 = time.perf_counter()
        self.model.init_whitening(self.normalize(self.loaders["train"].images[:WHITEN_IMAGES]))
        self.hw.synchronize()
        self.whiten_seconds = time.perf_counter() - t0
        return self.whiten_seconds

    def wrap_ddp(self) -> None:
        """Wrap the model in DistributedDataParallel (once; nothing in one process). DDP
        copies rank 0's weights and buffers to the other ranks here; self.model stays the
        plain model, for checkpoints and evaluation."""
        if not self.distributed or self.ddp_model is not self.model:
            return
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp_model = DistributedDataParallel(self.model, device_ids=ids)

    # ---------------------------------------------------------------------- epochs

    def train_epoch(self) -> dict[str, float]:
        """The next pass over the training set: its epoch number, train loss and accuracy
        (over every rank's images), seconds, images per second and the mean learning rate
        of its steps (the main parameter group's). The step holds no host synchronization
        except on progress updates (every 25 steps on CUDA)."""
        epoch = self.epoch + 1
        loader = self.loaders["train"]
        loader.set_epoch(epoch, self.pruning.plan(epoch, len(loader), self.generator))
        self._settle(epoch)
        self.ddp_model.train()
        sums = torch.zeros(2, device=self.device, dtype=torch.float64)  # loss, correct
        first_bad = torch.full((), -1, device=self.device, dtype=torch.int64)
        steps, seen, lr_sum = len(loader), 0, 0.0
        sync_every = 1 if self.device.type == "cpu" else 25
        bar = tqdm(
            total=steps,
            desc=f"epoch {epoch}/{self.cfg.epochs}",
            leave=False,
            unit="step",
            dynamic_ncols=True,
            disable=not self.progress,
        )
        t0 = time.perf_counter()
        for step, (x, y) in enumerate(loader, start=1):
            lr_sum += self.optimizer.param_groups[0]["lr"]  # this step's, before the scheduler's
            x, target = self.regularizer(x, y)  # target: y, or mixed labels (MixUp/CutMix)
            loss, out = self._step(x, target, epoch, (epoch - 1) * steps + step, steps)
            sums[0] += loss * len(y)
            sums[1] += count_correct(out, target)
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
            seen += len(y)
            if step % sync_every == 0 or step == steps:  # the same steps on every rank
                self._check_finite(epoch, first_bad)
                rate = seen * self.world_size / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{float(loss):.4f}", img_s=f"{rate:,.0f}", refresh=False)
                bar.update(step - bar.n)
        self.lookahead.to_model()
        self.hw.synchronize()
        seconds = time.perf_counter() - t0
        bar.close()
        totals = dist.all_reduce_(torch.cat([sums, sums.new_tensor([seen])]))
        loss_sum, correct, n = totals.tolist()  # over every rank's images
        self.epoch = epoch
        return {
            "epoch": epoch,
            "train_loss": loss_sum / n,
            "train_acc": correct / n,
            "seconds": seconds,
            "images_per_second": n / seconds,
            "lr_mean": lr_sum / max(steps, 1),
        }

    def _settle(self, epoch: int) -> None:
        """Before epoch `epoch`, the parameters that stop asking for a gradient (the backward
        pass then stops above them; a function of the epoch alone, so a resumed run settles
        alike). After WHITEN_BIAS_EPOCHS epochs the whitening bias, whose learning rate is 0
        by then (see param_groups): this spares the first block's input gradient, exactly
        (the bias stays as it was either way; only its SGD momentum buffer, whose steps an
        lr of 0 cancels, keeps its epoch-3 value in the checkpoint); not under DDP, whose
        reducer waits for the gradient of every parameter it was given. With --freeze-from,
        each block but the last after its epoch (freeze_epochs), whatever its learning rate:
        its weights and BatchNorm biases stay as they are (the optimizers skip parameters
        without a gradient; lookahead's average equals them at an epoch's start, so it
        keeps them too); its BatchNorm running averages still move."""
        whitening = getattr(self.model, "whitening", None)
        bias = getattr(whitening, "bias", None)
        if epoch > WHITEN_BIAS_EPOCHS and bias is not None and not self.distributed:
            bias.requires_grad_(False)
        blocks = getattr(self.model, "blocks", ())
        for block, after in zip(blocks, self.freeze_after, strict=False):  # not the last
            if epoch > after:
                block.requires_grad_(False)

    def _step(self, x, y, epoch: int, step: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step (`step` counted over the run); the loss (detached) and logits.
        y: class indices, or class probabilities (mixed labels)."""
        if self.step_model is None:
            self.step_model = compiled(self.ddp_model, self.cfg.compile)
        loss, out = self._gradient(x, y, self.cfg.micro_batch or len(x))
        self.precision.apply(self.optimizer, self.scaler)
        self.scheduler.step()
        if self.lookahead.active(epoch):
            self.lookahead.update(step, self.cfg.epochs * steps)
        return loss.detach().float(), out

    def _gradient(
        self, x: torch.Tensor, y: torch.Tensor, size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's gradient, summed over micro-batches of `size` images (--micro-batch;
        the whole batch is one), each loss weighted by its share of the batch (and, in an
        epoch of --prune-easy, by the share of the split the epoch kept); under DDP
        the gradients are all-reduced once, with the last. The batch's loss and logits."""
        self.optimizer.zero_grad(set_to_none=True)
        parts = list(zip(x.split(size), y.split(size), strict=True))
        index = self.loaders["train"].index.split(size) if self.pruning.enabled else ()
        losses, outs = [], []
        for k, (xs, ys) in enumerate(parts, start=1):
            quiet = k < len(parts) and self.distributed
            with self.ddp_model.no_sync() if quiet else contextlib.nullcontext():
                with self.precision.autocast():
                    out = self.step_model(xs)
                    loss = self._loss(out, ys, index[k - 1] if index else None)
                loss = loss * (len(xs) / len(x))  # its share (x 1.0, exact, for one part)
                self.precision.backward(loss * self.pruning.share, self.scaler)
            losses.append(loss.detach())
            outs.append(out.detach())
        return torch.stack(losses).sum(), torch.cat(outs)

    def _loss(self, out: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """The mean loss of a (micro-)batch; with --prune-easy, each image's weighted by
        the pruning and recorded as its score (`index`: the images, into the split)."""
        smoothing = self.cfg.label_smoothing
        if index is None:
            return F.cross_entropy(out, y, label_smoothing=smoothing)
        each = F.cross_entropy(out, y, label_smoothing=smoothing, reduction="none")
        return self.pruning.loss(each, index)

    def _check_finite(self, epoch: int, first_bad: torch.Tensor) -> None:
        """Stop on a NaN/infinite loss: on every rank at once (the first bad step of any
        rank is agreed by an all-reduce), so that no rank waits for one that stopped."""
        never = torch.iinfo(torch.int64).max
        flag = torch.where(first_bad < 0, never, first_bad)
        bad = int(dist.all_reduce_(flag, "min"))
        if bad != never:
            raise dist.mark_every_rank(
                NonFiniteLoss(
                    f"the loss became NaN or infinite at epoch {epoch}, step {bad} "
                    f"(lr {self.cfg.lr}); {lower_lr_hint(self.cfg.lr)}"
                )
            )

    def evaluate(
        self, split: str = "val", tta: str | None = None, tta_margin: float | None = None
    ) -> EvalResult:
        """Loss, accuracy and confusion over "val" or "test" (each rank its shard, summed
        over ranks). tta: the test-time augmentation; default: the run's for "test".
        tta_margin: which images get it (see evaluation.tta_logits); default: the run's."""
        if tta is None:
            tta = self.cfg.tta if split == "test" else "none"
        if self.distributed:  # rank 0's BatchNorm statistics everywhere: one model
            for b in self.model.buffers():
                torch.distributed.broadcast(b, 0)
        reduce = dist.all_reduce_ if self.distributed else None
        loader = self.loaders[split]
        n = len(self.classes)
        margin = self.cfg.tta_margin if tta_margin is None else tta_margin
        return evaluate(
            self.model, loader, self.device, self.precision, n, reduce, tta, tta_margin=margin
        )

    # ----------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint of the run so far, without the run's history (a collective under
        torchrun: it gathers every rank's RNG state, since dropout differs per rank)."""
        return make_checkpoint(
            self.model,
            model_name=self.cfg.model,
            model_args=self.model_args,
            model_source=self.model_source,
            input_size=list(self.splits.train.images.shape[1:]),
            classes=self.classes,
            mean=self.normalize.mean_values,
            std=self.normalize.std_values,
            config=self.cfg.to_dict(),
            epoch=self.epoch,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            scaler=self.scaler.state_dict(),
            rng=rng_state(self.device, self.generator, self.regularizer),
            whiten_seconds=self.whiten_seconds,
            lookahead_started=self.lookahead.started,
            early_stop=self.early_stop.state_dict(),
            pruning=self.pruning.state_dict() if self.pruning.enabled else None,
        )

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint of the same config (state_dict())."""
        if not same_run(from_dict(ckpt.get("config") or {}), self.cfg):
            raise CifarlabError(
                "the checkpoint was written with another config; start a new run instead"
            )
        self.model.load_state_dict(ckpt["state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        restore_rng(ckpt["rng"], self, ckpt["epoch"])
        self.epoch = ckpt["epoch"]
        self.whiten_seconds = float(ckpt.get("whiten_seconds", 0.0))
        self.lookahead.restart(bool(ckpt.get("lookahead_started", ckpt.get("ema_started"))))
        self.early_stop.load_state_dict(ckpt.get("early_stop", {}))
        self.pruning.load_state_dict(ckpt.get("pruning") or {})
