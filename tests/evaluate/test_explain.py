"""Grad-CAM (cifarlab.evaluate.explain): maps of the built-in and plugin models, the layer chosen,
one-line errors, the figure, and `cifarlab explain` on a tiny trained run."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from cifarlab.errors import CifarlabError
from cifarlab.evaluate.explain import conv_layers, gradcam, gradcam_figure, last_conv_layer
from cifarlab.models.registry import build_model
from tests.conftest import CLASSES, cli


class PluginNet(nn.Module):
    """A model from outside cifarlab: named submodules, not a Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


def model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes=10, in_channels=3, image_size=32)


def two_images() -> torch.Tensor:
    """Two different 'normalized' images: a bright square top left, one bottom right."""
    x = torch.zeros(2, 3, 32, 32)
    x[0, :, 2:12, 2:12] = 2.0
    x[1, :, 20:30, 20:30] = 2.0
    return x


def test_maps_have_the_image_size_lie_in_0_1_differ_and_repeat():
    net = model("base").train()
    x, targets = two_images(), torch.tensor([3, 3])
    maps = gradcam(net, x, targets)
    assert maps.shape == (2, 32, 32) and maps.dtype == torch.float32
    assert maps.device.type == "cpu"
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert not torch.equal(maps[0], maps[1])
    assert torch.equal(maps, gradcam(net, x, targets))  # deterministic
    assert net.training  # its mode restored
    assert all(p.grad is None for p in net.parameters())
    assert not net.eval().training and gradcam(net, x, targets).shape == (2, 32, 32)
    assert not net.training


def test_the_last_conv_that_trains_is_explained():
    assert last_conv_layer(model("base"))[0] == "5"
    assert last_conv_layer(model("improved"))[0] == "16"
    fast = model("fast")
    name, layer = last_conv_layer(fast)
    assert name == "4.4" and layer is fast[4][4] and name == conv_layers(fast)[-1]
    assert conv_layers(fast)[0] == "0" and not fast[0].weight.requires_grad  # whitening
    plugin = PluginNet()
    assert conv_layers(plugin) == ["stem", "body.1"]
    assert last_conv_layer(plugin) == ("body.1", plugin.body[1])
    maps = gradcam(plugin, two_images(), torch.tensor([0, 1]))
    assert maps.shape == (2, 32, 32)
    for name in ("improved", "fast"):  # BatchNorm, GELU, the frozen whitening conv
        assert gradcam(model(name), two_images(), torch.tensor([1, 2])).shape == (2, 32, 32)


def test_a_layer_by_name_and_an_unknown_name_is_one_line():
    plugin = PluginNet()
    assert last_conv_layer(plugin, "stem") == ("stem", plugin.stem)
    maps = gradcam(plugin, two_images(), torch.tensor([0, 1]), layer="stem")
    assert maps.shape == (2, 32, 32) and 0 <= float(maps.min()) <= float(maps.max()) <= 1
    with pytest.raises(CifarlabError) as e:
        gradcam(plugin, two_images(), torch.tensor([0, 1]), layer="head")
    message = str(e.value)
    assert "\n" not in message and "'head'" in message and "stem, body.1" in message


def test_a_model_without_a_convolution_is_one_line():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3072, 10))
    with pytest.raises(CifarlabError) as e:
        gradcam(net, two_images(), torch.tensor([0, 1]))
    message = str(e.value)
    assert "\n" not in message and "needs a model with a convolutional layer" in message


def test_the_figure_has_a_true_class_column_when_labels_are_known(tmp_path):
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    maps = torch.rand(2, 32, 32)
    path = gradcam_figure(
        images,
        maps,
        maps.flip(1),
        [3, 5],
        [5, 5],
        [0.93, 0.5],
        CLASSES,
        tmp_path / "g" / "gradcam.png",
        "Grad-CAM",
    )
    with Image.open(path) as with_true:
        wide = with_true.size[0]
    path = gradcam_figure(
        images,
        maps,
        None,
        None,
        [5, 5],
        [0.93, 0.5],
        CLASSES,
        tmp_path / "g" / "unlabelled.png",
        "Grad-CAM",
    )
    with Image.open(path) as without:
        assert without.size[0] < wide and without.size[1] > 150


def test_explain_command_writes_gradcam_png(cifar_dir, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    args = [
        "--data-dir",
        cifar_dir,
        "--epochs",
        "1",
        "--limit",
        "20",
        "--batch-size",
        "10",
        "--eval-limit",
        "10",
        "--precision",
        "fp32",
        "--out",
        run,
    ]
    assert cli(monkeypatch, "train", *args) == 0
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    Image.new("RGB", (48, 40), (30, 30, 200)).save(tmp_path / "blue.png")
    capsys.readouterr()
    assert cli(monkeypatch, "explain", run, tmp_path / "red.png", tmp_path / "blue.png") == 0
    out = capsys.readouterr().out
    (folder,) = run.glob("explain-*")
    assert (folder / "gradcam.png").is_file() and f"{folder}/gradcam.png" in out
    assert "red.png" in out and "blue.png" in out and "%" in out

    (tmp_path / "bad.png").write_text("not an image")
    out_dir = tmp_path / "mine"
    args = ["explain", run, tmp_path / "bad.png", tmp_path / "red.png", "--out", out_dir]
    assert cli(monkeypatch, *args) == 1
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "bad.png" in captured.err
    assert "red.png" in captured.out and (out_dir / "gradcam.png").is_file()

    assert cli(monkeypatch, "explain", run, tmp_path / "red.png", "--layer", "nope") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--layer 'nope'" in err and "0, 1, 4, 5" in err
