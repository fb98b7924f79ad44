"""Run folders: where each command leaves its config, metrics, figures and summary.

A training run's folder (RunDir) holds:

    config.json     the resolved config
    metrics.jsonl   one line per epoch
    checkpoint.pt   the latest checkpoint (cifarlab.runs.checkpoint), rewritten every epoch
    best.pt         with --early-stop: the best epoch's checkpoint, less what only resuming
                    needs (cifarlab.runs.checkpoint.weights_part); the weights tested at the end
    curves.png      loss and accuracy per epoch
    confusion_matrix.png   the test confusion matrix
    test_predictions.npz   per test image: label, class probabilities, position in the
                    dataset's test set (for cifarlab compare's per-example tests)
    summary.json    the test metrics and where the run ran (or why it failed)
    tb/             TensorBoard event files (cifarlab.runs.tracking), rebuilt from metrics.jsonl
    mlflow.json     which MLflow run this run is logged to (with --mlflow)
    .lock           held while a process trains it (RunDir.lock)

Every file is written atomically (to a temporary name, then renamed), so a crash or a
kill leaves either the old file or the new one, never half of one.

The run cache: the runs of sweeps, seed studies and studies are kept under RUNS/ in
folders named by their config (`run_dir_for`: <model>-<hash of what the run computes>), so
asking for the same config again reuses a finished run or resumes an interrupted one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarlab.config.options import TrainConfig, from_dict, identity, same_run
from cifarlab.errors import CifarlabError
from cifarlab.files import atomic_write_bytes, read_json, read_jsonl, write_json, write_jsonl
from cifarlab.models.registry import is_reference
from cifarlab.report import figures as plots
from cifarlab.report import image_figures
from cifarlab.runs.checkpoint import (
    BEST_FILENAME,
    FILENAME,
    load_checkpoint,
    save_checkpoint,
    weights_part,
)


def new_run_dir(
    out: str | os.PathLike | None, kind: str, root: str = "runs", create: bool = True
) -> Path:
    """The folder for a run: `out` if given, else runs/KIND-YYYYmmdd-HHMMSS.

    With create=False only the path is chosen; the caller creates it once its setup has
    succeeded, so that bad input leaves no empty run folder behind.
    """
    if out is not None:
        path = Path(out)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{kind}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = Path(root) / f"{kind}-{stamp}-{n}"
    if path.exists() and not path.is_dir():
        raise CifarlabError(f"--out {path} is a file, not a folder; choose another path")
    if create:
        make_dir(path)
    return path


def make_dir(path: Path) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CifarlabError(f"cannot create run folder {path}: {e.strerror}") from None


LOCK = ".lock"
PREDICTIONS = "test_predictions.npz"
_HELD: set[str] = set()  # run folders this process holds the lock of


class RunDir:
    """The folder of one training run: every file of it is read and written here."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def checkpoint_path(self) -> Path:
        return self.path / FILENAME

    @property
    def best_path(self) -> Path:
        return self.path / BEST_FILENAME

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard's folder: written by cifarlab.runs.tracking, rebuilt on every (re)start."""
        return self.path / "tb"

    @property
    def figures(self) -> dict[str, Path]:
        """The run's figures by name (those written so far)."""
        names = {"curves": "curves.png", "confusion_matrix": "confusion_matrix.png"}
        return {k: self.path / v for k, v in names.items() if (self.path / v).exists()}

    def check_new(self) -> None:
        """Refuse to start a new run over an existing one."""
        if self.status() == "finished":
            raise CifarlabError(
                f"{self.path} holds a finished run; choose another --out (its results are "
                f"in {self.path / 'summary.json'}; `cifarlab evaluate {self.path}` evaluates it)"
            )
        if self.checkpoint_path.exists():
            raise CifarlabError(
                f"{self.path} already holds a run; continue it with --resume {self.path}, "
                "or choose another --out"
            )

    def start(self, cfg: TrainConfig) -> None:
        """Create the folder (if needed) and write the run's resolved config."""
        make_dir(self.path)
        write_json(self.path / "config.json", cfg.to_dict())

    def save_epoch(
        self, metrics: list[dict], checkpoint: dict[str, Any], best: bool = False
    ) -> None:
        """After an epoch: the metrics so far, best.pt if the epoch is the best so far
        (--early-stop), then the checkpoint (each atomic). The checkpoint last: a run killed
        in between repeats the epoch on --resume, and writes the same best.pt again."""
        write_jsonl(self.path / "metrics.jsonl", metrics)
        if best:
            save_checkpoint(weights_part(checkpoint), self.best_path)
        save_checkpoint(checkpoint, self.checkpoint_path)

    def write_curves(self, metrics: list[dict], title: str) -> None:
        plots.training_curves(metrics, self.path / "curves.png", title=title)

    def write_confusion(self, confusion: list[list[int]], classes: list[str], title: str) -> None:
        image_figures.confusion_heatmap(
            confusion, classes, self.path / "confusion_matrix.png", title
        )

    def write_predictions(
        self, labels: torch.Tensor, probabilities: torch.Tensor, index: torch.Tensor
    ) -> None:
        """test_predictions.npz (save_predictions) of the final test evaluation."""
        save_predictions(self.path / PREDICTIONS, labels, probabilities, index)

    def predictions(self) -> dict[str, np.ndarray] | None:
        """test_predictions.npz's arrays, or None for a run trained before cifarlab wrote
        them."""
        path = self.path / PREDICTIONS
        if not path.exists():
            return None
        with np.load(path) as f:
            return {k: f[k] for k in ("labels", "probabilities", "index")}

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / "summary.json", summary)

    def mlflow_record(self) -> dict[str, Any] | None:
        """mlflow.json: the tracking URI and MLflow run id this run is logged to, or None."""
        path = self.path / "mlflow.json"
        return read_json(path) if path.exists() else None

    def write_mlflow_record(self, record: dict[str, Any]) -> None:
        write_json(self.path / "mlflow.json", record)

    def config(self) -> dict[str, Any]:
        return read_json(self.path / "config.json")

    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    def summary(self) -> dict[str, Any] | None:
        """summary.json, or None before the run has ended."""
        path = self.path / "summary.json"
        return read_json(path) if path.exists() else None

    def load_checkpoint(self) -> dict[str, Any]:
        return load_checkpoint(self.checkpoint_path)

    def load_best(self) -> dict[str, Any]:
        """best.pt (written by save_epoch with best=True)."""
        return load_checkpoint(self.best_path)

    def status(self) -> str:
        """'finished', 'failed', 'pruned' (stopped early by a search; it can be resumed),
        'partial' (a checkpoint to resume) or 'new'."""
        summary = self.summary()
        if summary and summary.get("status") in ("finished", "failed", "pruned"):
            return summary["status"]
        return "partial" if self.checkpoint_path.exists() else "new"

    @contextlib.contextmanager
    def lock(
        self, wait: bool = True, on_wait: Callable[[dict], None] | None = None
    ) -> Iterator[None]:
        """Hold the run folder for this process: one writer at a time, across processes.

        The lock is an flock on RUN/.lock, which holds the owner's pid and host for the
        others to read. The system releases it when its owner dies, so a stale lock file is
        taken over. wait: block until the owner is done (on_wait(owner) is called once);
        otherwise a CifarlabError names the owner. Re-entrant within a process. The file is
        removed on release (an acquirer checks that its file is still the one in place), and
        so is the folder if the lock made it and nothing was written."""
        key = str(self.path.resolve())
        if key in _HELD:
            yield
            return
        created = not self.path.exists()
        make_dir(self.path)
        fd = self._acquire(wait, on_wait)
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path / LOCK)
            if created:  # nothing was written (a run that failed at once): leave no folder
                with contextlib.suppress(OSError):
                    self.path.rmdir()
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _acquire(self, wait: bool, on_wait: Callable[[dict], None] | None) -> int:
        path = self.path / LOCK
        while True:
            make_dir(self.path)  # again: the last owner may have removed an empty folder
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = self.lock_owner()
                if not wait:
                    os.close(fd)
                    raise CifarlabError(
                        f"{self.path} is being trained by process {owner.get('pid', '?')} on "
                        f"{owner.get('host', '?')}; wait for it (or, if that process is gone "
                        f"and the folder is on a network share, delete {path})"
                    ) from None
                if on_wait:
                    on_wait(owner)
                    on_wait = None
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its last owner removed while we waited
                me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
                os.ftruncate(fd, 0)
                os.write(fd, json.dumps(me).encode())
                return fd
            os.close(fd)

    def lock_owner(self) -> dict[str, Any]:
        """Who holds (or last held) the lock: pid, host, since; {} if unknown."""
        try:
            owner = json.loads((self.path / LOCK).read_text() or "{}")
        except (OSError, ValueError):
            return {}
        return owner if isinstance(owner, dict) else {}

    def load(self) -> dict[str, Any]:
        """A finished run's folder, config, summary and per-epoch metrics."""
        return {
            "run_dir": str(self.path),
            "config": self.config(),
            "summary": self.summary(),
            "metrics": self.metrics(),
        }


