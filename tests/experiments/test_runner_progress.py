"""What a Runner says as many runs go: each run announced as it starts (cached ones at once, queued
ones as they are handed to workers), the first line naming what differs, and the speed probe."""

from __future__ import annotations

import pytest
import torch

from cifarlab.data import load_dataset
from cifarlab.experiments import executors
from cifarlab.experiments.runner import Runner, configs_for, probe_images_per_second
from tests.conftest import cli, tiny_flags


def test_runs_are_announced_as_they_start_and_cached_ones_at_once(cifar_dir, tmp_path, monkeypatch):
    events = []
    real = executors.train

    def train(cfg, run_dir, **kw):
        events.append(("train", cfg.lr))
        return real(cfg, run_dir, **kw)

    monkeypatch.setattr(executors, "train", train)
    configs = configs_for(tiny_flags(cifar_dir), [{"lr": 0.01}, {"lr": 0.02}])
    runner = Runner(
        progress=False, on_run=lambda i, cfg, status, name: events.append((status, name))
    )
    runner.run(configs, tmp_path, ["lr=0.01", "lr=0.02"])
    assert events == [("new", "lr=0.01"), ("train", 0.01), ("new", "lr=0.02"), ("train", 0.02)]
    events.clear()
    runner.run(configs, tmp_path, ["lr=0.01", "lr=0.02"])
    assert events == [("finished", "lr=0.01"), ("finished", "lr=0.02")]  # nothing trained


def test_sweep_runs_name_what_differs_in_their_first_line(cifar_dir, tmp_path, monkeypatch, capsys):
    args = [
        "sweep",
        "--data-dir",
        cifar_dir,
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--eval-limit",
        "10",
        "--lr",
        "0.01,0.02",
        "--out",
        tmp_path / "s",
        "--quiet",
    ]
    assert cli(monkeypatch, *args) == 0
    out = capsys.readouterr().out
    assert "base CNN (lr=0.01), " in out and "base CNN (lr=0.02), " in out


def test_runs_handed_to_workers_are_announced_as_queued(cifar_dir, tmp_path, capsys):
    from cifarlab.experiments.executors import RunOutcome
    from cifarlab.experiments.runner import Progress

    class Pool:  # an executor that hands every run out at once, as a worker pool does
        def run(self, tasks):
            for t in tasks:
                t.started(queued=True)
            return [RunOutcome(t.run_dir, "not trained here") for t in tasks]

        def close(self):
            pass

    configs = configs_for(tiny_flags(cifar_dir), [{"lr": 0.01}, {"lr": 0.02}])
    progress = Progress(tmp_path / "runs", configs, Runner().data)
    progress.probed["base"] = 100.0  # no speed probe in this test
    runner = Runner(progress=False, on_run=progress.on_run, executor=Pool())
    with pytest.raises(Exception, match="2 of 2 runs failed"):
        runner.run(configs, tmp_path, ["lr=0.01", "lr=0.02"])
    out = capsys.readouterr().out
    assert "base lr=0.01 (queued)" in out and "base lr=0.02 (queued)" in out
    assert progress.total_trained == 2


def test_speed_probe_times_the_training_step_and_keeps_the_random_state(cifar_dir):
    (cfg,) = configs_for(tiny_flags(cifar_dir), [{}])
    data = load_dataset("cifar10", cifar_dir)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    rate = probe_images_per_second(cfg, data)
    assert rate > 0
    assert torch.equal(torch.rand(3), expected)
