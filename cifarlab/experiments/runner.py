"""Many runs: the one owner of the runs of a sweep, a seed study, a study (and any command
that trains several configurations).

    configs = configs_for(flags, [{"lr": 0.01}, {"lr": 0.03}])   # checked before any work
    with Runner.start(configs, jobs=2) as runner:   # data loaded once; a local worker pool
        runs = runner.run(configs, out, names=["lr=0.01", "lr=0.03"])

A Runner holds the configs' datasets (each loaded once, every model checked against its
data before any folder is made), the executor (cifarlab.experiments.executors: a local
worker pool or Ray), the run cache (cifarlab.runs.folder: OUT/runs/<model>-<hash>,
finished runs reused, interrupted ones resumed), the tracking of each run (TensorBoard,
MLflow) and the progress lines. Runs are independent: the results are the same whichever
executor carries them out.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cifarlab.config.options import TrainConfig, resolve
from cifarlab.data import Dataset, Datasets, Split, Splits
from cifarlab.errors import CifarlabError
from cifarlab.experiments.executors import Executor, LocalExecutor, RunTask
from cifarlab.experiments.placement import ExecutorSettings
from cifarlab.models.registry import build_model, check_outputs
from cifarlab.report.format import duration
from cifarlab.runs.folder import RunDir, cache_status, run_dir_for
from cifarlab.runs.tracking import Tracking, sync_finished
from cifarlab.training.hardware import Hardware, pick_device
from cifarlab.training.trainer import Trainer

__all__ = ["Runner", "RunsFailed", "configs_for", "load_data", "run_names"]


class RunsFailed(CifarlabError):
    """Runs that failed (run folder -> error) while the others finished."""

    def __init__(self, failed: dict[Path, str], total: int) -> None:
        self.failed = {Path(d): e for d, e in failed.items()}
        each = "; ".join(f"{d.name}: {e}" for d, e in self.failed.items())
        super().__init__(
            f"{len(failed)} of {total} runs failed ({each}); the others finished and are "
            "cached: run the command again to retry a run whose worker died"
        )


def configs_for(flags: dict[str, Any], variations: list[dict[str, Any]]) -> list[TrainConfig]:
    """One resolved config per variation (the model's recipe < flags < the variation), each
    checked, and its device too (--device cuda without CUDA fails here, before any work)."""
    configs = [resolve(None, {**flags, **v}) for v in variations]
    for device in {c.device for c in configs}:
        pick_device(device)
    return configs


def load_data(configs: list[TrainConfig]) -> Datasets:
    """Load the datasets of these runs (each once), and check that each model fits its
    data (one dummy batch), before any run folder is made."""
    data = Datasets()
    checked = set()
    for cfg in configs:
        d = data.get(cfg.dataset_args())
        key = (cfg.model, repr(cfg.dataset_args()))
        if key not in checked:
            checked.add(key)
            check_outputs(
                build_model(cfg.model, **d.model_args()), cfg.model, len(d.classes), d.image_shape
            )
    return data


def run_names(variations: list[dict[str, Any]]) -> list[str | None]:
    """Each run's name by what differs: {'lr': 0.05, 'seed': 7} -> 'lr=0.05,seed=7'."""
    return [",".join(f"{k}={v}" for k, v in v.items()) or None for v in variations]


# What on_run(index, cfg, status, name) hears: before each run, its cache status ('new',
# 'partial', 'finished', 'failed'; 'queued' when handed to a worker pool or a cluster, which
# starts it when a worker is free) and its name (what differs, or None).
OnRun = Callable[[int, TrainConfig, str, str | None], None]


@dataclass
class Runner:
    """Carries out many runs (see the module): their datasets, the executor (default: local,
    `jobs` at once), where they are cached (default OUT/runs), progress bars within runs, a
    callback before each run, the tracking (TensorBoard, MLflow) of each run, and the runs
    that failed in this command (not tried again)."""

    data: Datasets = field(default_factory=Datasets)
    jobs: int = 1
    progress: bool = True
    runs_root: Path | None = None
    on_run: OnRun | None = None
    executor: Executor | None = None
    tracking: Tracking = field(default_factory=Tracking)
    executor_settings: ExecutorSettings = field(default_factory=ExecutorSettings)  # made it
    failed: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        configs: list[TrainConfig],
        *,
        jobs: int = 1,
        progress: bool = True,
        executor: ExecutorSettings | dict[str, Any] | None = None,
        tracking: Tracking | None = None,
        runs_root: Path | None = None,
        on_run: OnRun | None = None,
    ) -> Runner:
        """A Runner for these configs: their data loaded and every model checked against it
        (so bad input fails before any folder is made), and the executor of `executor`'s
        settings (default: local), made here, once. tracking: where its runs are logged;
        on_run: called as each run starts or is found finished."""
        settings = ExecutorSettings.of(executor)
        settings.check(jobs)
        data = load_data(configs)
        made = settings.make(jobs=jobs, data=data, progress=progress)
        return cls(
            data,
            jobs,
            progress,
            runs_root,
            on_run=on_run,
            executor=made,
            tracking=tracking or Tracking(),
            executor_settings=settings,
        )

    def reporting(self, *, on_run: OnRun | None = None, tracking: Tracking | None = None) -> Runner:
        """This Runner (its data and executor) reporting its runs to `on_run` and logging
        them to `tracking`: a copy, so that a caller passes its collaborators in."""
        changes = {"on_run": on_run} if on_run is not None else {}
        return dataclasses.replace(self, **changes, **({"tracking": tracking} if tracking else {}))

    @property
    def executor_options(self) -> dict[str, Any]:
        """The executor's settings as a mapping (ExecutorSettings.of takes it back)."""
        return dataclasses.asdict(self.executor_settings)

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the executor (a local Ray it started is shut down)."""
        if self.executor is not None:
            self.executor.close()

    def run(
        self, configs: list[TrainConfig], out: Path, names: list[str | None] | None = None
    ) -> list[dict[str, Any]]:
        """Train every config not already finished in the cache (OUT/runs unless runs_root
        says otherwise); each run's folder, config, summary and metrics, in order.

        names: each run's name in progress lines, TensorBoard and MLflow (what differs,
        e.g. 'lr=0.05'). A run that fails does not stop the others: RunsFailed names the
        failed runs after all have been tried."""
        root = self.runs_root or Path(out) / "runs"
        dirs = [run_dir_for(root, cfg) for cfg in configs]
        names = names or [None] * len(configs)
        todo: dict[Path, RunTask] = {}
        errors: dict[Path, str] = {}
        for i, (cfg, d) in enumerate(zip(configs, dirs, strict=True)):
            status = cache_status(d, cfg)
            if d in self.failed:
                errors[d] = self.failed[d]
            elif status == "failed":
                error = RunDir(d).summary().get("error")
                errors[d] = f"failed earlier ({error}); delete that folder to try it again"
            elif status != "finished" and d not in todo:
                announce = self._announcer(i, cfg, status, names[i])
                todo[d] = RunTask(cfg, d, self.tracking.replace(run_name=names[i]), announce)
                continue
            if self.on_run:
                self.on_run(i, cfg, status, names[i])
        executor = self.executor or LocalExecutor(self.jobs, self.data, self.progress)
        for outcome in executor.run(list(todo.values())):
            if outcome.error is not None:
                errors[outcome.run_dir] = outcome.error
        ended = {
            d: n
            for d, n in zip(dirs, names, strict=True)
            if RunDir(d).status() in ("finished", "failed")
        }
        sync_finished(self.tracking, [(d, n) for d, n in ended.items() if d not in self.failed])
        if errors:
            self.failed.update(errors)
            raise RunsFailed(errors, len(set(dirs)))
        return [RunDir(d).load() for d in dirs]

    def _announcer(
        self, index: int, cfg: TrainConfig, status: str, name: str | None
    ) -> Callable[[bool], None] | None:
        """What the executor calls as the run starts (or is queued in a worker pool or on
        a cluster): on_run with its status ('queued' for a queued new run)."""
        if self.on_run is None:
            return None
        on_run = self.on_run
        return lambda queued: on_run(index, cfg, "queued" if queued else status, name)


# ------------------------------------------------------------------- progress and time left

PROBE_STEPS = 2  # timed training steps of the speed probe (after one untimed epoch)


def probe_images_per_second(cfg: TrainConfig, data: Dataset) -> float:
    """Training images per second of cfg on this machine, from the real training step
    (cifarlab.training.trainer.Trainer): a few steps on random images shaped like `data`, at the
    run's device and precision (batch capped at 32 on a CPU, 256 on a GPU). The CPU random
    state of the process is left as it was (runs seed every generator they use)."""
    hw = Hardware.choose(cfg)
    batch = min(cfg.batch_size, 32 if hw.device.type == "cpu" else 256)
    n = batch * PROBE_STEPS
    probe = cfg.replace(
        batch_size=batch,
        epochs=max(cfg.epochs, 2),
        limit=None,
        val_from="none",
        val_size=None,
        eval_limit=None,
    )
    with torch.random.fork_rng(devices=[]):
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, *data.image_shape), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, len(data.classes), (n,), generator=g)
        empty = Split(images[:0], labels[:0])
        splits = Splits(Split(images, labels), empty, empty, list(data.classes))
        trainer = Trainer(probe, splits, hw, progress=False)
        trainer.train_epoch()  # untimed: the first steps allocate and pick kernels
        return trainer.train_epoch()["images_per_second"]


class Progress:
    """Says which step and run is going, and estimates the time left: from the speed of the
    runs finished so far, else from a short speed probe of each model on this machine."""

    def __init__(self, runs_root: Path, configs: list[TrainConfig], data: Datasets) -> None:
        self.start = time.perf_counter()
        self.runs = list({run_dir_for(runs_root, c): c for c in configs}.items())
        self.data = data
        self.probed: dict[str, float] = {}
        self.step = ""
        self.trained = 0  # runs of the current step not found finished in the cache
        self.reused = 0  # runs of the current step found finished
        self.total_trained = 0  # runs trained (or resumed) by this command

    def _seconds_per_image(self, cfg: TrainConfig) -> float:
        rates = []
        for d, c in self.runs:
            summary = RunDir(d).summary() if c.model == cfg.model else None
            if summary and summary.get("status") == "finished":
                rates.append(summary.get("mean_images_per_second") or 0)
        if rates and all(rates):
            return 1.0 / (sum(rates) / len(rates))
        if cfg.model not in self.probed:
            data = self.data.get(cfg.dataset_args())
            self.probed[cfg.model] = probe_images_per_second(cfg, data)
        return 1.0 / self.probed[cfg.model]

    def eta(self) -> float:
        """Seconds left for the runs not finished yet."""
        left = 0.0
        for d, c in self.runs:
            if RunDir(d).status() != "finished":
                n = len(self.data.get(c.dataset_args()).train)
                images = min(c.limit or n, n) * c.epochs
                left += images * self._seconds_per_image(c) * 1.1  # + evaluation
        return left

    def on_run(self, index: int, cfg: TrainConfig, status: str, name: str | None) -> None:
        """A line as each run starts (or is found in the cache), naming what differs."""
        what = {"finished": "cached", "partial": "resuming", "new": "training"}.get(status, status)
        trained = status in ("new", "partial", "queued")
        self.trained += trained
        self.reused += status == "finished"
        self.total_trained += trained
        elapsed = time.perf_counter() - self.start
        label = name or f"lr={cfg.lr} seed={cfg.seed} epochs={cfg.epochs}"
        print(
            f"  [{self.step}] run {index + 1}: {cfg.model} {label} ({what}) | elapsed "
            f"{duration(elapsed)}, about {duration(self.eta())} left",
            flush=True,
        )
