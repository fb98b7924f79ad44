"""--prune-easy (InfoBatch's dynamic pruning): which images an epoch leaves out and how the
ones it keeps are weighted, a pruned pass over the data (as many batches, each smaller), a
pruned epoch in the Trainer (its steps, its images, the loss its gradient comes from), and
the refusals. (Resuming into a pruned epoch: the shared fast-cpu run of test_resume.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cifarlab.config.options import identity, resolve
from cifarlab.data import Normalize, Split, load_cifar10, make_splits
from cifarlab.errors import CifarlabError
from cifarlab.training.batches import DeviceLoader
from cifarlab.training.pruning import EasyPruning
from cifarlab.training.trainer import Trainer

CPU = torch.device("cpu")


def scored(ratio: float = 0.5, last: int = 7) -> EasyPruning:
    """Ten images: 0-5 easy (loss 0.1, below the mean 0.66), 6-9 hard (loss 1.5)."""
    pruning = EasyPruning(10, ratio, last, CPU)
    pruning.loss(torch.tensor([0.1] * 6 + [1.5] * 4), torch.arange(10))
    return pruning


def test_epochs_two_to_last_leave_out_easy_images_only_and_weigh_those_kept_up():
    pruning = scored(ratio=0.5)
    keep = pruning.plan(2, steps=1, generator=torch.Generator().manual_seed(0))
    assert keep is not None and keep[6:].all()  # a hard image is never left out
    assert 0 < int((~keep).sum()) < 6
    kept_easy = keep & (torch.arange(10) < 6)
    assert torch.equal(pruning.weights[kept_easy], torch.full((int(kept_easy.sum()),), 2.0))
    assert torch.equal(pruning.weights[6:], torch.ones(4))


def test_the_draw_is_the_generators():
    a, b = scored(), scored()
    keep_a = a.plan(3, 1, torch.Generator().manual_seed(4))
    assert torch.equal(keep_a, b.plan(3, 1, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize(
    ("epoch", "steps", "ratio"),
    [(1, 1, 0.5), (8, 1, 0.5), (2, 1, 0.0), (2, 10, 0.5)],  # first, annealed, off, too few
)
def test_epochs_that_train_on_every_image(epoch, steps, ratio):
    pruning = scored(ratio=ratio, last=7)
    pruning.weights.fill_(3.0)  # a pruned epoch's weights before
    assert pruning.plan(epoch, steps, torch.Generator().manual_seed(0)) is None
    assert torch.equal(pruning.weights, torch.ones(10))


def test_the_expected_weighted_loss_is_the_full_mean():
    """InfoBatch's rescaling: over the draws, the kept images' weighted losses sum to the
    whole split's in expectation; and a step's loss, their weighted mean times the share
    kept, is the whole split's mean loss (their mean alone would be 1 / share times it)."""
    losses = torch.tensor([0.1] * 6 + [1.5] * 4)
    pruning, gen, total, step = scored(ratio=0.7), torch.Generator().manual_seed(1), 0.0, 0.0
    for _ in range(4000):
        keep = pruning.plan(2, 1, gen)
        assert pruning.share == int(keep.sum()) / 10
        total += float((losses * pruning.weights * keep).sum())
        step += float((losses * pruning.weights)[keep].mean()) * pruning.share
        pruning.scores.copy_(losses)
    assert total / 4000 == pytest.approx(float(losses.sum()), rel=0.02)
    assert step / 4000 == pytest.approx(float(losses.mean()), rel=0.02)
    assert pruning.plan(1, 1, gen) is None and pruning.share == 1.0  # an epoch on every image


def loader(n: int = 23, batch_size: int = 5) -> DeviceLoader:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4)
    split = Split(images.contiguous(), torch.arange(n) % 10)
    norm = Normalize([0.0] * 3, [1 / 255] * 3)  # the image's value itself
    gen = torch.Generator().manual_seed(0)
    return DeviceLoader(split, batch_size, CPU, norm, shuffle=True, generator=gen)


def test_a_pruned_pass_takes_each_kept_image_once_in_as_many_batches():
    data = loader()
    keep = torch.arange(23) % 3 != 0  # 15 of 23 images
    data.set_epoch(2, keep)
    seen, sizes = [], []
    for x, y in data:
        assert torch.equal(x[:, 0, 0, 0].round().long(), data.index)  # index: the batch's images
        assert torch.equal(y, data.labels[data.index])
        seen += data.index.tolist()
        sizes.append(len(y))
    assert len(sizes) == len(data) == 5 and sizes == [3, 3, 3, 3, 3]
    assert sorted(seen) == torch.arange(23)[keep].tolist()
    data.set_epoch(3)  # and the next whole pass
    assert [len(y) for _, y in data] == [5, 5, 5, 5, 3]


def test_a_pass_over_part_of_the_split_runs_in_one_process():
    data = loader()
    data.world_size = 2
    with pytest.raises(ValueError, match="one process"):
        data.set_epoch(2, torch.ones(23, dtype=torch.bool))


