"""The `fast` model and its recipe's tricks: whitening, alternating flips, translation,
triangle schedule, weight averaging, test-time augmentation, --val-from none."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from cifarlab.config.options import RECIPES, resolve
from cifarlab.data import Normalize, Split, load_cifar10, make_splits
from cifarlab.errors import CifarlabError
from cifarlab.evaluate import trained as inference
from cifarlab.models.builtin import count_parameters
from cifarlab.models.registry import build_model
from cifarlab.runs.checkpoint import load_checkpoint
from cifarlab.training import batches as device_batches
from cifarlab.training import evaluation
from cifarlab.training.loop import train
from cifarlab.training.optim import lr_lambda
from cifarlab.training.trainer import Trainer


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: much faster on a small busy machine, and lighter on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fast_cfg(data_dir, model="fast", **kw):
    """The fast recipe, scaled down to a few steps on the synthetic data."""
    values = {**RECIPES["fast"], "model": model, "data_dir": str(data_dir), "device": "cpu"}
    values.update(epochs=3, batch_size=50, lr=0.2, warmup_epochs=0.5, limit=200, precision="fp32")
    values.update(eval_batch_size=100)
    values.update(kw)
    return resolve(None, values)


def test_fast_model_shape_and_frozen_parts():
    model = build_model("fast").eval()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    assert not model.whitening.weight.requires_grad and model.whitening.bias.requires_grad
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 6 and all(not b.weight.requires_grad and b.bias.requires_grad for b in bns)
    assert 1_900_000 < count_parameters(model) < 2_100_000


def test_whitening_layer_whitens_patches():
    """After init_whitening, the layer's outputs on the images' 2x2 patches have (nearly)
    the identity as covariance; the second half of the filters is the first negated."""
    g = torch.Generator().manual_seed(0)
    # correlated channels and neighbouring pixels, as in real images
    low = torch.randn(400, 3, 8, 8, generator=g)
    x = F.interpolate(low, size=32, mode="bilinear", align_corners=False)
    x = x + 0.3 * x.mean(1, keepdim=True) + 0.2 * torch.randn(400, 3, 32, 32, generator=g)
    model = build_model("fast")
    model.init_whitening(x)
    w = model.whitening.weight
    assert torch.allclose(w[12:], -w[:12])
    patches = F.unfold(x, 2).transpose(1, 2).reshape(-1, 12).double()
    out = patches @ w[:12].reshape(12, 12).double().T
    cov = out.T @ out / len(out)
    assert torch.allclose(cov, torch.eye(12, dtype=torch.float64), atol=0.02)
    # and the input really was far from white
    raw = patches.T @ patches / len(patches)
    assert (raw - torch.eye(12, dtype=torch.float64)).abs().max() > 0.3


def test_translate_is_reflect_pad_and_crop():
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    shift = torch.tensor([[0, 0], [-2, 2], [2, -2], [1, -1], [-2, -2]])
    out = device_batches.translate(x, shift)
    padded = F.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    for i, (dy, dx) in enumerate(shift.tolist()):
        expect = padded[i, :, 2 + dy : 34 + dy, 2 + dx : 34 + dx]
        assert torch.equal(out[i].float(), expect)


def test_alternating_flip():
    """Each image comes flipped one epoch and not the next; half start flipped."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    split = Split(images, torch.arange(40))
    loader = device_batches.DeviceLoader(
        split,
        16,
        torch.device("cpu"),
        Normalize([0.0] * 3, [1 / 255] * 3),
        shuffle=True,
        augment="flip",
        generator=g,
        alt_flip=True,
    )

    def flipped(epoch):
        loader.set_epoch(epoch)
        out = {}
        for x, y in loader:
            for img, label in zip(x.round().to(torch.uint8), y.tolist(), strict=True):
                if torch.equal(img, images[label]):
                    out[label] = False
                else:
                    assert torch.equal(img, images[label].flip(2))
                    out[label] = True
        assert len(out) == 40
        return out

    e1, e2, e3 = flipped(1), flipped(2), flipped(3)
    assert all(e1[i] != e2[i] and e1[i] == e3[i] for i in range(40))
    assert 10 <= sum(e1.values()) <= 30


def test_triangle_schedule():
    f = lr_lambda("triangle", total_steps=100, warmup_steps=20)
    assert f(0) == pytest.approx(0.2) and f(10) == pytest.approx(0.6)
    assert f(20) == pytest.approx(1.0) and f(100) == pytest.approx(0.07)
    assert f(60) == pytest.approx(1 - 0.93 / 2)


def test_tta_views():
    torch.manual_seed(0)
    model = build_model("fast").eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        plain = evaluation.tta_logits(model, x, "none")
        flip = evaluation.tta_logits(model, x, "flip")
        full = evaluation.tta_logits(model, x, "flip-translate")
        assert torch.allclose(flip, 0.5 * (model(x) + model(x.flip(-1))), atol=1e-5)
        p = F.pad(x, (1, 1, 1, 1), mode="reflect")
        views = [x, p[..., :32, :32], p[..., 2:, 2:]]
        mirror = [0.5 * (model(v) + model(v.flip(-1))) for v in views]
        expect = 0.5 * mirror[0] + 0.25 * (mirror[1] + mirror[2])
        assert torch.allclose(full, expect, atol=1e-5)
    assert not torch.allclose(plain, flip)


