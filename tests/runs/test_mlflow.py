"""MLflow: a real tracking server (sqlite backend, local artifact store) started by the test
on 127.0.0.1, read back with MlflowClient."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from cifarlab.cli.main import main
from cifarlab.config.options import resolve
from cifarlab.runs.tracking import Tracking, mark_stopped
from cifarlab.training.loop import train
from tests.conftest import killed_at_epoch, optional

mlflow = optional("mlflow", "mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

EPOCH_METRICS = {
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "seconds",
    "images_per_second",
}
TINY = ["--epochs", "2", "--limit", "20", "--eval-limit", "10", "--batch-size", "10", "--quiet"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on a free port of 127.0.0.1, stopped at the end of the module."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 (open for the server's lifetime)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root}/mlflow.db",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail("mlflow server stopped:\n" + (root / "server.log").read_text()[-3000:])
            try:
                urllib.request.urlopen(uri + "/health", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("mlflow server did not answer within 240 s")
                time.sleep(0.5)
        yield uri
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def experiment(monkeypatch):
    """A fresh MLflow experiment name for each test."""
    name = f"cifarlab-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return name


def cli(monkeypatch, *args):
    monkeypatch.setattr("sys.argv", ["cifarlab", *map(str, args)])
    main()


def runs_of(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id])


def steps(client, run_id, key):
    return sorted(m.step for m in client.get_metric_history(run_id, key))


@pytest.mark.slow
def test_seeds_run_is_a_parent_with_a_child_per_seed(
    server, experiment, cifar_dir, tmp_path, monkeypatch
):
    out = tmp_path / "seeds"
    cli(
        monkeypatch,
        "seeds",
        "--seeds",
        "1-2",
        *TINY,
        "--data-dir",
        cifar_dir,
        "--out",
        out,
        "--mlflow",
        server,
        "--mlflow-checkpoint",
    )
    client = MlflowClient(server)
    runs = runs_of(client, experiment)
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and len(children) == 2
    assert parent.info.status == "FINISHED" and parent.data.tags["cifarlab.kind"] == "seeds"
    assert parent.data.params["seeds"] == "1-2"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "seeds.json",
        "seeds.png",
    }
    seeds = json.loads((out / "seeds.json").read_text())
    by_name = {r.info.run_name: r for r in children}
    assert sorted(by_name) == ["base seed=1", "base seed=2"]
    for row in seeds["rows"]:
        child = by_name[f"base seed={row['seed']}"]
        folder = out / "runs" / row["run_dir"].split("/")[-1]
        config = json.loads((folder / "config.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
        assert child.info.status == "FINISHED"
        assert child.data.params == {k: str(v) for k, v in config.items()}
        for key in EPOCH_METRICS:
            assert steps(client, child.info.run_id, key) == [1, 2], key
        assert child.data.metrics["test_acc"] == pytest.approx(summary["test_acc"])
        assert child.data.metrics["test_loss"] == pytest.approx(summary["test_loss"])
        tags = child.data.tags
        assert (tags["model"], tags["dataset"], tags["device"]) == ("base", "cifar10", "cpu")
        assert tags["torch_version"] == summary["torch_version"]
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert artifacts >= {"summary.json", "curves.png", "confusion_matrix.png", "checkpoint.pt"}
        record = json.loads((folder / "mlflow.json").read_text())
        assert record == {"tracking_uri": server, "run_id": child.info.run_id, "complete": True}

    # the same command again: every run cached, nothing new in MLflow, the parent reused
    cli(
        monkeypatch,
        "seeds",
        "--seeds",
        "1-2",
        *TINY,
        "--data-dir",
        cifar_dir,
        "--out",
        out,
        "--mlflow",
        server,
    )
    assert len(runs_of(client, experiment)) == 3


@pytest.mark.slow
def test_killed_and_resumed_run_is_one_mlflow_run(
    server, experiment, cifar_dir, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    cfg = resolve(
        None,
        dict(
            model="base",
            epochs=3,
            limit=20,
            eval_limit=10,
            batch_size=10,
            data_dir=str(cifar_dir),
            device="cpu",
        ),
    )
    with killed_at_epoch(3):
        train(cfg, run, progress=False, tracking=Tracking(mlflow_uri=server))
    client = MlflowClient(server)
    (killed,) = runs_of(client, experiment)
    assert killed.info.status == "KILLED"
    assert steps(client, killed.info.run_id, "train_loss") == [1, 2]
    cli(monkeypatch, "train", "--resume", run, "--mlflow", server)
    (resumed,) = runs_of(client, experiment)
    assert resumed.info.run_id == killed.info.run_id and resumed.info.status == "FINISHED"
    for key in EPOCH_METRICS:
        assert steps(client, resumed.info.run_id, key) == [1, 2, 3], key
    assert "checkpoint.pt" not in {a.path for a in client.list_artifacts(resumed.info.run_id)}


@pytest.mark.slow
def test_a_run_trained_without_mlflow_is_logged_from_its_files(
    server, experiment, cifar_dir, tmp_path, monkeypatch
):
    out = tmp_path / "seeds"
    cli(monkeypatch, "seeds", "--seeds", "3", *TINY, "--data-dir", cifar_dir, "--out", out)
    cli(
        monkeypatch,
        "seeds",
        "--seeds",
        "3",
        *TINY,
        "--data-dir",
        cifar_dir,
        "--out",
        out,
        "--mlflow",
        server,
    )
    client = MlflowClient(server)
    (child,) = [r for r in runs_of(client, experiment) if "mlflow.parentRunId" in r.data.tags]
    assert child.info.status == "FINISHED" and steps(client, child.info.run_id, "val_acc") == [1, 2]
    assert "summary.json" in {a.path for a in client.list_artifacts(child.info.run_id)}


@pytest.mark.slow
def test_a_run_stopped_from_outside_is_tagged_and_killed(server, experiment, cifar_dir, tmp_path):
    """A trial Ray Tune's scheduler stopped: the driver tags its MLflow run from its folder."""
    folder = tmp_path / "run"
    cfg = resolve(
        None,
        {"epochs": 1, "limit": 20, "eval_limit": 10, "batch_size": 10, "data_dir": str(cifar_dir)},
    )
    tracking = Tracking(tensorboard=False, mlflow_uri=server)
    train(cfg, folder, progress=False, tracking=tracking)
    mark_stopped(Tracking(tensorboard=False), folder, "pruned")  # no MLflow: nothing
    client = MlflowClient(server)
    (run,) = runs_of(client, experiment)
    assert run.info.status == "FINISHED" and "status" not in run.data.tags
    mark_stopped(tracking, folder, "pruned")
    run = client.get_run(run.info.run_id)
    assert run.info.status == "KILLED" and run.data.tags["status"] == "pruned"


