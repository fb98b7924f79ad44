"""--executor ray on a local Ray with 2 CPUs started by the test: the same numbers as the
local executor, run folders sent back to the driver, failed runs reported."""

import csv
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import optional, use_quick_plan

ray = optional("ray", "ray")  # conftest binds a local Ray to 127.0.0.1

pytestmark = pytest.mark.slow  # every test here starts a local Ray

from cifarlab.cli.main import main  # noqa: E402
from cifarlab.experiments import runner as many_runs  # noqa: E402
from cifarlab.experiments import sweeps as X  # noqa: E402
from cifarlab.experiments.ray_executor import RayExecutor, train_on_worker  # noqa: E402
from cifarlab.runs import folder as run_folder  # noqa: E402

TINY = ["--epochs", "2", "--limit", "20", "--eval-limit", "10", "--batch-size", "10", "--quiet"]


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with 2 CPUs for the module; the executors use it and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the tasks below
    yield
    ray.shutdown()


def cli(monkeypatch, *args):
    monkeypatch.setattr("sys.argv", ["cifarlab", *map(str, args)])
    main()


def numbers(run_dir: Path) -> dict:
    """What a run computed: every metric but the times, and the test summary."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    keep = ("test_loss", "test_acc", "per_class_test_acc", "confusion_matrix", "threads")
    return {
        "metrics": [
            {k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows
        ],
        "summary": {k: summary[k] for k in keep},
    }


def run_folders(out: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted((out / "runs").iterdir()) if not p.name.startswith(".")}


def test_seeds_on_ray_give_the_local_numbers(local_ray, cifar_dir, tmp_path, monkeypatch):
    common = ["seeds", "--seeds", "1-2", *TINY, "--data-dir", cifar_dir]
    cli(monkeypatch, *common, "--out", tmp_path / "local")
    cli(monkeypatch, *common, "--out", tmp_path / "ray", "--executor", "ray")
    local, remote = run_folders(tmp_path / "local"), run_folders(tmp_path / "ray")
    assert sorted(local) == sorted(remote) and len(local) == 2  # the same cache keys
    for name in local:
        assert numbers(remote[name]) == numbers(local[name]), name
        files = {p.relative_to(remote[name]).parts[0] for p in remote[name].rglob("*")}
        assert files >= {"checkpoint.pt", "curves.png", "summary.json", "tb"}  # sent back
    a = json.loads((tmp_path / "local" / "seeds.json").read_text())
    b = json.loads((tmp_path / "ray" / "seeds.json").read_text())
    assert a["test_acc"] == b["test_acc"] and a["test_loss"] == b["test_loss"]


@pytest.fixture
def tiniest_plan(monkeypatch):
    """The original study's pipeline with 4 runs of a few steps each (shared runs are
    trained once)."""
    return use_quick_plan(
        monkeypatch,
        base=({"limit": 40, "eval_limit": 20, "epochs": 2, "batch_size": 20}, [0.03]),
        improved=({"lr": 0.01, "limit": 16, "eval_limit": 8, "epochs": 1, "batch_size": 8}, [0.01]),
    )


def test_quick_study_on_ray_gives_the_local_numbers(
    local_ray, learnable_dir, tmp_path, monkeypatch, tiniest_plan
):
    common = ["study", "--quick", "--data-dir", learnable_dir, "--quiet"]
    cli(monkeypatch, *common, "--out", tmp_path / "local")
    cli(monkeypatch, *common, "--out", tmp_path / "ray", "--executor", "ray")
    local, remote = run_folders(tmp_path / "local"), run_folders(tmp_path / "ray")
    assert sorted(local) == sorted(remote) and len(local) == 4
    for name in local:
        assert numbers(remote[name]) == numbers(local[name]), name
    a = json.loads((tmp_path / "local" / "study.json").read_text())
    b = json.loads((tmp_path / "ray" / "study.json").read_text())
    assert b["status"] == "finished" and b["step_runs"] == a["step_runs"]
    assert (tmp_path / "ray" / "report.html").exists()


def test_a_failing_run_is_reported_while_the_others_finish(
    local_ray, cifar_dir, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "sweep"
    monkeypatch.setattr(
        "sys.argv",
        [
            "cifarlab",
            "sweep",
            "--lr",
            "0.01,1e6",
            "--epochs",
            "1",
            "--limit",
            "20",
            "--eval-limit",
            "10",
            "--batch-size",
            "10",
            "--data-dir",
            str(cifar_dir),
            "--out",
            str(out),
            "--executor",
            "ray",
            "--quiet",
        ],
    )
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: 1 of 2 runs failed") and "NaN" in err
    statuses = sorted(
        json.loads((p / "summary.json").read_text())["status"] for p in run_folders(out).values()
    )
    assert statuses == ["failed", "finished"]  # both folders came back from the workers


def dies_once_and_always_for_seed_2(config, files, tracking, threads):
    """A task whose worker process dies (a crash, an OOM kill) on its first try, and on
    every try for seed 2."""
    marker = Path(config["data_dir"]) / f"died-{config['seed']}"
    if not marker.exists() or config["seed"] == 2:
        marker.touch()
        os._exit(1)
    return train_on_worker(config, files, tracking, threads)


def test_a_dead_worker_is_retried_and_one_that_keeps_dying_is_reported(
    local_ray, cifar_dir, tmp_path
):
    flags = dict(
        model="base",
        epochs=1,
        batch_size=10,
        limit=20,
        eval_limit=10,
        data_dir=str(cifar_dir),
        device="cpu",
    )
    executor = RayExecutor(task=dies_once_and_always_for_seed_2, max_retries=1)
    with pytest.raises(many_runs.RunsFailed, match="1 of 2 runs failed") as e:
        X.seed_study(flags, [1, 2], tmp_path, runner=many_runs.Runner(executor=executor))
    ((failed, error),) = e.value.failed.items()
    (seed_2,) = many_runs.configs_for(flags, [{"seed": 2}])
    assert failed == run_folder.run_dir_for(tmp_path / "runs", seed_2)
    assert "worker died (2 tries)" in error
    assert (cifar_dir / "died-1").exists()  # seed 1 died once, then finished on its retry
    (folder,) = run_folders(tmp_path).values()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "finished" and "--seed 1 " in summary["command"] + " "


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
    cli(monkeypatch, *args, "--trials", "6")
    assert "wrote" in capsys.readouterr().out
    cli(monkeypatch, *args, "--trials", "8", "--confirm-seeds", "1")  # as Ray tasks too
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["number"]) for r in rows) == list(range(8))
    assert {r["state"] for r in rows} <= {"complete", "pruned"}
    assert len({r["run"] for r in rows}) == 8
    assert len({r["lr"] for r in rows}) == 8  # the rerun draws new values, not the first ones
    result = json.loads((out / "tune.json").read_text())
    assert result["n_complete"] + result["n_pruned"] == 8 and result["n_pruned"] >= 1
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
    cli(
        monkeypatch,
        "tune",
        "--data-dir",
        learnable_dir,
        "--epochs",
        "4",
        "--limit",
        "100",
        "--eval-limit",
        "50",
        "--batch-size",
        "20",
        "--param",
        "lr=log:0.001:0.1",
        "--pruner",
        "hyperband",
        "--trials",
        "9",
        "--executor",
        "ray",
        "--out",
        out,
        "--quiet",
    )
    with open(out / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and any(r["state"] == "complete" for r in rows)
    for r in rows:
        epochs = [m["epoch"] for m in run_folder.RunDir(out / r["run"]).metrics()]
        assert epochs == list(range(1, int(r["epochs"]) + 1)), (r, epochs)
