"""The Trainer writes nothing, logs carry no progress bars, --deterministic is recorded and used,
and each process's shard of a split covers it."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from cifarlab.config.options import TrainConfig, resolve
from cifarlab.data import Split, load_cifar10, make_splits
from cifarlab.errors import CifarlabError
from cifarlab.training.hardware import set_deterministic
from cifarlab.training.loop import train
from cifarlab.training.trainer import Trainer
from tests.conftest import run_config


def small(data_dir, **kw) -> TrainConfig:
    values = dict(
        model="base",
        epochs=1,
        batch_size=10,
        lr=0.01,
        limit=30,
        eval_limit=20,
        data_dir=str(data_dir),
        device="cpu",
        precision="fp32",
    )
    return resolve(None, {**values, **kw})


def test_the_trainer_writes_nothing(learnable_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = small(learnable_dir, epochs=2)
    trainer = Trainer(cfg, make_splits(load_cifar10(learnable_dir), **cfg.split_args()))
    rows = [trainer.train_epoch() for _ in range(2)]
    assert [r["epoch"] for r in rows] == [1, 2] and trainer.epoch == 2
    state = trainer.state_dict()
    assert state["epoch"] == 2 and state["model"]["name"] == "base"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing new
    again = Trainer(cfg, trainer.splits)
    again.load_state_dict(state)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v)
    with pytest.raises(CifarlabError, match="another config"):
        Trainer(cfg.replace(lr=0.5), trainer.splits).load_state_dict(state)


def test_no_progress_bars_in_logs(learnable_dir, tmp_path, capsys, monkeypatch):
    """Output that is not a terminal gets the one line per epoch, no bar refreshes; a
    terminal gets the bar."""
    train(small(learnable_dir), tmp_path / "a", progress=True)
    out = capsys.readouterr()
    assert "\r" not in out.err and "\r" not in out.out
    assert out.out.count("epoch   1/1") == 1
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    train(small(learnable_dir), tmp_path / "b", progress=True)
    assert "\r" in capsys.readouterr().err


def test_deterministic_is_recorded_and_used(base_run, tmp_path, monkeypatch):
    """--deterministic turns torch's deterministic algorithms (and cuDNN's) on while the run
    trains, and records it; a run without it turns them off again. On the CPU its numbers
    are those of the same run without it."""
    states = []
    real = Trainer.train_epoch

    def watch(self):
        states.append(
            (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
        )
        if not self.cfg.deterministic:
            raise KeyboardInterrupt  # seen: no need to train it
        return real(self)

    monkeypatch.setattr(Trainer, "train_epoch", watch)
    cfg = run_config(base_run)  # trained without --deterministic
    try:
        a = train(cfg.replace(deterministic=True), tmp_path / "a", progress=False)
        assert states == [(True, True)] * cfg.epochs
        assert json.loads((tmp_path / "a" / "config.json").read_text())["deterministic"] is True
        with pytest.raises(KeyboardInterrupt):
            train(cfg, tmp_path / "b", progress=False)
        assert states[-1] == (False, False)
    finally:
        set_deterministic(False)
    assert json.loads((base_run / "config.json").read_text())["deterministic"] is False
    b = json.loads((base_run / "summary.json").read_text())
    assert (a["test_loss"], a["test_acc"]) == (b["test_loss"], b["test_acc"])


def test_split_shards_cover_the_split():
    split = Split(torch.zeros(7, 3, 32, 32, dtype=torch.uint8), torch.arange(7))
    parts = [split.shard(r, 3).labels.tolist() for r in range(3)]
    assert sum(parts, []) == list(range(7)) and [len(p) for p in parts] == [2, 2, 3]
    assert split.first(3).labels.tolist() == [0, 1, 2] and split.first(None) is split


def test_the_first_line_calls_only_the_studys_networks_cnns():
    from cifarlab.training.summary import model_words

    assert [model_words(m) for m in ("base", "improved", "resnet18", "timm:resnet18")] == [
        "base CNN",
        "improved CNN",
        "resnet18",
        "timm:resnet18",
    ]