def test_fast_model_trains_a_few_steps(learnable_dir, tmp_path):
    """The real `fast` network, the recipe's tricks on: the loss falls within 8 steps."""
    cfg = fast_cfg(learnable_dir, epochs=2, limit=200, batch_size=50, eval_limit=40)
    trainer = Trainer(cfg, make_splits(load_cifar10(learnable_dir), **cfg.split_args()))
    assert trainer.prepare() > 0
    w0 = trainer.model.whitening.weight.detach().clone()
    losses = [trainer.train_epoch()["train_loss"] for _ in (1, 2)]
    assert losses[1] < losses[0] and trainer.epoch == 2
    assert torch.equal(trainer.model.whitening.weight, w0)  # frozen
    result = trainer.evaluate("test")  # 6 views per image
    labels = trainer.splits.test.labels
    assert len(result.predictions) == 40
    assert result.acc == (result.predictions == labels).sum().item() / 40


def test_fast_recipe_run_folder(learnable_dir, tmp_path, tiny_fast):
    """--val-from none: all training images, the whole test set, no validation columns;
    the summary holds the whitening and test-time-augmented evaluation times."""
    out = tmp_path / "run"
    s = train(fast_cfg(learnable_dir, model=tiny_fast, limit=None), out, progress=False)
    assert s["test_size"] == 200 and s["tta"] == "flip-translate"
    assert s["whiten_seconds"] > 0 and s["test_seconds"] > 0
    assert s["best_val_acc"] is None and s["test_acc"] > 0.3  # chance: 0.1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert all(r["val_acc"] is None and r["val_loss"] is None for r in rows)
    assert (out / "curves.png").stat().st_size > 0
    assert load_checkpoint(out)["lookahead_started"] is True
    # `cifarlab evaluate` applies the run's test-time augmentation: same numbers
    t = inference.load_trained(out, "cpu")
    report, _ = inference.evaluate_trained(t, load_cifar10(learnable_dir))
    assert report["accuracy"] == s["test_acc"] and report["images"] == 200
    assert report["loss"] == pytest.approx(s["test_loss"], rel=1e-6)


@pytest.mark.parametrize(
    "flags,message",
    [
        ({"alt_flip": True, "augment": "none"}, "--alt-flip needs an --augment with flips"),
        ({"tta": "rotate"}, "--tta must be one of"),
        ({"bn_bias_lr_scale": 0.0}, "--bn-bias-lr-scale must be greater than 0"),
        ({"val_from": "none", "val_size": 10}, "--val-size needs a validation split"),
    ],
)
def test_new_options_validated(flags, message):
    with pytest.raises(CifarlabError, match=message):
        resolve(None, {"model": "fast", **flags})


def test_no_whiten_trains_the_first_layer(learnable_dir, tmp_path, tiny_fast):
    cfg = fast_cfg(learnable_dir, model=tiny_fast, whiten=False, lookahead=False, epochs=1)
    trainer = Trainer(cfg, make_splits(load_cifar10(learnable_dir), **cfg.split_args()))
    assert trainer.prepare() == 0
    w0 = trainer.model.whitening.weight.detach().clone()
    trainer.train_epoch()
    assert not torch.equal(trainer.model.whitening.weight, w0)


def test_shorter_runs_keep_the_warmup_share():
    """--epochs below the recipe's shrinks its warm-up in proportion (the fast recipe's
    2.3 of 10 epochs used to make `--model fast --epochs 1` an error); longer runs and an
    explicit --warmup-epochs keep theirs."""
    assert resolve(None, {"model": "fast", "epochs": 1}).warmup_epochs == pytest.approx(0.23)
    assert resolve(None, {"model": "fast", "epochs": 8}).warmup_epochs == pytest.approx(1.84)
    assert resolve(None, {"model": "fast", "epochs": 12}).warmup_epochs == 2.3
    assert resolve(None, {"model": "fast"}).warmup_epochs == 2.3
    explicit = resolve(None, {"model": "fast", "epochs": 5, "warmup_epochs": 0.5})
    assert explicit.warmup_epochs == 0.5
    assert resolve(None, {"model": "improved", "epochs": 10}).warmup_epochs == 0.5
    assert resolve(None, {"model": "base", "epochs": 1}).warmup_epochs == 0.0
    with pytest.raises(CifarlabError, match="warmup-epochs"):
        resolve(None, {"model": "fast", "epochs": 1, "warmup_epochs": 2.0})


def test_muon_recipe_trains(shared_runs):
    """--optimizer muon (the fast-muon recipe's): the loss falls. (That a resumed run ends
    as the uninterrupted one: test_resume.)"""
    run = shared_runs("fast-muon")
    assert shared_runs.config("fast-muon").optimizer == "muon"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    summary = json.loads((run / "summary.json").read_text())
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and summary["test_acc"] > 0.2


def test_compile_option_trains_the_same(learnable_dir, monkeypatch):
    """--compile puts torch.compile around the training forward (here with the aot_eager
    backend, which needs no C++ compiler): the same losses as eager."""
    calls = []
    real = torch.compile

    def compile_eagerly(model, mode=None):
        calls.append(mode)
        return real(model, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    losses = {}
    for mode in ("none", "reduce-overhead"):
        cfg = fast_cfg(learnable_dir, model="base", compile=mode, epochs=1, limit=40)
        trainer = Trainer(cfg, make_splits(load_cifar10(learnable_dir), **cfg.split_args()))
        losses[mode] = trainer.train_epoch()["train_loss"]
    assert calls == ["reduce-overhead"]
    assert losses["reduce-overhead"] == pytest.approx(losses["none"], rel=1e-5)