def test_a_stopped_server_gives_one_warning_and_training_goes_on(
    experiment, cifar_dir, tmp_path, monkeypatch, capsys
):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "seeds"
    cli(
        monkeypatch,
        "seeds",
        "--seeds",
        "1-2",
        *TINY,
        "--data-dir",
        cifar_dir,
        "--out",
        out,
        "--mlflow",
        down,
    )
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and down in warnings[0] and "going on without MLflow" in warnings[0]
    assert (out / "seeds.json").exists()
    for run in (out / "runs").iterdir():
        assert (run / "summary.json").exists() and (run / "tb").is_dir()
        assert not (run / "mlflow.json").exists()

    run = tmp_path / "run"
    argv = [
        "cifarlab",
        "train",
        *TINY,
        "--data-dir",
        str(cifar_dir),
        "--out",
        str(run),
        "--mlflow",
        down,
        "--mlflow-required",
    ]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: MLflow at {down}")
    assert "--mlflow-required" in err and not run.exists()


def test_mlflow_options_need_a_uri(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(
        "sys.argv", ["cifarlab", "train", "--mlflow-checkpoint", "--out", str(tmp_path / "r")]
    )
    with pytest.raises(SystemExit):
        main()
    assert "need --mlflow URI" in capsys.readouterr().err
