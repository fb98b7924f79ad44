"""--micro-batch: a step's gradient summed over micro-batches is the whole batch's step (for a
model without BatchNorm), the micro-batches really run apart, and the option leaves the
identity of every run that does not set it as it was."""

from __future__ import annotations

import pytest
import torch

from cifarlab.config.options import identity, resolve
from cifarlab.data import load_cifar10, make_splits
from cifarlab.errors import CifarlabError
from cifarlab.training.trainer import Trainer


def trained(data_dir, **kw) -> tuple[Trainer, dict, list[int]]:
    """A base CNN (no BatchNorm, no dropout; or the model kw names) after one epoch of two
    steps of 20 images, the epoch's row and the batch size of every forward pass."""
    values = dict(model="base", epochs=1, batch_size=20, lr=0.05, momentum=0.9, limit=40)
    values.update(eval_limit=10, data_dir=str(data_dir), device="cpu", precision="fp32")
    cfg = resolve(None, {**values, **kw})
    trainer = Trainer(cfg, make_splits(load_cifar10(data_dir), **cfg.split_args()))
    sizes: list[int] = []
    trainer.model.register_forward_hook(lambda _m, inputs, _o: sizes.append(len(inputs[0])))
    row = trainer.train_epoch()
    return trainer, row, sizes


def test_micro_batches_take_the_whole_batchs_step(shared_cifar_dir):
    whole, whole_row, whole_sizes = trained(shared_cifar_dir)
    micro, micro_row, micro_sizes = trained(shared_cifar_dir, micro_batch=8)
    assert whole_sizes == [20, 20] and micro_sizes == [8, 8, 4, 8, 8, 4]
    for name, w in whole.model.state_dict().items():
        assert torch.allclose(micro.model.state_dict()[name], w, atol=1e-6), name
    assert micro_row["train_loss"] == pytest.approx(whole_row["train_loss"], rel=1e-5)
    assert micro_row["train_acc"] == whole_row["train_acc"]


def test_a_micro_batch_of_the_batch_size_or_more_is_the_whole_batch(shared_cifar_dir):
    whole, _, _ = trained(shared_cifar_dir)
    same, _, sizes = trained(shared_cifar_dir, micro_batch=20)
    assert sizes == [20, 20]
    for name, w in whole.model.state_dict().items():
        assert torch.equal(same.model.state_dict()[name], w), name


def test_micro_batch_is_in_a_runs_identity_only_when_set():
    plain = resolve(None, {"model": "base"})
    assert "micro_batch" not in identity(plain)  # old run folders keep their cache keys
    assert identity(resolve(None, {"model": "base", "micro_batch": 8}))["micro_batch"] == 8
    with pytest.raises(CifarlabError, match="micro-batch"):
        resolve(None, {"model": "base", "micro_batch": -1})


def test_micro_batches_keep_batchnorms_averages_over_a_whole_step(shared_cifar_dir):
    """Each micro-batch updates BatchNorm's running averages: three updates a step (batch 20
    in micro-batches of 8) each move 1 - 0.6 ** (1/3) of the way, so that over a step the
    old averages keep the weight one update by the whole batch leaves them (the fast
    model's momentum 0.4)."""

    def momenta(trainer: Trainer) -> list[float]:
        norms = [m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        return [m.momentum for m in norms]

    plain, _, _ = trained(shared_cifar_dir, model="fast")
    micro, _, sizes = trained(shared_cifar_dir, model="fast", micro_batch=8)
    assert sizes == [8, 8, 4, 8, 8, 4] and len(momenta(plain)) == 6
    assert set(momenta(plain)) == {0.4}
    assert all((1 - m) ** 3 == pytest.approx(0.6) for m in momenta(micro))