def tiny_trainer(data_dir, world_size: int = 1, **kw) -> Trainer:
    values = dict(model="base", epochs=8, batch_size=10, limit=40, eval_limit=10, lr=0.05)
    values.update(data_dir=str(data_dir), device="cpu", precision="fp32")
    cfg = resolve(None, {**values, **kw})
    splits = make_splits(load_cifar10(data_dir), **cfg.split_args())
    return Trainer(cfg, splits, world_size=world_size)


def test_a_pruned_epoch_keeps_its_steps_on_fewer_images_and_weighs_its_loss(shared_cifar_dir):
    trainer = tiny_trainer(shared_cifar_dir, prune_easy=0.6)
    sizes: list[int] = []
    trainer.model.register_forward_hook(lambda _m, inputs, _o: sizes.append(len(inputs[0])))
    first = trainer.train_epoch()
    assert sizes == [10, 10, 10, 10] and not torch.equal(
        trainer.pruning.scores, torch.ones(40)
    )  # every image scored
    scores = trainer.pruning.scores.clone()
    sizes.clear()
    steps = trainer.scheduler.last_epoch
    second = trainer.train_epoch()
    assert trainer.scheduler.last_epoch == steps + 4  # the schedule moves as in a whole epoch
    easy = scores < scores.mean()
    assert len(sizes) == 4 and 40 - int(easy.sum()) <= sum(sizes) < 40
    assert second["images_per_second"] * second["seconds"] == pytest.approx(sum(sizes))
    assert first["epoch"] == 1 and second["epoch"] == 2


def test_the_loss_is_each_images_weighted_by_the_pruning(shared_cifar_dir):
    trainer = tiny_trainer(shared_cifar_dir, prune_easy=0.5, label_smoothing=0.2)
    out, y, index = torch.randn(4, 10), torch.tensor([1, 2, 3, 4]), torch.tensor([7, 3, 0, 9])
    trainer.pruning.weights[index] = torch.tensor([2.0, 1.0, 2.0, 1.0])
    each = F.cross_entropy(out, y, label_smoothing=0.2, reduction="none")
    assert trainer._loss(out, y, index) == pytest.approx(
        float((each * trainer.pruning.weights[index]).mean())
    )
    assert torch.equal(trainer.pruning.scores[index], each)


@pytest.mark.parametrize("micro_batch", [0, 2])
def test_a_pruned_steps_gradient_is_the_weighted_mean_times_the_share_kept(
    shared_cifar_dir, micro_batch
):
    """So that a step of a pruned epoch moves the weights as far as one of an epoch on every
    image (in expectation), though it averages over fewer images."""
    trainer = tiny_trainer(shared_cifar_dir, prune_easy=0.5, micro_batch=micro_batch)
    model, data = trainer.model, trainer.loaders["train"]
    trainer.pruning.scores.copy_(torch.linspace(0, 1, 40))
    data.set_epoch(2, trainer.pruning.plan(2, len(data), torch.Generator().manual_seed(0)))
    assert 0.5 < trainer.pruning.share < 1
    x, y = next(iter(data))
    trainer.step_model = model
    trainer._gradient(x, y, micro_batch or len(x))
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    weighted = F.cross_entropy(model(x), y, reduction="none") * trainer.pruning.weights[data.index]
    (weighted.mean() * trainer.pruning.share).backward()
    for a, p in zip(got, model.parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)


def test_prune_easy_is_a_ratio_below_one_and_in_a_runs_identity_only_when_set():
    assert "prune_easy" not in identity(resolve(None, {"model": "fast"}))
    assert identity(resolve(None, {"model": "fast", "prune_easy": 0.5}))["prune_easy"] == 0.5
    with pytest.raises(CifarlabError, match=r"--prune-easy must be in \[0, 1\), not 1"):
        resolve(None, {"model": "fast", "prune_easy": 1})


@pytest.mark.parametrize(("until", "last"), [(None, 7), (1.0, 8), (0.5, 4), (0.1, 0)])
def test_prune_until_is_the_last_pruned_epoch(shared_cifar_dir, until, last):
    extra = {} if until is None else {"prune_until": until}
    assert tiny_trainer(shared_cifar_dir, prune_easy=0.5, **extra).pruning.last == last


def test_prune_until_is_a_share_of_the_epochs_in_a_runs_identity_only_when_set():
    assert "prune_until" not in identity(resolve(None, {"model": "fast", "prune_easy": 0.5}))
    cfg = resolve(None, {"model": "fast", "prune_easy": 0.5, "prune_until": 1})
    assert identity(cfg)["prune_until"] == 1
    for wrong in (0, 1.5):
        with pytest.raises(CifarlabError, match="--prune-until"):
            resolve(None, {"model": "fast", "prune_until": wrong})


def test_torchrun_is_refused(shared_cifar_dir):
    with pytest.raises(CifarlabError, match="--prune-easy does not run under torchrun"):
        tiny_trainer(shared_cifar_dir, world_size=2, prune_easy=0.5)
