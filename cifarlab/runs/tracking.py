"""Where a run is followed besides its own files: TensorBoard (by default) and MLflow (asked).

    trackers = RunTrackers.open(tracking, run, cfg, environment)   # run: a RunDir
    trackers.start(history)        # the epochs done so far (a resumed run)
    trackers.epoch(row)            # after each epoch's metrics.jsonl and checkpoint
    trackers.finish(summary)       # test metrics, figures, artifacts; then closed

metrics.jsonl stays the source of truth: at every start, new or resumed, the run's tb/
folder is emptied and written again from the run's history, and MLflow gets the epochs it
does not have yet. A run killed and resumed has each epoch exactly once in both.

TensorBoard names a run by its folder's path under --logdir. A sweep, seed study or
study gives each run a name of what differs (`lr=0.05`, `seed=7`), and the run writes its
events into tb/NAME, so that `tensorboard --logdir OUT` lists
`runs/base-1a2b3c4d5e6f/tb/lr=0.05` (the cache folder, then the name).
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from cifarlab.config.options import TrainConfig
from cifarlab.files import read_json, write_json
from cifarlab.runs import mlflow_log
from cifarlab.runs.folder import RunDir
from cifarlab.runs.mlflow_log import (
    PARENT_ARTIFACT_SUFFIXES,
    MlflowRun,
    Session,
    logged_completely,
    sync_run,
)

# metrics.jsonl key -> TensorBoard tag; the loss and accuracy pairs share a chart group.
# lr: the mean learning rate the epoch trained with (the row's "lr" is its end value)
SCALARS = {
    "train_loss": "loss/train",
    "val_loss": "loss/val",
    "train_acc": "accuracy/train",
    "val_acc": "accuracy/val",
    "lr_mean": "lr",
    "images_per_second": "images_per_second",
}
# metrics.jsonl rows written before a key existed: the key they have instead
FALLBACKS = {"lr_mean": "lr"}
TEST_SCALARS = {"test_loss": "test/loss", "test_acc": "test/accuracy"}


@dataclass(frozen=True)
class Tracking:
    """Where runs are followed: not what a run computes, so never part of its cache key.

    run_name: what tells the run apart in a sweep or study (`lr=0.05`): its TensorBoard
    folder tb/NAME and its MLflow run name. mlflow_parent: the MLflow run of the sweep,
    seed study or study the run belongs to.
    """

    tensorboard: bool = True
    mlflow_uri: str | None = None
    mlflow_checkpoint: bool = False
    mlflow_required: bool = False
    run_name: str | None = None
    mlflow_parent: str | None = None

    def replace(self, **changes: Any) -> Tracking:
        return dataclasses.replace(self, **changes)

    def check_required(self) -> None:
        """With --mlflow-required, fail before any work if MLflow cannot be reached."""
        if self.mlflow_uri and self.mlflow_required:
            Session(self.mlflow_uri, required=True).connect()

    def check_installed(self) -> None:
        """With --mlflow URI, fail before any work where MLflow is not installed."""
        if self.mlflow_uri:
            mlflow_log.check_installed(self.mlflow_uri)


def folder_name(name: str) -> str:
    """A run name as one folder name: no path separators, no leading dot."""
    return re.sub(r"[/\\\x00]", "_", name).lstrip(".") or "run"


class TensorBoardLog:
    """A run's TensorBoard events under RUN/tb (or RUN/tb/NAME), through torch's
    SummaryWriter. Created at every start of a run: the folder is emptied first, so the
    history replayed by `epochs` is all it holds."""

    def __init__(self, root: Path, name: str | None = None) -> None:
        shutil.rmtree(root, ignore_errors=True)
        self.dir = root / folder_name(name) if name else root
        self.writer = SummaryWriter(str(self.dir), flush_secs=30)

    def epochs(self, rows: list[dict[str, Any]]) -> None:
        """A scalar per tag per epoch (step = epoch); missing values (no validation) are
        left out. Flushed, so that a running TensorBoard shows the epoch at once."""
        for row in rows:
            for key, tag in SCALARS.items():
                value = row[key] if key in row else row.get(FALLBACKS.get(key, key))
                if value is not None:
                    self.writer.add_scalar(tag, value, row["epoch"])
        self.writer.flush()

    def finish(self, cfg: TrainConfig, summary: dict[str, Any], figures: dict[str, Path]) -> None:
        """The test metrics as the run's hparams session (with the resolved config) and as
        scalars at the last epoch; the figures (curves, confusion matrix) as images."""
        step = summary["epochs_completed"]
        metrics = {tag: summary[key] for key, tag in TEST_SCALARS.items()}
        hp = {k: "none" if v is None else v for k, v in cfg.to_dict().items()}
        writer = self.writer._get_file_writer()  # the hparams plugin's three summaries
        for proto in hparams(hp, metrics):
            writer.add_summary(proto, step)
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)
        for tag, path in figures.items():
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))
            self.writer.add_image(tag, pixels, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def mlflow_run_name(model: str, run_name: str | None, run_dir: Path) -> str:
    """A run's name in MLflow: model and what differs in a sweep (`base lr=0.05`), else
    the run folder's name."""
    return f"{model} {run_name}" if run_name else Path(run_dir).name


