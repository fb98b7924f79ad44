"""--freeze-from: the network's blocks stop training one after the other, each after its
epoch: from then on its weights and BatchNorm biases stay exactly as they were (with SGD
and lookahead, and with Muon), while the later blocks and the head go on; models without
blocks and torchrun runs are refused up front. (Resuming into frozen epochs: the shared
fast-cpu run of test_resume.)"""

from __future__ import annotations

import pytest
import torch

from cifarlab.config.options import identity, resolve
from cifarlab.config.recipes import RECIPES
from cifarlab.data import load_cifar10, make_splits
from cifarlab.errors import CifarlabError
from cifarlab.training.trainer import Trainer, freeze_epochs


@pytest.mark.parametrize(
    ("epochs", "share", "blocks", "expected"),
    [
        (8, 0.625, 3, [5, 6]),  # the first block after epoch 5, the second after epoch 6
        (8, 0.75, 3, [6, 7]),
        (80, 0.625, 3, [50, 65]),  # evenly spaced over the last 1 - S of the epochs
        (4, 0.5, 3, [2, 3]),
        (2, 0.1, 3, [1, 1]),  # at least one epoch of training
        (8, 0.5, 2, [4]),  # the last block is never frozen
        (8, 0.5, 1, []),
        (8, 0.0, 3, []),
    ],
)
def test_each_block_freezes_after_its_epoch(epochs, share, blocks, expected):
    cfg = resolve(None, {"model": "fast", "epochs": epochs, "freeze_from": share})
    assert freeze_epochs(cfg, blocks) == expected


def test_freeze_from_is_a_share_below_one_and_in_a_runs_identity_only_when_set():
    assert "freeze_from" not in identity(resolve(None, {"model": "fast"}))
    assert identity(resolve(None, {"model": "fast", "freeze_from": 0.5}))["freeze_from"] == 0.5
    with pytest.raises(CifarlabError, match=r"--freeze-from must be in \[0, 1\), not 1"):
        resolve(None, {"model": "fast", "freeze_from": 1})


def tiny_trainer(data_dir, world_size: int = 1, **kw) -> Trainer:
    values = dict(model="fast", epochs=4, batch_size=10, limit=20, eval_limit=10)
    cfg = resolve(None, {**values, "data_dir": str(data_dir), "device": "cpu", **kw})
    splits = make_splits(load_cifar10(data_dir), **cfg.split_args())
    return Trainer(cfg, splits, world_size=world_size)


def test_a_model_without_blocks_is_refused(shared_cifar_dir):
    with pytest.raises(CifarlabError, match="--freeze-from needs a model made of blocks"):
        tiny_trainer(shared_cifar_dir, model="base", freeze_from=0.5)


def test_torchrun_is_refused(shared_cifar_dir, tiny_fast):
    with pytest.raises(CifarlabError, match="--freeze-from does not run under torchrun"):
        tiny_trainer(shared_cifar_dir, world_size=2, model=tiny_fast, freeze_from=0.5)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], kind: str) -> bool:
    """Whether the tensors of a kind ("weight", "bias" or "running_mean") are all equal."""
    keys = [k for k in a if k.endswith(kind)]
    assert keys
    return all(torch.equal(a[k], b[k]) for k in keys)


@pytest.mark.parametrize("recipe", ["fast", "fast-muon"])  # SGD with lookahead; Muon
def test_a_frozen_block_stays_as_it_was_and_the_rest_trains(shared_cifar_dir, tiny_fast, recipe):
    """4 epochs of 4 steps, --freeze-from 0.5: the first block after epoch 2, the second
    after 3 (lookahead, every 5 steps, then averages in epochs 2, 3 and 4 alike)."""
    options = {**RECIPES[recipe], "model": tiny_fast, "epochs": 4, "batch_size": 5}
    trainer = tiny_trainer(shared_cifar_dir, **options, freeze_from=0.5, precision="fp32")
    model = trainer.model
    block1, block2, block3 = model.blocks
    before = [snapshot(b) for b in model.blocks] + [snapshot(model[-2])]  # blocks, head
    for epoch in range(1, 5):
        trainer.train_epoch()
        after = [snapshot(b) for b in model.blocks] + [snapshot(model[-2])]
        frozen = [epoch > 2, epoch > 3, False, False]
        for part, was, now, stays in zip(
            ["block 1", "block 2", "block 3", "head"], before, after, frozen, strict=True
        ):
            assert same(was, now, "weight") == stays, (epoch, part)
            if part != "head":
                assert same(was, now, "bias") == stays, (epoch, part)
                assert not same(was, now, "running_mean"), (epoch, part)  # still averaged
        assert all(p.grad is None for p in block1.parameters()) == (epoch > 2)
        before = after
    assert not any(p.requires_grad for p in [*block1.parameters(), *block2.parameters()])
    assert block3[0].weight.requires_grad
