"""Runs in an MLflow tracking server (`--mlflow URI` or MLFLOW_TRACKING_URI; `cifarlab[mlflow]`).

A run is one MLflow run: params = the resolved config, a metric per metrics.jsonl key per
epoch (step = epoch), the test metrics at the end, tags (model, dataset, device, torch
version, ...), and artifacts (summary.json, config.json, metrics.jsonl, the figures; the
checkpoint with --mlflow-checkpoint). A sweep, seed study or study is one parent run
whose children are its runs (tag mlflow.parentRunId).

The run folder records its MLflow run in mlflow.json, so that a resumed run goes on in the
same MLflow run with the epochs MLflow lacks, and a finished run that never reached this
server is logged from its files (metrics.jsonl is the source of truth).

A server that is down or refuses gets one warning line and the training goes on without
MLflow, unless `required` (--mlflow-required): then it is a CifarlabError. The client's
HTTP retries are cut short (cifarlab sets MLFLOW_HTTP_REQUEST_MAX_RETRIES=2,
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=1 and MLFLOW_HTTP_REQUEST_TIMEOUT=30 unless they are set),
so that a server that goes away holds a run up for seconds, not minutes.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cifarlab._version import __version__
from cifarlab.errors import CifarlabError
from cifarlab.runs.folder import RunDir

EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
DEFAULT_EXPERIMENT = "cifarlab"
CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
EPOCH_METRICS = (
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "lr_mean",
    "seconds",
    "images_per_second",
)
FINAL_METRICS = ("test_loss", "test_acc", "best_val_acc", "total_seconds")
ARTIFACTS = ("summary.json", "config.json", "metrics.jsonl", "curves.png", "confusion_matrix.png")
PARENT_ARTIFACT_SUFFIXES = (".json", ".png", ".md", ".html")
PARENT_ID_TAG = "mlflow.parentRunId"
WAIT_NOTE_SECONDS = 15.0  # a connection this slow gets a "still waiting" line, and again
_ANNOUNCED: set[str] = set()  # the tracking URIs this process said it connects to


def one_line(error: BaseException, limit: int = 200) -> str:
    """An exception as one short line (MLflow's messages can span many lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def probe(uri: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError when an http(s) tracking URI does not answer at all; any HTTP
    answer (even an error status) counts as reachable. Other URIs are not probed."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise ConnectionError(f"the server does not answer ({reason})") from None


@contextmanager
def connecting(uri: str) -> Iterator[None]:
    """Say on stdout that MLflow is being reached (once per URI and process: a sweep's runs
    connect again), and every WAIT_NOTE_SECONDS until the block ends that it still is:
    a server that is still starting holds the client up for a minute in silence."""
    if uri not in _ANNOUNCED:
        _ANNOUNCED.add(uri)
        print(f"connecting to MLflow at {uri} ...", flush=True)
    done, t0 = threading.Event(), time.monotonic()

    def note() -> None:
        while not done.wait(WAIT_NOTE_SECONDS):
            waited = time.monotonic() - t0
            print(f"still waiting for MLflow at {uri} ({waited:.0f} s) ...", flush=True)

    thread = threading.Thread(target=note, name="mlflow-waiting", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def check_installed(uri: str) -> None:
    """A CifarlabError, before any work, where --mlflow URI is given without MLflow."""
    if importlib.util.find_spec("mlflow") is None:
        raise CifarlabError(
            f"--mlflow {uri} (or MLFLOW_TRACKING_URI) needs MLflow: pip install 'cifarlab[mlflow]'"
        )


class Session:
    """One tracking server, through MlflowClient. The first failure (down, refusing, an
    unknown run) prints one warning line and turns the session off, so that training goes
    on; with required=True it raises a CifarlabError instead."""

    def __init__(self, uri: str, required: bool = False) -> None:
        self.uri, self.required = uri, required
        self.client: Any = None
        self.experiment_id: str | None = None
        self.on = False

    def connect(self) -> Session:
        """Reach the server and find (or create) the experiment; off (warned) if it fails."""
        for key, value in CLIENT_ENV.items():
            os.environ.setdefault(key, value)
        check_installed(self.uri)
        from mlflow.tracking import MlflowClient  # lazy: the optional extra cifarlab[mlflow]

        self.on = True
        with connecting(self.uri):
            self.call("connecting", lambda: probe(self.uri))
            self.client = MlflowClient(tracking_uri=self.uri) if self.on else None
            self.experiment_id = self.call("finding the experiment", self._experiment)
        return self

    def _experiment(self) -> str:
        name = os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # another process created it at the same moment
            return self.client.get_experiment_by_name(name).experiment_id

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        """fn() if the session is on; a failure warns once (or raises if required)."""
        if not self.on:
            return None
        try:
            return fn()
        except CifarlabError:
            raise
        except Exception as e:
            self.on = False
            message = f"MLflow at {self.uri}: {what} failed: {one_line(e)}"
            if self.required:
                raise CifarlabError(message + " (--mlflow-required)") from None
            print(f"warning: {message}; going on without MLflow", file=sys.stderr, flush=True)
            return None

    def log(self, run_id: str, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric  # lazy: the optional extra

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
        if batch:
            self.call("logging metrics", lambda: self.client.log_batch(run_id, metrics=batch))

    def params(self, run_id: str, values: dict[str, Any]) -> None:
        from mlflow.entities import Param  # lazy: the optional extra

        batch = [Param(k, str(v)) for k, v in values.items()]
        self.call("logging params", lambda: self.client.log_batch(run_id, params=batch))

    def start_run(self, name: str, tags: dict[str, str], parent: str | None) -> str | None:
        """A new run in the experiment; its id (None when the session is off)."""
        tags = {**tags, **({PARENT_ID_TAG: parent} if parent else {})}
        run = self.call(
            "creating a run",
            lambda: self.client.create_run(self.experiment_id, run_name=name, tags=tags),
        )
        return run.info.run_id if run else None

    def reopen(self, record: dict[str, Any] | None) -> str | None:
        """The run of an mlflow.json record on this server, marked running again; None if
        the record is for another server or the run is gone."""
        if not self.on or not record or record.get("tracking_uri") != self.uri:
            return None
        try:
            run = self.client.get_run(record["run_id"])
        except Exception:
            return None  # deleted, or from a reset server: a new run
        if run.info.lifecycle_stage != "active":
            return None
        if run.info.status != "RUNNING":
            self.call("reopening a run", lambda: self.client.update_run(run.info.run_id, "RUNNING"))
        return run.info.run_id

    def end(self, run_id: str, status: str) -> None:
        self.call("ending a run", lambda: self.client.set_terminated(run_id, status))

    def tag(self, run_id: str, key: str, value: str) -> None:
        value = value[:5000]  # MLflow's limit on a tag's value
        self.call(f"tagging {key}", lambda: self.client.set_tag(run_id, key, value))

    def artifacts(self, run_id: str, paths: list[Path]) -> None:
        for path in paths:
            self.call(
                f"uploading {path.name}", lambda p=path: self.client.log_artifact(run_id, str(p))
            )


def run_tags(config: dict[str, Any], environment: dict[str, Any], folder: Path) -> dict[str, str]:
    tags = {
        "model": config["model"],
        "dataset": config.get("dataset", "cifar10"),  # the --dataset name
        "device": environment.get("device"),
        "device_name": environment.get("device_name"),
        "precision": environment.get("precision"),
        "torch_version": environment.get("torch_version"),
        "cifarlab_version": environment.get("cifarlab_version", __version__),
        "run_folder": Path(folder).name,  # the cache folder's name, also from a Ray worker
    }
    return {k: str(v) for k, v in tags.items() if v is not None}


class MlflowRun:
    """One training run in MLflow: a new run, or the one its mlflow.json names (resumed)."""

    def __init__(
        self,
        session: Session,
        run: RunDir,
        config: dict[str, Any],
        environment: dict[str, Any],
        name: str,
        parent: str | None = None,
    ) -> None:
        self.session, self.run = session, run
        self.logged = 0  # the last epoch MLflow has
        self.run_id = session.reopen(run.mlflow_record())
        if self.run_id is not None:
            self.logged = self._last_epoch()
            return
        self.run_id = session.start_run(name, run_tags(config, environment, run.path), parent)
        if self.run_id is not None:
            session.params(self.run_id, config)
            self._record(complete=False)

    @property
    def on(self) -> bool:
        return self.session.on and self.run_id is not None

    def _last_epoch(self) -> int:
        client = self.session.client
        history = self.session.call(
            "reading a run", lambda: client.get_metric_history(self.run_id, "train_loss")
        )
        return max((m.step for m in history or []), default=0)

    def _record(self, complete: bool) -> None:
        """mlflow.json; complete: MLflow has the whole run (finished or failed)."""
        self.run.write_mlflow_record(
            {"tracking_uri": self.session.uri, "run_id": self.run_id, "complete": complete}
        )

    def epochs(self, rows: list[dict[str, Any]]) -> None:
        """The epochs of `rows` that MLflow does not have yet, step = epoch."""
        for row in rows:
            if self.on and row["epoch"] > self.logged:
                self.session.log(self.run_id, {k: row.get(k) for k in EPOCH_METRICS}, row["epoch"])
                self.logged = row["epoch"] if self.session.on else self.logged

    def finish(self, summary: dict[str, Any], checkpoint: bool = False) -> None:
        """The test metrics (step = last epoch) and the run folder's artifacts; FINISHED."""
        if not self.on:
            return
        final = {k: summary.get(k) for k in FINAL_METRICS}
        self.session.log(self.run_id, final, summary.get("epochs_completed", 0))
        names = ARTIFACTS + (("checkpoint.pt",) if checkpoint else ())
        self.session.artifacts(self.run_id, [p for n in names if (p := self.run.path / n).exists()])
        self.end("FINISHED")

    def end(self, status: str, error: str | None = None) -> None:
        if not self.on:
            return
        if error:
            self.session.tag(self.run_id, "error", error)
        self.session.end(self.run_id, status)
        if status in ("FINISHED", "FAILED") and self.session.on:
            self._record(complete=True)


def logged_completely(run_dir: Path, uri: str) -> bool:
    """Whether the run folder's mlflow.json says that the server at `uri` has all of it."""
    record = RunDir(run_dir).mlflow_record()
    return bool(record and record.get("tracking_uri") == uri and record.get("complete"))


def sync_run(session: Session, run_dir: Path, name: str, parent: str | None) -> None:
    """Log a finished or failed run from its files unless this server already has all of
    it (a run trained without MLflow, or on a worker that could not reach the server)."""
    run = RunDir(run_dir)
    if not session.on or logged_completely(run_dir, session.uri):
        return
    summary = run.summary() or {}
    m = MlflowRun(session, run, run.config(), summary, name, parent)
    m.epochs(run.metrics())
    if summary.get("status") == "finished":
        m.finish(summary)
    else:
        m.end("FAILED", summary.get("error"))
