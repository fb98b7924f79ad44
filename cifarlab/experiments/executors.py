"""How the runs of a sweep, seed study or study are carried out: here, or on a Ray cluster.

An executor takes (config, run folder, tracking) tasks and returns what happened to each:

    outcomes = executor.run([RunTask(cfg, run_dir, tracking), ...])
    [o.error for o in outcomes]          # None: the run finished (or was resumed to its end)

A failing run does not stop the others; the caller reports it (cifarlab.experiments.runner).

LocalExecutor trains in this process one run after another, or (--jobs N) N at once in
worker processes; RayExecutor (ray_executor.py) makes each run a Ray task, and
ExecutorSettings (placement.py) says which a command uses.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from cifarlab.config.options import TrainConfig, from_dict
from cifarlab.data import Datasets
from cifarlab.errors import CifarlabError
from cifarlab.runs.folder import RunDir
from cifarlab.runs.tracking import Tracking
from cifarlab.training.loop import train

TEMPORARY = re.compile(r"\..+\.tmp\d+$")  # a cifarlab.files write that a killed process left


@dataclass(frozen=True)
class RunTask:
    """One run to carry out: train `cfg` into `run_dir` (resuming a partial run there).
    announce: called here, in the driver, as the run starts here (queued=False) or is
    handed to a worker pool or a cluster, which starts it when it can (queued=True)."""

    cfg: TrainConfig
    run_dir: Path
    tracking: Tracking = field(default_factory=Tracking)
    announce: Callable[[bool], None] | None = field(default=None, compare=False)

    def started(self, queued: bool = False) -> None:
        if self.announce is not None:
            self.announce(queued)


@dataclass(frozen=True)
class RunOutcome:
    """What happened to a task: error is None when the run finished."""

    run_dir: Path
    error: str | None = None


class Executor(Protocol):
    """Carries out runs; run() returns one outcome per task, in order, and raises only for
    what stops every run (a cluster that cannot be reached, an interrupt)."""

    def run(self, tasks: Sequence[RunTask]) -> list[RunOutcome]: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------- local


def worker_plan(jobs: int, runs: int) -> tuple[int, int]:
    """(worker processes, torch threads each) for `jobs` runs at once: never more workers
    than runs; the CPU's threads shared among them (on GPUs too: they feed the device)."""
    if jobs < 1:
        raise CifarlabError(f"--jobs must be at least 1, not {jobs}")
    workers = max(1, min(jobs, runs))
    return workers, max(1, torch.get_num_threads() // workers)


def hold_run(run_dir: Path) -> contextlib.ExitStack:
    """The run folder's lock, held until the returned stack is closed (waiting, with a
    message, while another process trains it)."""
    stack = contextlib.ExitStack()

    def waiting(owner: dict) -> None:
        print(
            f"  {Path(run_dir).name}: process {owner.get('pid', '?')} on "
            f"{owner.get('host', '?')} is training it; waiting",
            flush=True,
        )

    stack.enter_context(RunDir(run_dir).lock(wait=True, on_wait=waiting))
    return stack


def train_one(task: RunTask, data: Datasets | None = None, progress: bool = True) -> RunOutcome:
    """Train (or resume) a task in this process holding its folder's lock: a run that
    another process is training is waited for, then reused (finished) or resumed (partial).
    Its dataset comes from `data` (loaded once for all runs); a CifarlabError (a NaN loss,
    data that cannot be read) is the outcome's error."""
    run = RunDir(task.run_dir)
    try:
        with hold_run(run.path):
            status = run.status()
            if status == "failed":
                return RunOutcome(task.run_dir, f"failed ({(run.summary() or {}).get('error')})")
            if status != "finished":
                dataset = (data or Datasets()).get(task.cfg.dataset_args())
                train(
                    task.cfg,
                    task.run_dir,
                    resume=status == "partial",
                    data=dataset,
                    progress=progress,
                    tracking=task.tracking,
                )
    except CifarlabError as e:
        return RunOutcome(task.run_dir, str(e))
    return RunOutcome(task.run_dir)


_WORKER_DATA = Datasets()  # a worker process's datasets, each loaded once


def _worker_init(slots: Any, threads: int) -> None:
    """A worker process: its share of the CPU threads, and its GPU (worker k on device k
    modulo the GPUs; several workers may share one)."""
    slot = slots.get()
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.cuda.set_device(slot % torch.cuda.device_count())


def _worker_train(values: dict[str, Any], run_dir: str, tracking: Tracking) -> str | None:
    outcome = train_one(RunTask(from_dict(values), Path(run_dir), tracking), _WORKER_DATA, False)
    return outcome.error


def train_in_workers(tasks: Sequence[RunTask], workers: int, threads: int) -> list[RunOutcome]:
    """Train tasks in `workers` spawned processes at once (each loads a dataset once). A
    run's failure is its outcome; a worker that dies fails the runs it had not finished."""
    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Queue()
    for k in range(workers):
        slots.put(k)
    pool = ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_worker_init, initargs=(slots, threads)
    )
    outcomes = []
    try:
        futures = []
        for t in tasks:
            t.started(queued=True)
            futures.append(pool.submit(_worker_train, t.cfg.to_dict(), str(t.run_dir), t.tracking))
        for task, future in zip(tasks, futures, strict=True):
            try:
                outcomes.append(RunOutcome(task.run_dir, future.result()))
            except BrokenProcessPool:
                outcomes.append(RunOutcome(task.run_dir, "its worker process died"))
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return outcomes


@dataclass
class LocalExecutor:
    """Runs on this machine: one after another in this process, or `jobs` at once in
    worker processes (sharing the CPU's threads; worker k on GPU k modulo the GPUs)."""

    jobs: int = 1
    data: Datasets | None = None
    progress: bool = True

    def run(self, tasks: Sequence[RunTask]) -> list[RunOutcome]:
        workers, threads = worker_plan(self.jobs, len(tasks))
        if workers == 1:
            outcomes = []
            for t in tasks:
                t.started()
                outcomes.append(train_one(t, self.data, self.progress))
            return outcomes
        return train_in_workers(tasks, workers, threads)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------- Ray