class RunTrackers:
    """The trackers of one run (rank 0 only; none elsewhere), called by cifarlab.training
    outside the timed part of each epoch."""

    def __init__(
        self,
        run: RunDir | None = None,
        cfg: TrainConfig | None = None,
        tensorboard: TensorBoardLog | None = None,
        mlflow: MlflowRun | None = None,
        mlflow_checkpoint: bool = False,
    ) -> None:
        self.run, self.cfg = run, cfg
        self.tensorboard, self.mlflow = tensorboard, mlflow
        self.mlflow_checkpoint = mlflow_checkpoint
        self.ended = False

    @classmethod
    def open(
        cls,
        tracking: Tracking | None,
        run: RunDir,
        cfg: TrainConfig,
        environment: dict[str, Any],
    ) -> RunTrackers:
        """The trackers `tracking` asks for on `run` (none for tracking=None: ranks > 0).
        environment: where the run computes (Hardware.describe), for MLflow's tags."""
        if tracking is None:
            return cls()
        tb = mlflow = None
        if tracking.tensorboard:
            tb = TensorBoardLog(run.tensorboard_dir, tracking.run_name)
        else:  # events of an earlier start would lack this start's epochs
            shutil.rmtree(run.tensorboard_dir, ignore_errors=True)
        if tracking.mlflow_uri:
            session = Session(tracking.mlflow_uri, tracking.mlflow_required).connect()
            name = mlflow_run_name(cfg.model, tracking.run_name, run.path)
            mlflow = MlflowRun(
                session, run, cfg.to_dict(), environment, name, tracking.mlflow_parent
            )
        return cls(run, cfg, tb, mlflow, tracking.mlflow_checkpoint)

    def start(self, history: list[dict[str, Any]]) -> None:
        """The epochs trained before this start (a resumed run), from its history."""
        if self.tensorboard:
            self.tensorboard.epochs(history)
        if self.mlflow:
            self.mlflow.epochs(history)

    def epoch(self, row: dict[str, Any]) -> None:
        if self.tensorboard:
            self.tensorboard.epochs([row])
        if self.mlflow:
            self.mlflow.epochs([row])

    def finish(self, summary: dict[str, Any]) -> None:
        """A finished run (its summary and figures written): test metrics, figures and
        artifacts; then the trackers are closed."""
        if self.tensorboard:
            self.tensorboard.finish(self.cfg, summary, self.run.figures)
        if self.mlflow:
            self.mlflow.finish(summary, self.mlflow_checkpoint)
        self.end("FINISHED")

    def stop(self, why: str) -> None:
        """A run stopped early on purpose (pruned by a search): MLflow's run is tagged
        status=why and ends KILLED."""
        if self.mlflow and self.mlflow.on:
            self.mlflow.session.tag(self.mlflow.run_id, "status", why)
        self.end("KILLED")

    def end(self, status: str, error: str | None = None) -> None:
        """Close every tracker (once): status FINISHED, FAILED (error says why) or KILLED."""
        if self.ended:
            return
        self.ended = True
        if self.tensorboard:
            self.tensorboard.close()
        if self.mlflow and status != "FINISHED":  # finish() ended it
            self.mlflow.end(status, error)


# ------------------------------------------------------------ sweeps, seed studies, studies


@contextmanager
def experiment_run(
    tracking: Tracking, out: Path, kind: str, params: dict[str, Any]
) -> Iterator[Tracking]:
    """The MLflow parent run of a sweep, seed study or study in folder `out` (OUT/mlflow.json
    keeps it, so running the command again over `out` goes on in the same parent). Yields
    the tracking of its runs: their parent set, or MLflow off when the server failed (one
    warning). At the end the folder's results and figures become its artifacts."""
    if not tracking.mlflow_uri:
        yield tracking
        return
    session = Session(tracking.mlflow_uri, tracking.mlflow_required).connect()
    record_path = Path(out) / "mlflow.json"
    record = read_json(record_path) if record_path.exists() else None
    run_id = session.reopen(record)
    if run_id is None:
        run_id = session.start_run(f"{kind} {Path(out).name}", {"cifarlab.kind": kind}, None)
        if run_id is not None:
            session.params(run_id, params)
            write_json(record_path, {"tracking_uri": session.uri, "run_id": run_id})
    if run_id is None:  # the server failed: warned once, the runs go on without it
        yield tracking.replace(mlflow_uri=None)
        return
    try:
        yield tracking.replace(mlflow_parent=run_id)
    except BaseException as e:
        failed = isinstance(e, Exception)
        if failed:
            session.tag(run_id, "error", str(e))
        session.end(run_id, "FAILED" if failed else "KILLED")
        raise
    files = sorted(p for p in Path(out).iterdir() if p.suffix in PARENT_ARTIFACT_SUFFIXES)
    session.artifacts(run_id, [p for p in files if p.name != "mlflow.json"])
    session.end(run_id, "FINISHED")


def mark_stopped(tracking: Tracking, run_dir: Path, why: str) -> None:
    """A run stopped from outside its process (a trial Ray Tune's scheduler stopped): its
    MLflow run, if it has one, tagged status=why and ended KILLED, as RunTrackers.stop does."""
    record = RunDir(run_dir).mlflow_record()
    if not tracking.mlflow_uri or not record:
        return
    session = Session(record["tracking_uri"], tracking.mlflow_required).connect()
    session.tag(record["run_id"], "status", why)
    session.end(record["run_id"], "KILLED")


def sync_finished(tracking: Tracking, runs: list[tuple[Path, str | None]]) -> None:
    """Log to MLflow the finished (or failed) runs it lacks, from their files: runs found
    in the cache that were trained without MLflow, or by a worker that could not reach the
    server. runs: (run folder, run name) pairs."""
    if not tracking.mlflow_uri:
        return
    runs = [(d, n) for d, n in runs if not logged_completely(d, tracking.mlflow_uri)]
    if not runs:
        return
    session = Session(tracking.mlflow_uri, tracking.mlflow_required).connect()
    for run_dir, name in runs:
        label = mlflow_run_name(RunDir(run_dir).config()["model"], name, run_dir)
        sync_run(session, Path(run_dir), label, tracking.mlflow_parent)
