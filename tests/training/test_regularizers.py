"""Adam and AdamW, the batch regularizers (random erasing, MixUp, CutMix), early stopping
with best.pt, and the improved-plus recipe, on tiny synthetic data. (That runs with them
resume exactly is tested in test_resume.)"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Iterator

import pytest
import torch
from PIL import Image

from cifarlab.config.options import resolve
from cifarlab.config.parse import command_for, parse_list
from cifarlab.models.registry import build_model
from cifarlab.runs.checkpoint import load_checkpoint
from cifarlab.training.loop import train
from cifarlab.training.optim import make_optimizer
from cifarlab.training.regularizers import BatchRegularizer, count_correct
from cifarlab.training.trainer import Trainer
from tests.conftest import cli

TINY = dict(
    model="base", batch_size=10, lr=0.01, limit=20, eval_limit=10, device="cpu", eval_batch_size=100
)


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % 10


# ---------------------------------------------------------------------- Adam and AdamW


@pytest.mark.parametrize("name, kind", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_adam_and_adamw_take_the_betas_and_sgds_groups(name, kind):
    cfg = resolve(None, {"model": "fast", "optimizer": name, "betas": "0.8,0.99"})
    opt, _ = make_optimizer(build_model("fast"), cfg, steps_per_epoch=5)
    assert type(opt) is kind
    main, bn, whitening_bias = opt.param_groups  # BatchNorm biases at 64x lr, as with SGD
    assert all(g["betas"] == (0.8, 0.99) for g in opt.param_groups)
    assert bn["initial_lr"] == pytest.approx(64 * main["initial_lr"])
    assert bn["weight_decay"] == pytest.approx(main["weight_decay"] / 64)


def test_a_recipes_sgd_options_go_with_another_optimizer_and_betas_read_any_way():
    cfg = resolve(None, {"model": "improved", "optimizer": "adamw"})
    assert (cfg.momentum, cfg.nesterov, cfg.weight_decay) == (0.0, False, 5e-4)
    from_file = resolve({"optimizer": "adam", "betas": [0.9, 0.98]}, {})
    assert from_file.betas == "0.9,0.98" and "--betas 0.9,0.98" in command_for(from_file)
    assert parse_list("betas", "0.9,0.999;0.8,0.99") == ["0.9,0.999", "0.8,0.99"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--optimizer", "adam", "--betas", "0.9"], "--betas must be two numbers in [0, 1)"),
        (["--optimizer", "adamw", "--betas", "0.9,x"], "--betas must be two numbers"),
        (["--betas", "0.9,0.99"], "--betas is for --optimizer adam or adamw"),
        (["--optimizer", "adam", "--momentum", "0.9"], "--momentum is for --optimizer sgd"),
        (["--early-stop", "2", "--val-from", "none"], "--early-stop watches the validation"),
        (["--random-erasing", "1.5"], "--random-erasing is a probability"),
    ],
)
def test_bad_options_are_one_line(cifar_dir, tmp_path, monkeypatch, capsys, args, words):
    out = tmp_path / "run"
    assert cli(monkeypatch, "train", "--data-dir", cifar_dir, "--out", out, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
    assert not out.exists()


# ------------------------------------------------------------------ batch regularizers


def test_mixup_and_cutmix_mix_images_and_labels_from_their_own_generator():
    x, y = batch()
    for options in (dict(mixup=0.4), dict(cutmix=1.0), dict(mixup=0.4, cutmix=1.0)):
        reg = BatchRegularizer(resolve(None, options), num_classes=10)
        outer = torch.get_rng_state()
        mixed, target = reg(x.clone(), y)
        assert torch.equal(torch.get_rng_state(), outer)  # dropout's generator not moved
        assert not torch.equal(mixed, x) and target.shape == (8, 10)
        assert torch.allclose(target.sum(1), torch.ones(8))
        # each image mixes itself (its label's weight lam) and the one before (1 - lam)
        lam = float(target[0, y[0]])
        assert 0 < lam < 1 and torch.allclose(target[:, y].diagonal(), torch.full((8,), lam))
        if options == dict(mixup=0.4):
            assert torch.allclose(mixed, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-6)
        again = BatchRegularizer(resolve(None, options), num_classes=10)
        assert torch.equal(again(x.clone(), y)[0], mixed)  # the same seed, the same draws
    other_rank = BatchRegularizer(resolve(None, dict(mixup=0.4)), num_classes=10, rank=1)
    assert not torch.equal(other_rank(x.clone(), y)[1], target)


def test_accuracy_against_mixed_labels_is_the_weight_on_the_predicted_class():
    x, y = batch()
    _, target = BatchRegularizer(resolve(None, dict(mixup=0.4)), 10)(x, y)
    right = torch.nn.functional.one_hot(y, 10).float() * 5  # logits predicting y
    assert count_correct(right, y) == 8  # plain labels: a count
    lam = float(target[0, y[0]])
    assert float(count_correct(right, target)) == pytest.approx(8 * lam)
    assert 0 <= float(count_correct(torch.randn(8, 10), target)) <= 8


def test_random_erasing_erases_a_rectangle_of_each_image():
    x = torch.ones(16, 3, 32, 32)
    y = torch.arange(16) % 10
    out, target = BatchRegularizer(resolve(None, dict(random_erasing=1.0)), 10)(x.clone(), y)
    assert torch.equal(target, y)  # labels untouched
    erased = (out == 0).all(1)  # (16, 32, 32): every channel set to 0, the mean colour
    areas = erased.sum((1, 2)).float() / (32 * 32)
    assert ((areas > 0.01) & (areas < 0.4)).all()  # 2-33% of each image (rounded)
    assert len(set(areas.tolist())) > 4  # each image its own rectangle
    assert (out[~erased.unsqueeze(1).expand_as(out)] == 1).all()  # the rest as it was


def test_a_mixed_run_trains_on_mixed_batches_with_a_train_accuracy_in_0_1(
    shared_cifar_dir, tmp_path
):
    plain = resolve(None, {**TINY, "epochs": 2, "data_dir": str(shared_cifar_dir)})
    mixed = plain.replace(mixup=0.4, cutmix=1.0, random_erasing=0.5)
    rows = {}
    for name, cfg in (("plain", plain), ("mixed", mixed)):
        train(cfg, tmp_path / name, progress=False)
        rows[name] = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").open()]
    for r in rows["mixed"]:
        assert 0 <= r["train_acc"] <= 1
    for a, b in zip(rows["plain"], rows["mixed"], strict=True):
        assert a["train_loss"] != b["train_loss"]


# ---------------------------------------------------------------------- early stopping


@contextlib.contextmanager
def scripted_validation(accuracies: dict[int, float]) -> Iterator[None]:
    """Within the block, each epoch's validation accuracy is as given (the rest is real)."""
    real = Trainer.evaluate

    def evaluate(self, split="val", tta=None):
        result = real(self, split, tta)
        return dataclasses.replace(result, acc=accuracies[self.epoch]) if split == "val" else result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "evaluate", evaluate)
        yield


