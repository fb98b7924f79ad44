"""The reshaped house: many runs announced as they start, the study's rerun line, resuming
a run that never wrote a checkpoint, folder names of plugin models, the speed probe, and a
command line that starts without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import cli

from cifarlab.data import load_dataset
from cifarlab.experiments import executors, ray_executor
from cifarlab.experiments.runner import Runner, configs_for, probe_images_per_second
from cifarlab.runs.folder import model_slug, run_dir_for


def tiny_flags(data_dir) -> dict:
    return {
        "data_dir": str(data_dir),
        "epochs": 1,
        "batch_size": 10,
        "eval_limit": 10,
        "precision": "fp32",
    }


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


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_afresh(
    cifar_dir, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps(
            {
                "model": "base",
                "epochs": 1,
                "batch_size": 10,
                "eval_limit": 10,
                "precision": "fp32",
                "data_dir": str(cifar_dir),
            }
        )
    )
    assert cli(monkeypatch, "train", "--resume", run) == 0
    out = capsys.readouterr().out
    assert "has no checkpoint yet" in out and "starting it afresh" in out
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert cli(monkeypatch, "train", "--resume", tmp_path / "nothing") == 2
    assert "no run there" in capsys.readouterr().err


def test_a_resumed_run_says_at_which_epoch(cifar_dir, tmp_path, monkeypatch, capsys):
    from cifarlab.training.trainer import Trainer

    real = Trainer.train_epoch

    def killed_at_epoch_2(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self)

    run = tmp_path / "run"
    args = [
        "train",
        "--data-dir",
        cifar_dir,
        "--epochs",
        "2",
        "--batch-size",
        "10",
        "--eval-limit",
        "10",
        "--precision",
        "fp32",
        "--out",
        run,
        "--quiet",
    ]
    monkeypatch.setattr(Trainer, "train_epoch", killed_at_epoch_2)
    assert cli(monkeypatch, *args) == 130  # interrupted after epoch 1's checkpoint
    monkeypatch.setattr(Trainer, "train_epoch", real)
    capsys.readouterr()
    assert cli(monkeypatch, "train", "--resume", run) == 0
    assert "resuming at epoch 2 of 2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "model, slug",
    [
        ("base", "base"),
        ("nets/mine.py:small", "mine-small"),
        ("pkg.nets:build", "pkg.nets-build"),
        ("C:\\nets\\my net.py:tiny", "my-net-tiny"),
    ],
)
def test_run_folders_of_plugin_models_are_one_plain_name(model, slug, tmp_path):
    assert model_slug(model) == slug
    assert ":" not in slug and "/" not in slug and "\\" not in slug


def test_run_cache_folder_of_a_file_model(tmp_path, cifar_dir):
    nets = tmp_path / "nets"
    nets.mkdir()
    (nets / "mine.py").write_text(
        "import torch.nn as nn\n\ndef small(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3072, num_classes))\n"
    )
    (cfg,) = configs_for({"model": f"{nets}/mine.py:small", **tiny_flags(cifar_dir)}, [{}])
    folder = run_dir_for(tmp_path / "runs", cfg)
    assert folder.parent == tmp_path / "runs" and folder.name.startswith("mine-small-")


def test_speed_probe_times_the_training_step_and_keeps_the_random_state(cifar_dir):
    (cfg,) = configs_for(tiny_flags(cifar_dir), [{}])
    data = load_dataset("cifar10", cifar_dir)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    rate = probe_images_per_second(cfg, data)
    assert rate > 0
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_the_command_line_starts_without_torch():
    code = (
        "import sys\nfrom cifarlab.cli.main import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'tensorboard') if m in sys.modules]\n"
        "print('heavy:', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "heavy: []" in out.stdout, out.stdout + out.stderr


def test_a_killed_write_is_not_shipped_with_a_run_folder(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    (tmp_path / ".summary.json.tmp4242").write_text("half")
    (tmp_path / ".lock").write_text("{}")
    assert list(ray_executor.folder_files(tmp_path)) == ["summary.json"]


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


def test_every_public_name_resolves():
    """`import cifarlab` names its API lazily: each name must import (run_tune among them)."""
    import cifarlab

    for name in cifarlab.__all__:
        assert getattr(cifarlab, name) is not None, name
    from cifarlab.tune.search import run_tune

    assert cifarlab.run_tune is run_tune
