"""--train-crop: the training batches are the central crops of the batches the run would
otherwise see (the same draws), only in the first --train-crop-share of the epochs; sizes a
model cannot take are refused up front. And the whitening bias stops asking for a gradient
once its learning rate is 0, which leaves the weights exactly as they were."""

from __future__ import annotations

import pytest
import torch

from cifarlab.config.options import identity, resolve
from cifarlab.data import Normalize, load_cifar10, make_splits
from cifarlab.data.dataset import Split
from cifarlab.errors import CifarlabError
from cifarlab.training import trainer as trainer_module
from cifarlab.training.batches import DeviceLoader
from cifarlab.training.trainer import Trainer, crop_epochs


def batches(crop: int, epoch: int, until: int = 9) -> list[torch.Tensor]:
    """The images of epoch `epoch` (four batches of 8) of a seeded flip-translate loader,
    cropped to `crop` pixels in epochs up to `until`."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 3, 32, 32), generator=g, dtype=torch.uint8)
    split = Split(images, torch.arange(32) % 10)
    loader = DeviceLoader(
        split,
        8,
        torch.device("cpu"),
        Normalize([0.5] * 3, [0.25] * 3),
        shuffle=True,
        augment="flip-translate",
        generator=torch.Generator().manual_seed(1),
        alt_flip=True,
        crop=crop,
        crop_epochs=until,
    )
    for e in range(1, epoch + 1):
        loader.set_epoch(e)
        out = [x for x, _ in loader]
    return out


def test_crops_are_the_centre_of_the_batches_without_them():
    whole, cropped = batches(0, 1), batches(28, 1)
    assert [tuple(x.shape) for x in cropped] == [(8, 3, 28, 28)] * 4
    for w, c in zip(whole, cropped, strict=True):
        assert torch.equal(c, w[:, :, 2:30, 2:30])  # 2-pixel shifts: only original pixels
        assert c.is_contiguous(memory_format=torch.channels_last)


def test_crops_end_after_their_epochs():
    assert batches(28, 1, until=1)[0].shape[-1] == 28
    second = batches(28, 2, until=1)
    assert [x.shape[-1] for x in second] == [32] * 4
    assert all(torch.equal(a, b) for a, b in zip(second, batches(0, 2), strict=True))
    assert batches(28, 2, until=0)[0].shape[-1] == 32


@pytest.mark.parametrize(
    ("epochs", "share", "expected"), [(8, 0.5, 4), (1, 0.5, 0), (8, 1.0, 8), (3, 1.0, 3)]
)
def test_the_crop_share_is_whole_epochs_rounded_down(epochs, share, expected):
    cfg = resolve(None, {"model": "fast", "epochs": epochs, "train_crop": 28})
    assert crop_epochs(cfg.replace(train_crop_share=share)) == expected
    assert crop_epochs(cfg.replace(train_crop=0)) == 0


def test_train_crop_is_in_a_runs_identity_only_when_set():
    assert "train_crop" not in identity(resolve(None, {"model": "fast"}))
    assert identity(resolve(None, {"model": "fast", "train_crop": 28}))["train_crop"] == 28
    with pytest.raises(CifarlabError, match="train-crop"):
        resolve(None, {"model": "fast", "train_crop": -1})
    with pytest.raises(CifarlabError, match="--train-crop-share is a share of the epochs"):
        resolve(None, {"model": "fast", "train_crop_share": 1.5})


def tiny_trainer(data_dir, **kw) -> Trainer:
    values = dict(model="fast", epochs=4, batch_size=10, limit=20, eval_limit=10)
    cfg = resolve(None, {**values, "data_dir": str(data_dir), "device": "cpu", **kw})
    return Trainer(cfg, make_splits(load_cifar10(data_dir), **cfg.split_args()))


@pytest.mark.parametrize(
    ("crop", "message"),
    [(33, "--train-crop 33 is larger than the 32x32 images"), (12, "--train-crop 12: model")],
)
def test_a_crop_the_model_cannot_take_is_refused(shared_cifar_dir, crop, message):
    with pytest.raises(CifarlabError, match=message):
        tiny_trainer(shared_cifar_dir, train_crop=crop)


def test_the_fast_network_trains_on_28_pixel_crops(shared_cifar_dir, tiny_fast):
    trainer = tiny_trainer(shared_cifar_dir, model=tiny_fast, train_crop=28, epochs=1)
    sizes: list[int] = []
    trainer.model.register_forward_hook(lambda _m, x, _o: sizes.append(x[0].shape[-1]))
    trainer.train_epoch()
    assert sizes == [28, 28]


def test_the_whitening_bias_stops_its_gradient_and_nothing_else_changes(
    shared_cifar_dir, tiny_fast, monkeypatch
):
    """Epoch 4 (after WHITEN_BIAS_EPOCHS = 3) trains without the bias's gradient; the
    weights after it are those of a run that kept computing it (at learning rate 0)."""
    settled = tiny_trainer(shared_cifar_dir, model=tiny_fast, precision="fp32")
    with monkeypatch.context() as mp:
        mp.setattr(trainer_module, "WHITEN_BIAS_EPOCHS", 10**6)
        kept = tiny_trainer(shared_cifar_dir, model=tiny_fast, precision="fp32")
        for _ in range(4):
            kept.train_epoch()
        assert kept.model.whitening.bias.requires_grad
    for epoch in range(1, 5):
        settled.train_epoch()
        assert settled.model.whitening.bias.requires_grad == (epoch < 4)
    for name, w in kept.model.state_dict().items():
        assert torch.equal(settled.model.state_dict()[name], w), name
