"""A run killed at epoch k and resumed with `cifarlab train --resume` ends exactly as the
uninterrupted run: every random draw, optimizer state, schedule and average is restored.

(Other behaviour of resuming is tested beside its subject: TensorBoard in test_tracking,
MLflow in test_mlflow, torchrun in test_distributed, the command's errors in test_train.)
"""

from __future__ import annotations

import json

import pytest
import torch

from cifarlab.runs.checkpoint import load_checkpoint
from cifarlab.training.loop import train
from tests.conftest import cli, killed_at_epoch


def metrics(run_dir) -> list[dict]:
    """metrics.jsonl without the times."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        del r["seconds"], r["images_per_second"]
    return rows


CASES = [
    # (shared run, killed when it reaches this epoch, lookahead average started by then)
    pytest.param("base", 2, False, id="base"),  # augmentation; two epochs after the resume
    pytest.param("base", 1, False, id="base-killed-in-epoch-1"),  # no checkpoint: afresh
    pytest.param("improved", 2, False, id="improved", marks=pytest.mark.slow),  # dropout
    pytest.param("fast", 4, True, id="fast-lookahead-started"),
    pytest.param("fast", 2, False, id="fast-lookahead-not-started"),
    pytest.param("fast-muon", 3, False, id="fast-muon"),
    # micro-batches; resumed into epochs with the whitening bias settled and blocks frozen
    pytest.param("fast-cpu", 3, False, id="fast-cpu"),
    pytest.param("adam", 2, False, id="adam"),
    # AdamW, random erasing, MixUp/CutMix and early stopping (one epoch without a new best
    # before the kill, the stop after it)
    pytest.param("regularized", 3, False, id="adamw-regularized-early-stop"),
]


@pytest.mark.parametrize("name,killed_at,lookahead_started", CASES)
def test_killed_and_resumed_run_is_the_uninterrupted_run(
    shared_runs, tmp_path, monkeypatch, one_thread, tiny_fast, name, killed_at, lookahead_started
):
    cfg = shared_runs.config(name)
    full = shared_runs(name)
    cut = tmp_path / "cut"
    with killed_at_epoch(killed_at):
        train(cfg, cut, progress=False)
    if killed_at == 1:  # killed before its first checkpoint: --resume starts it again
        assert not (cut / "checkpoint.pt").exists() and (cut / "config.json").exists()
    else:
        ckpt = load_checkpoint(cut)
        assert ckpt["epoch"] == killed_at - 1 and len(metrics(cut)) == killed_at - 1
        assert ckpt["lookahead_started"] is lookahead_started

    assert cli(monkeypatch, "train", "--resume", cut, "--quiet") == 0

    a, b = load_checkpoint(full), load_checkpoint(cut)
    sa, sb = (json.loads((run / "summary.json").read_text()) for run in (full, cut))
    stopped_at = sa.get("early_stopped_at")  # with --early-stop: the epoch it stopped at
    assert a["epoch"] == b["epoch"] == (stopped_at or cfg.epochs)
    same_weights(a, b)
    assert metrics(cut) == metrics(full)
    assert sb["status"] == "finished"
    assert (sb["test_loss"], sb["test_acc"]) == (sa["test_loss"], sa["test_acc"])
    if cfg.early_stop:
        assert stopped_at is not None and stopped_at < cfg.epochs  # the counter went on
        assert sb["early_stopped_at"] == stopped_at
        assert sb["tested_weights"] == sa["tested_weights"]
        same_weights(load_checkpoint(full / "best.pt"), load_checkpoint(cut / "best.pt"))


def same_weights(a: dict, b: dict) -> None:
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