def save_predictions(
    path: Path, labels: torch.Tensor, probabilities: torch.Tensor, index: torch.Tensor
) -> None:
    """Per-example predictions, atomically: labels (int64, N), probabilities (float32,
    N x classes) and index (int64, N: each image's position in the dataset's test set)."""
    buf = io.BytesIO()
    np.savez(
        buf,
        labels=labels.numpy().astype(np.int64),
        probabilities=probabilities.numpy().astype(np.float32),
        index=index.numpy().astype(np.int64),
    )
    atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- the cache


def config_key(cfg: TrainConfig) -> str:
    """A short hash of what the run computes (cifarlab.config.options.identity)."""
    return hashlib.sha256(json.dumps(identity(cfg), sort_keys=True).encode()).hexdigest()[:12]


def model_slug(model: str) -> str:
    """A model name as one folder-name part: a plugin reference path/to/mine.py:small
    becomes mine-small (no folders, no colon, which Windows cannot store)."""
    if is_reference(model):
        where, _, function = model.rpartition(":")
        name = re.split(r"[\\/]", where)[-1]  # a file's name, on any system
        model = f"{name.removesuffix('.py') if where.endswith('.py') else where}-{function}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-.") or "model"


def run_dir_for(runs_root: Path, cfg: TrainConfig) -> Path:
    """The cache folder of a config under runs_root: <model>-<config_key>."""
    return Path(runs_root) / f"{model_slug(cfg.model)}-{config_key(cfg)}"


def cache_status(run_dir: Path, cfg: TrainConfig) -> str:
    """A cached run's status ('new', 'partial', 'finished', 'failed'), checked to hold cfg."""
    run = RunDir(run_dir)
    status = run.status()
    if status != "new" and not same_run(from_dict(run.config()), cfg):
        raise CifarlabError(f"{run_dir} holds a run of another config; move it away")
    return status
