"""Run folders: where each command leaves its config, metrics, figures and summary.

A training run's folder (RunDir) holds:

    config.json     the resolved config
    metrics.jsonl   one line per epoch
    checkpoint.pt   the latest checkpoint (cifarlab.checkpoint), rewritten every epoch
    curves.png      loss and accuracy per epoch
    confusion_matrix.png   the test confusion matrix
    summary.json    the test metrics and where the run ran (or why it failed)
    tb/             TensorBoard event files (cifarlab.tracking), rebuilt from metrics.jsonl
    mlflow.json     which MLflow run this run is logged to (with --mlflow)

Every file is written atomically (to a temporary name, then renamed), so a crash or a
kill leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cifarlab.checkpoint import FILENAME, load_checkpoint, save_checkpoint
from cifarlab.config import TrainConfig
from cifarlab.errors import CifarlabError
from cifarlab.files import read_json, read_jsonl, write_json, write_jsonl


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
    def tensorboard_dir(self) -> Path:
        """TensorBoard's folder: written by cifarlab.tracking, rebuilt on every (re)start."""
        return self.path / "tb"

    @property
    def figures(self) -> dict[str, Path]:
        """The run's figures by name (those written so far)."""
        names = {"curves": "curves.png", "confusion_matrix": "confusion_matrix.png"}
        return {k: self.path / v for k, v in names.items() if (self.path / v).exists()}

    def check_new(self) -> None:
        """Refuse to start a new run over an existing one."""
        if self.checkpoint_path.exists():
            raise CifarlabError(
                f"{self.path} already holds a run; continue it with --resume {self.path}, "
                "or choose another --out"
            )

    def start(self, cfg: TrainConfig) -> None:
        """Create the folder (if needed) and write the run's resolved config."""
        make_dir(self.path)
        write_json(self.path / "config.json", cfg.to_dict())

    def save_epoch(self, metrics: list[dict], checkpoint: dict[str, Any]) -> None:
        """After an epoch: the metrics so far, then the checkpoint (both atomic)."""
        write_jsonl(self.path / "metrics.jsonl", metrics)
        save_checkpoint(checkpoint, self.checkpoint_path)

    def write_curves(self, metrics: list[dict], title: str) -> None:
        from cifarlab import plots

        plots.training_curves(metrics, self.path / "curves.png", title=title)

    def write_confusion(self, confusion: list[list[int]], classes: list[str], title: str) -> None:
        from cifarlab import plots

        plots.confusion_heatmap(confusion, classes, self.path / "confusion_matrix.png", title)

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

    def status(self) -> str:
        """'finished', 'failed', 'partial' (a checkpoint to resume) or 'new'."""
        summary = self.summary()
        if summary and summary.get("status") in ("finished", "failed"):
            return summary["status"]
        return "partial" if self.checkpoint_path.exists() else "new"

    def load(self) -> dict[str, Any]:
        """A finished run's folder, config, summary and per-epoch metrics."""
        return {
            "run_dir": str(self.path),
            "config": self.config(),
            "summary": self.summary(),
            "metrics": self.metrics(),
        }
