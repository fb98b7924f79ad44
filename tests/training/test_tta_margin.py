"""Test-time augmentation only where the model is unsure (--tta-margin): the unsure images
get exactly full TTA's logits, the sure ones their plain logits."""

from __future__ import annotations

import pytest
import torch

from cifarlab.config.options import RECIPES, resolve
from cifarlab.errors import CifarlabError
from cifarlab.models.registry import build_model
from cifarlab.training.evaluation import tta_logits


@pytest.fixture
def model_and_batch():
    torch.manual_seed(0)
    model = build_model("fast").eval()
    # BatchNorm statistics from a few random batches, so that logits differ between images
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(64, 3, 32, 32))
    model.eval()
    return model, torch.randn(64, 3, 32, 32)


def margins(logits: torch.Tensor) -> torch.Tensor:
    top2 = logits.softmax(1).topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


@pytest.mark.parametrize("tta", ["flip", "flip-translate"])
def test_unsure_images_get_full_tta_and_sure_ones_plain(model_and_batch, tta):
    model, x = model_and_batch
    with torch.no_grad():
        plain = tta_logits(model, x, "none")
        full = tta_logits(model, x, tta)
        threshold = float(margins(plain).median())  # half the images unsure
        some = tta_logits(model, x, tta, margin=threshold)
    unsure = margins(plain) < threshold
    assert 0 < int(unsure.sum()) < len(x)
    assert torch.allclose(some[unsure], full[unsure], atol=1e-5)
    assert torch.equal(some[unsure].argmax(1), full[unsure].argmax(1))
    assert torch.equal(some[~unsure], plain[~unsure])
    assert not torch.allclose(plain[unsure], full[unsure], atol=1e-3)  # TTA changed them


def test_margin_one_is_full_tta_and_zero_is_plain(model_and_batch):
    model, x = model_and_batch
    with torch.no_grad():
        full = tta_logits(model, x, "flip-translate")
        assert torch.equal(tta_logits(model, x, "flip-translate", margin=1.0), full)
        assert torch.equal(tta_logits(model, x, "flip-translate", margin=0.0), model(x))


def test_unknown_tta_mode_is_refused(model_and_batch):
    model, x = model_and_batch
    with pytest.raises(CifarlabError, match="test-time augmentation must be one of"):
        tta_logits(model, x, "rotate")


def test_tta_margin_option_is_checked():
    with pytest.raises(CifarlabError, match="tta_margin|tta-margin"):
        resolve(None, {**RECIPES["fast"], "model": "fast", "tta_margin": -0.1})


def test_the_trainer_evaluates_at_a_margin_it_is_given(tiny_fast, shared_learnable_dir):
    """Trainer.evaluate(tta_margin=M) is the run's evaluation at --tta-margin M (what
    benchmarks/time_to_94.py --margins compares on one model): 0 is no TTA, 1 is full TTA."""
    from cifarlab.data import load_cifar10, make_splits
    from cifarlab.training.trainer import Trainer

    values = {**RECIPES["fast"], "model": tiny_fast, "epochs": 1, "warmup_epochs": 0.5}
    values.update(batch_size=50, limit=100, eval_batch_size=100, precision="fp32", device="cpu")
    cfg = resolve(None, {**values, "data_dir": str(shared_learnable_dir)})
    data = load_cifar10(shared_learnable_dir)
    trainer = Trainer(cfg, make_splits(data, **cfg.split_args()))
    trainer.prepare()
    trainer.train_epoch()
    full, plain = trainer.evaluate("test"), trainer.evaluate("test", tta="none")
    assert full.loss != plain.loss  # the run's TTA (margin 1) changes the logits
    for margin, expected in ((1.0, full), (0.0, plain)):
        got = trainer.evaluate("test", tta_margin=margin)
        assert (got.loss, got.acc) == (expected.loss, expected.acc), margin
        assert torch.equal(got.confusion, expected.confusion)
