"""--executor ray on a local Ray with 2 CPUs started by the test: the same numbers as the
local executor, run folders sent back to the driver, failed runs reported."""

import json
import os
from pathlib import Path

import pytest

from tests.conftest import cli, optional, use_quick_plan

ray = optional("ray", "ray")  # conftest binds a local Ray to 127.0.0.1

pytestmark = pytest.mark.slow  # every test here starts a local Ray

from cifarlab.cli.main import main  # noqa: E402
from cifarlab.experiments import runner as many_runs  # noqa: E402
from cifarlab.experiments import sweeps as X  # noqa: E402
from cifarlab.experiments.ray_executor import RayExecutor, train_on_worker  # noqa: E402
from cifarlab.runs import folder as run_folder  # noqa: E402

TINY = ["--epochs", "2", "--limit", "20", "--eval-limit", "10", "--batch-size", "10", "--quiet"]


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
    assert cli(monkeypatch, *common, "--out", tmp_path / "local") == 0
    assert cli(monkeypatch, *common, "--out", tmp_path / "ray", "--executor", "ray") == 0
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
    """The original study's pipeline with 2 runs of a few steps each: the base CNN's (its
    lr study, epoch study and one-seed seed study share it) and the improved CNN's."""
    plan = use_quick_plan(
        monkeypatch,
        base=({"limit": 40, "eval_limit": 20, "epochs": 2, "batch_size": 20}, [0.03]),
        improved=({"lr": 0.01, "limit": 16, "eval_limit": 8, "epochs": 1, "batch_size": 8}, [0.01]),
    )
    plan.seeds = [5]
    plan.epoch_study = {"model": "base", "epochs": 2}
    return plan


def test_quick_study_on_ray_gives_the_local_numbers(
    local_ray, learnable_dir, tmp_path, monkeypatch, tiniest_plan
):
    common = ["study", "--quick", "--data-dir", learnable_dir, "--quiet"]
    assert cli(monkeypatch, *common, "--out", tmp_path / "local") == 0
    assert cli(monkeypatch, *common, "--out", tmp_path / "ray", "--executor", "ray") == 0
    local, remote = run_folders(tmp_path / "local"), run_folders(tmp_path / "ray")
    assert sorted(local) == sorted(remote) and len(local) == 2
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
