"""Several runs at once (--jobs: worker processes) and run-folder locks."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifarlab.errors import CifarlabError
from cifarlab.experiments import runner as many_runs
from cifarlab.experiments import sweeps as X
from cifarlab.experiments.executors import RunTask, train_one, worker_plan
from cifarlab.runs.folder import LOCK, RunDir
from tests.conftest import cli

FLAGS = dict(model="base", epochs=1, batch_size=25, limit=50, eval_limit=10, device="cpu")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "run_dir"} for r in rows]


@pytest.mark.slow
def test_jobs_in_worker_processes_give_the_same_results(cifar_dir, tmp_path, one_thread):
    """--jobs 2 trains in two spawned workers (one thread each, as the serial runs here):
    exactly the numbers of one run after another."""
    flags = {**FLAGS, "data_dir": str(cifar_dir)}
    grid = {"lr": [0.01, 0.02, 0.03]}
    serial = X.sweep(flags, grid, tmp_path / "a", runner=many_runs.Runner(progress=False))
    parallel = X.sweep(flags, grid, tmp_path / "b", runner=many_runs.Runner(jobs=2, progress=False))
    assert strip(serial["rows"]) == strip(parallel["rows"])
    for row in parallel["rows"]:
        run = Path(row["run_dir"])
        assert json.loads((run / "summary.json").read_text())["threads"] == 1
        # the tracking travelled to the worker: events under the run's name in the sweep
        assert [p.name for p in (run / "tb").iterdir()] == [f"lr={row['lr']}"]


def test_worker_plan(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert worker_plan(1, 5) == (1, 8)
    assert worker_plan(4, 5) == (4, 2)  # several runs at once, on one device too
    assert worker_plan(4, 2) == (2, 4)  # never more workers than runs
    assert worker_plan(16, 20) == (16, 1)
    with pytest.raises(CifarlabError, match="--jobs must be at least 1"):
        worker_plan(0, 3)


@pytest.mark.slow
def test_two_seed_studies_into_one_folder_train_each_run_once(cifar_dir, tmp_path):
    """Two `cifarlab seeds` started together over one folder: each run is trained by one of
    them; the other waits for it and reuses it. Both finish with the same numbers."""
    args = [
        sys.executable,
        "-m",
        "cifarlab",
        "seeds",
        "--seeds",
        "1-3",
        "--epochs",
        "2",
        "--limit",
        "50",
        "--eval-limit",
        "10",
        "--batch-size",
        "10",
        "--device",
        "cpu",
        "--data-dir",
        str(cifar_dir),
        "--out",
        str(tmp_path / "s"),
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    printed = "".join(o[0] for o in outs)
    assert printed.count("epoch   1/2") == 3  # three runs, each trained once in all
    runs = sorted((tmp_path / "s" / "runs").iterdir())
    assert len(runs) == 3 and not any((r / LOCK).exists() for r in runs)
    for r in runs:
        assert len((r / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_stale_lock_is_taken_over(cifar_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK).write_text(json.dumps({"pid": 999999, "host": "gone", "since": 0}))
    cfg = many_runs.configs_for({**FLAGS, "data_dir": str(cifar_dir)}, [{}])[0]
    outcome = train_one(RunTask(cfg, run), None, progress=False)
    assert outcome.error is None
    assert RunDir(run).status() == "finished" and not (run / LOCK).exists()


def test_a_run_held_by_another_process_is_not_written(cifar_dir, tmp_path, capsys, monkeypatch):
    from cifarlab.cli.main import main

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT)  # as another process would hold it
    os.write(fd, json.dumps({"pid": 4242, "host": "elsewhere"}).encode())
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        argv = ["cifarlab", "train", "--data-dir", str(cifar_dir), "--out", str(run)]
        monkeypatch.setattr(
            sys, "argv", [*argv, "--epochs", "1", "--limit", "20", "--device", "cpu"]
        )
        with pytest.raises(SystemExit):
            main()
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert "is being trained by process 4242 on elsewhere" in err and err.count("\n") == 1
    assert not (run / "checkpoint.pt").exists()


def test_a_lock_leaves_no_empty_folder_behind(tmp_path):
    """A run that fails before writing anything (its lock made the folder) leaves no empty
    folder in the cache; a folder that existed stays."""
    run = RunDir(tmp_path / "new")
    with run.lock():
        assert (run.path / LOCK).exists()
    assert not run.path.exists()
    kept = RunDir(tmp_path / "kept")
    kept.path.mkdir()
    with kept.lock():
        pass
    assert kept.path.is_dir() and not (kept.path / LOCK).exists()


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_failing_run_does_not_stop_the_others(cifar_dir, tmp_path, capsys, monkeypatch, jobs):
    """A run that diverges (NaN) fails alone: the other run of the sweep finishes, here and
    in worker processes, and the command ends with one line naming the failure."""
    code = cli(
        monkeypatch,
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
        cifar_dir,
        "--device",
        "cpu",
        "--out",
        tmp_path / "s",
        "--jobs",
        jobs,
        "--quiet",
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: 1 of 2 runs failed") and "NaN" in err
    runs = sorted((tmp_path / "s" / "runs").iterdir())
    statuses = sorted(json.loads((r / "summary.json").read_text())["status"] for r in runs)
    assert statuses == ["failed", "finished"]
