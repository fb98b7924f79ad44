"""--executor ray for cifarlab tune: Ray Tune's searchers and schedulers on a local Ray with
2 CPUs started by the test, writing the same search layout as the local search."""

import csv
import json

import pytest
import yaml

from tests.conftest import cli, optional

optional("ray", "ray")  # conftest binds a local Ray to 127.0.0.1

pytestmark = pytest.mark.slow  # every test here starts a local Ray

from cifarlab.runs import folder as run_folder  # noqa: E402


def test_tune_on_ray_tune_writes_the_local_search_layout(
    local_ray, learnable_dir, tmp_path, monkeypatch, capsys
):
    """--executor ray: Ray Tune's OptunaSearch and ASHA; each trial's folder comes back as a
    run folder, stopped ones marked pruned; a rerun with more trials continues the count."""
    out = tmp_path / "search"
    args = [
        "tune",
        "--data-dir",
        learnable_dir,
        "--epochs",
        "3",
        "--limit",
        "100",
        "--eval-limit",
        "50",
        "--batch-size",
        "20",
        "--param",
        "lr=log:0.001:10",
        "--pruner",
        "asha",
        "--executor",
        "ray",
        "--out",
        out,
        "--quiet",
    ]
    assert cli(monkeypatch, *args, "--trials", "4") == 0
    assert "wrote" in capsys.readouterr().out
    assert cli(monkeypatch, *args, "--trials", "6", "--confirm-seeds", "1") == 0  # Ray tasks
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["number"]) for r in rows) == list(range(6))
    assert {r["state"] for r in rows} <= {"complete", "pruned"}
    assert len({r["run"] for r in rows}) == 6
    assert len({r["lr"] for r in rows}) == 6  # the rerun draws new values, not the first ones
    result = json.loads((out / "tune.json").read_text())
    assert result["n_complete"] + result["n_pruned"] == 6 and result["n_pruned"] >= 1
    for r in rows:
        run = run_folder.RunDir(out / r["run"])
        metrics, summary = run.metrics(), run.summary()
        if r["state"] == "complete":
            assert len(metrics) == 3 and summary["status"] == "finished" and "test_acc" in summary
            assert float(r["value"]) == metrics[-1]["val_acc"]
        elif summary["status"] == "failed":  # diverged: pruned at the epoch of its NaN
            assert r["value"] == "" and int(r["epochs"]) == len(metrics) + 1
        else:  # stopped by ASHA
            assert summary["status"] == "pruned" and len(metrics) == int(r["epochs"]) < 3
            assert float(r["value"]) == metrics[-1]["val_acc"]
    assert [g["n"] for g in result["confirm"]["groups"]] == [1, 1]
    assert len(list((out / "confirm" / "runs").glob("base-*"))) == 2
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["lr"] == result["best"]["params"]["lr"]


def test_tune_on_ray_with_hyperband(local_ray, learnable_dir, tmp_path, monkeypatch):
    """Hyperband (synchronous) pauses trials at its rungs, resumes some from their last
    checkpoint and stops others: each ends complete or pruned at the epoch it reached, its
    epochs written once each (a resumed trial's folder goes on, it does not start over)."""
    out = tmp_path / "hb"
    code = cli(
        monkeypatch,
        "tune",
        "--data-dir",
        learnable_dir,
        "--epochs",
        "4",
        "--limit",
        "60",
        "--eval-limit",
        "30",
        "--batch-size",
        "20",
        "--param",
        "lr=log:0.001:0.1",
        "--pruner",
        "hyperband",
        "--trials",
        "6",
        "--executor",
        "ray",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and any(r["state"] == "complete" for r in rows)
    for r in rows:
        epochs = [m["epoch"] for m in run_folder.RunDir(out / r["run"]).metrics()]
        assert epochs == list(range(1, int(r["epochs"]) + 1)), (r, epochs)