def test_early_stopping_keeps_tests_and_serves_the_best_epoch(
    shared_cifar_dir, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"

    def keep_checkpoint(row):  # the epoch hook still runs, after each epoch's checkpoint
        shutil.copy(run / "checkpoint.pt", tmp_path / f"epoch-{row['epoch']}.pt")

    cfg = resolve(
        None, {**TINY, "epochs": 8, "lr": 0.05, "early_stop": 2, "data_dir": str(shared_cifar_dir)}
    )
    # epoch 4 only ties epoch 2: no new best, so patience 2 runs out after epoch 4
    with scripted_validation({1: 0.1, 2: 0.3, 3: 0.2, 4: 0.3}):
        summary = train(cfg, run, progress=False, on_epoch=keep_checkpoint)
    assert "early stop after epoch 4" in capsys.readouterr().out
    assert summary["status"] == "finished" and summary["epochs_completed"] == 4
    assert (summary["early_stopped_at"], summary["tested_weights"]) == (4, "best (epoch 2)")
    best, second = load_checkpoint(run / "best.pt"), load_checkpoint(tmp_path / "epoch-2.pt")
    assert best["epoch"] == 2 and "optimizer" not in best and "rng" not in best
    for k, v in second["state_dict"].items():
        assert torch.equal(best["state_dict"][k], v), k
    last = load_checkpoint(run)["state_dict"]
    assert not all(torch.equal(last[k], v) for k, v in best["state_dict"].items())
    # the test evaluation was of the best weights: evaluate --checkpoint best repeats it
    assert cli(monkeypatch, "evaluate", run, "--checkpoint", "best", "--mistakes", "0") == 0
    report = json.loads((run / "evaluate-test-best" / "evaluation.json").read_text())
    assert report["loss"] == pytest.approx(summary["test_loss"], rel=1e-5)
    assert report["checkpoint"].endswith("best.pt")
    assert cli(monkeypatch, "evaluate", run, "--mistakes", "0") == 0  # the last weights
    report = json.loads((run / "evaluate-test" / "evaluation.json").read_text())
    assert report["loss"] != pytest.approx(summary["test_loss"], rel=1e-5)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    assert cli(monkeypatch, "predict", run, tmp_path / "red.png", "--checkpoint", "best") == 0
    args = ["export", run, "--checkpoint", "best", "--format", "torchscript"]
    assert cli(monkeypatch, *args) == 0 and (run / "model-best.torchscript.pt").is_file()
    # resumed, the run is found finished (it stopped before its last epoch)
    capsys.readouterr()
    assert cli(monkeypatch, "train", "--resume", run) == 0
    assert "already finished" in capsys.readouterr().out


def test_patience_running_out_at_the_last_epoch_is_no_early_stop(
    shared_cifar_dir, tmp_path, capsys
):
    cfg = resolve(None, {**TINY, "epochs": 3, "early_stop": 2, "data_dir": str(shared_cifar_dir)})
    with scripted_validation({1: 0.3, 2: 0.1, 3: 0.1}):
        summary = train(cfg, tmp_path / "run", progress=False)
    assert (summary["early_stopped_at"], summary["tested_weights"]) == (None, "best (epoch 1)")
    assert "early stop" not in capsys.readouterr().out


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_checkpoint_best_without_best_pt_is_one_line(base_run, monkeypatch, capsys, command):
    assert not (base_run / "best.pt").exists()  # written only with --early-stop
    assert cli(monkeypatch, command, base_run, "--checkpoint", "best") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no best.pt in ") and err.count("\n") == 1
    assert "--early-stop" in err


# ---------------------------------------------------------------------- improved-plus


def test_improved_plus_is_the_improved_network_with_its_recipe(shared_cifar_dir, tmp_path):
    cfg = resolve(None, {"model": "improved-plus"})
    assert (cfg.epochs, cfg.label_smoothing, cfg.random_erasing) == (35, 0.1, 0.5)
    assert (cfg.optimizer, cfg.nesterov, cfg.weight_decay) == ("sgd", True, 5e-4)
    assert (
        build_model("improved-plus").state_dict().keys()
        == build_model("improved").state_dict().keys()
    )
    small = {k: v for k, v in TINY.items() if k != "model"}
    cfg = resolve(
        None, {**small, "model": "improved-plus", "epochs": 1, "data_dir": str(shared_cifar_dir)}
    )
    assert cfg.warmup_epochs == pytest.approx(
        2 / 35, abs=1e-6
    )  # the recipe's share of its 35 epochs
    summary = train(cfg, tmp_path / "run", progress=False)  # every ingredient, one epoch
    assert summary["status"] == "finished"
