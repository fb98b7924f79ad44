"""How the runs of a sweep, seed study or study are carried out: here, or on a Ray cluster.

An executor takes (config, run folder, tracking) tasks and returns what happened to each:

    outcomes = executor.run([RunTask(cfg, run_dir, tracking), ...])
    [o.error for o in outcomes]          # None: the run finished (or was resumed to its end)

A failing run does not stop the others; the caller reports it (cifarlab.experiments.runner).

LocalExecutor trains in this process one run after another, or (--jobs N) N at once in
worker processes. RayExecutor (--executor ray) makes each run a Ray task (one GPU when the
cluster has them, else --ray-cpus-per-run CPUs): a worker trains into a temporary folder
and sends the finished run folder's files back, which the driver writes
into the run's cache folder (holding its lock); no shared file system is needed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from cifarlab.config.choices import EXECUTORS
from cifarlab.config.options import TrainConfig, from_dict
from cifarlab.data import Datasets
from cifarlab.errors import CifarlabError
from cifarlab.files import atomic_write_bytes
from cifarlab.runs.folder import LOCK, RunDir, run_dir_for
from cifarlab.runs.tracking import Tracking
from cifarlab.training.loop import train

RAY_MAX_RETRIES = 3  # a run whose worker dies is tried this many more times
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


def folder_files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its relative path (POSIX), as bytes, but its lock file
    and temporary files left by a killed write; {} if none."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK and not TEMPORARY.match(p.name)
    }


def replace_folder(folder: Path, files: dict[str, bytes]) -> None:
    """Make `folder` hold exactly `files`: written beside it, then swapped in by renames,
    summary.json last, so that an interrupted copy never looks like a finished run."""
    folder = Path(folder)
    incoming = folder.with_name(f".{folder.name}.incoming")
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    for rel in sorted(files, key=lambda r: r == "summary.json"):
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise CifarlabError(f"a worker sent a file outside its run folder: {rel}")
        path = incoming / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, files[rel])
    if folder.exists():
        folder.rename(old)
    incoming.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def train_on_worker(
    config: dict[str, Any], files: dict[str, bytes], tracking: Tracking, threads: int | None
) -> tuple[dict[str, bytes], str | None]:
    """A Ray task: train (or resume, from the files of a partial run) in a temporary folder
    with `threads` torch threads, as the driver's local runs have; return the run folder's
    files and the error (None if it finished). A CifarlabError is the run's own failure."""
    if threads:
        torch.set_num_threads(threads)
    cfg = from_dict(config)
    with tempfile.TemporaryDirectory(prefix="cifarlab-") as tmp:
        run_dir = run_dir_for(Path(tmp), cfg)  # named as on the driver, for its messages
        if files:
            replace_folder(run_dir, files)
        resume = RunDir(run_dir).status() == "partial"
        try:
            train(cfg, run_dir, resume=resume, progress=False, tracking=tracking)
            error = None
        except CifarlabError as e:
            error = f"{e} (on {socket.gethostname()})"
        return folder_files(run_dir), error


