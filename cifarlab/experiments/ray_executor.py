"""RayExecutor (--executor ray): each run a Ray task (one GPU where the cluster has them,
else --ray-cpus-per-run CPUs). A worker trains into a temporary folder and sends the finished
run folder's files back, which the driver writes into the run's cache folder (holding its
lock); no shared file system is needed.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cifarlab.config.options import from_dict
from cifarlab.errors import CifarlabError
from cifarlab.experiments.executors import TEMPORARY, RunOutcome, RunTask, hold_run
from cifarlab.files import atomic_write_bytes
from cifarlab.runs.folder import LOCK, RunDir, run_dir_for
from cifarlab.runs.tracking import Tracking
from cifarlab.training.loop import train

RAY_MAX_RETRIES = 3  # a run whose worker dies is tried this many more times


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