@dataclass
class RayExecutor:
    """Runs as Ray tasks (see the module). address: a running cluster (`auto` on one of its
    nodes, ray://HEAD:10001 from outside), or None to start a local Ray for the executor's
    lifetime ($RAY_ADDRESS, if set, names a cluster instead, as everywhere in Ray).
    cpus_per_run: CPUs a run asks for on a cluster without GPUs, and its torch threads
    (default: this process's torch threads, so that a local Ray gives exactly the local
    executor's numbers). task: the function each Ray task runs."""

    address: str | None = None
    cpus_per_run: int | None = None
    max_retries: int = RAY_MAX_RETRIES
    task: Callable[..., tuple[dict[str, bytes], str | None]] = train_on_worker
    started: bool = field(default=False, init=False)  # a local Ray of ours, to shut down

    def _ray(self) -> Any:
        if self.address is None and not os.environ.get("RAY_ADDRESS"):
            # a local Ray of our own listens on the loopback interface only (read at import)
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray  # lazy: Ray is an optional extra, and slow to import
        except ImportError:
            raise CifarlabError("--executor ray needs Ray: pip install 'cifarlab[ray]'") from None
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, include_dashboard=False, logging_level="WARNING")
            except Exception as e:
                where = self.address or "a local Ray"
                raise CifarlabError(f"cannot start or reach {where}: {str(e).strip()}") from None
            self.started = True
        return ray

    def _options(self, ray: Any) -> tuple[dict[str, Any], int | None]:
        """The Ray resources of a task and its torch threads."""
        if ray.cluster_resources().get("GPU", 0) >= 1:
            return {"num_gpus": 1}, None
        cpus = self.cpus_per_run or torch.get_num_threads()
        if cpus < 1:
            raise CifarlabError(f"--ray-cpus-per-run must be at least 1, not {cpus}")
        return {"num_cpus": cpus}, cpus

    def run(self, tasks: Sequence[RunTask]) -> list[RunOutcome]:
        if not tasks:
            return []
        ray = self._ray()
        resources, threads = self._options(ray)
        remote = ray.remote(max_retries=self.max_retries, **resources)(self.task)
        held = {t.run_dir: hold_run(t.run_dir) for t in tasks}  # as the local executor does
        outcomes: dict[Path, RunOutcome] = {}
        pending: dict[Any, RunTask] = {}
        try:
            for t in tasks:
                if RunDir(t.run_dir).status() == "finished":  # by another process meanwhile
                    outcomes[t.run_dir] = RunOutcome(t.run_dir)
                    held.pop(t.run_dir).close()
                    continue
                files = folder_files(t.run_dir)
                t.started(queued=True)
                pending[remote.remote(t.cfg.to_dict(), files, t.tracking, threads)] = t
            waiting = list(pending)
            try:
                while waiting:
                    (ref,), waiting = ray.wait(waiting, num_returns=1)
                    task = pending[ref]
                    outcomes[task.run_dir] = self._receive(ray, ref, task)
                    held.pop(task.run_dir).close()
            except BaseException:  # interrupted: a cluster would go on training them
                for ref in waiting:
                    ray.cancel(ref, force=True)
                raise
        finally:
            for stack in held.values():
                stack.close()
        return [outcomes[t.run_dir] for t in tasks]

    def _receive(self, ray: Any, ref: Any, task: RunTask) -> RunOutcome:
        """Write a finished task's files into its run folder; its outcome."""
        from ray.exceptions import RayError, RayTaskError  # lazy: the optional extra

        try:
            files, error = ray.get(ref)
        except RayTaskError as e:  # an exception other than CifarlabError: a bug
            cause = e.cause if getattr(e, "cause", None) is not None else e
            return RunOutcome(task.run_dir, f"{type(cause).__name__}: {str(cause).strip()}")
        except RayError as e:  # the worker died max_retries + 1 times
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            return RunOutcome(
                task.run_dir, f"its worker died ({self.max_retries + 1} tries): {first}"
            )
        if files:
            replace_folder(task.run_dir, files)
        return RunOutcome(task.run_dir, error)

    def close(self) -> None:
        """Shut down the local Ray this executor started (a cluster keeps running)."""
        if self.started:
            import ray  # lazy: the optional extra (imported in _ray before this runs)

            ray.shutdown()
            self.started = False


def make_executor(
    name: str = "local",
    *,
    jobs: int = 1,
    data: Datasets | None = None,
    progress: bool = True,
    ray_address: str | None = None,
    ray_cpus_per_run: int | None = None,
) -> Executor:
    """The executor of --executor local|ray with its options (checked here, before work)."""
    if name not in EXECUTORS:
        raise CifarlabError(f"--executor must be one of {', '.join(EXECUTORS)}, not {name!r}")
    if name == "local":
        if ray_address or ray_cpus_per_run:
            raise CifarlabError("--ray-address and --ray-cpus-per-run need --executor ray")
        return LocalExecutor(jobs, data, progress)
    if jobs != 1:
        raise CifarlabError("--jobs is for --executor local; Ray places the runs itself")
    if ray_cpus_per_run is not None and ray_cpus_per_run < 1:
        raise CifarlabError(f"--ray-cpus-per-run must be at least 1, not {ray_cpus_per_run}")
    return RayExecutor(ray_address, ray_cpus_per_run)
