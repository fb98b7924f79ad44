"""Datasets beyond CIFAR-10: CIFAR-100, MNIST/Fashion-MNIST idx files, ImageFolder; models
that fit their shapes; reports with many classes."""

from __future__ import annotations

import json
import os

import pytest
import torch

from cifarlab.config.options import resolve
from cifarlab.data import imagefolder, load_dataset
from cifarlab.errors import CifarlabError
from cifarlab.evaluate import trained as inference
from cifarlab.models.registry import build_model
from tests.conftest import cli, write_cifar100, write_idx, write_imagefolder


def test_cifar100_fine_and_coarse(tmp_path):
    write_cifar100(tmp_path)
    for where in (tmp_path, tmp_path / "cifar-100-python"):
        fine = load_dataset("cifar100", where)
        assert fine.train.images.shape == (40, 3, 32, 32) and len(fine.classes) == 100
        assert fine.classes[:2] == ["fine_0", "fine_1"]
    coarse = load_dataset("cifar100", tmp_path, labels="coarse")
    assert len(coarse.classes) == 20 and int(coarse.train.labels.max()) == 7  # 39 // 5
    assert torch.equal(coarse.train.labels, fine.train.labels // 5)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
def test_mnist_idx_files(tmp_path, gz, layout):
    folder = tmp_path / "MNIST" / "raw" if layout == "torchvision" else tmp_path / "m"
    write_idx(folder, gz=gz)
    data = load_dataset("mnist", tmp_path if layout == "torchvision" else folder)
    assert data.train.images.shape == (60, 1, 28, 28) and data.train.images.dtype == torch.uint8
    assert data.test.images.shape == (20, 1, 28, 28)
    assert data.classes == [str(i) for i in range(10)]
    assert data.train.labels[:3].tolist() == [0, 1, 2]


def test_fashion_mnist_names_and_truncated_file(tmp_path):
    write_idx(tmp_path / "f", gz=False)
    assert load_dataset("fashion-mnist", tmp_path / "f").classes[0] == "T-shirt/top"
    path = tmp_path / "f" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(CifarlabError, match="t10k-images-idx3-ubyte: .* bytes of data"):
        load_dataset("fashion-mnist", tmp_path / "f")


@pytest.mark.parametrize(
    "name,make,message",
    [
        ("nope", None, "unknown dataset 'nope'; choose one of: cifar10, cifar100, mnist"),
        ("cifar100", None, r"no CIFAR-100 files in .* \(expected cifar-100-python/"),
        ("mnist", None, r"no MNIST files in .* \(expected the four idx files"),
        ("imagefolder", None, r"no ImageFolder files in .* \(expected train/<class>/"),
    ],
)
def test_wrong_layouts_say_what_was_expected_where(tmp_path, name, make, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CifarlabError, match=message):
        load_dataset(name, tmp_path / "empty")


def test_imagefolder_needs_a_folder():
    with pytest.raises(CifarlabError, match="--dataset imagefolder needs --data-dir"):
        load_dataset("imagefolder")


def test_imagefolder_reads_resizes_and_caches(tmp_path, monkeypatch):
    root = write_imagefolder(tmp_path / "pets")
    data = load_dataset("imagefolder", root)
    assert data.classes == ["cat", "dog", "owl"]
    assert data.train.images.shape == (18, 3, 32, 32) and len(data.test) == 18
    red = data.train.images[data.train.labels == 0].float().mean((0, 2, 3))
    assert red[0] > 150 and red[1] < 80  # the colour of the class survived decoding
    assert os.path.exists(root / ".cifarlab-imagefolder-32px.pt")
    monkeypatch.setattr(imagefolder, "decode", lambda *a: pytest.fail("decoded again"))
    again = load_dataset("imagefolder", root)  # from the cache
    assert torch.equal(again.train.images, data.train.images)
    monkeypatch.undo()
    small = load_dataset("imagefolder", root, image_size=16)  # another size: its own cache
    assert small.train.images.shape[2:] == (16, 16)
    (root / "train" / "cat" / "000.png").touch()  # a changed file: decoded again
    os.utime(root / "train" / "cat" / "000.png", ns=(1, 1))
    calls = []
    real = imagefolder.decode
    monkeypatch.setattr(imagefolder, "decode", lambda *a: calls.append(1) or real(*a))
    load_dataset("imagefolder", root)
    assert calls


def test_imagefolder_without_test_folder_splits_each_class(tmp_path):
    root = write_imagefolder(tmp_path / "pets", per_class=10, test=False)
    data = load_dataset("imagefolder", root, test_fraction=0.3)
    assert len(data.test) == 9 and len(data.train) == 21
    assert torch.bincount(data.test.labels).tolist() == [3, 3, 3]
    again = load_dataset("imagefolder", root, test_fraction=0.3)
    assert torch.equal(again.test.images, data.test.images)  # seeded: the same split


def test_imagefolder_bad_inputs(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "pets")
    bad = root / "train" / "dog" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(CifarlabError, match=r"broken.png: .*--skip-bad-images"):
        load_dataset("imagefolder", root)
    data = load_dataset("imagefolder", root, skip_bad_images=True)
    assert len(data.train) == 18 and data.notes["skipped_images"] == 1
    assert "skipped 1 unreadable image" in capsys.readouterr().err
    (root / "test" / "emu").mkdir()
    with pytest.raises(CifarlabError, match="differ in their classes"):
        load_dataset("imagefolder", root)
    (root / "train" / "emu").mkdir()
    (root / "train" / "emu" / "notes.txt").write_text("no images here")
    with pytest.raises(CifarlabError, match=r"class folder .*emu holds no images"):
        load_dataset("imagefolder", root)


def test_models_fit_the_data():
    for name, features in (("base", 2048), ("improved", 4608)):
        model = build_model(name, num_classes=7, in_channels=1, image_size=28).eval()
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)
        linear = [m for m in model if isinstance(m, torch.nn.Linear)][0]
        assert linear.in_features == features
    fast = build_model("fast", num_classes=100, in_channels=1, image_size=28).eval()
    assert fast(torch.zeros(2, 1, 28, 28)).shape == (2, 100)
    assert build_model("base", image_size=64).eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 10)
    with pytest.raises(CifarlabError, match="at least 16x16 pixels"):
        build_model("base", image_size=12)


def test_train_evaluate_predict_on_mnist(tmp_path, monkeypatch, capsys):
    data_dir = write_idx(tmp_path / "mnist")
    out = tmp_path / "run"
    args = [
        "--dataset",
        "mnist",
        "--data-dir",
        data_dir,
        "--model",
        "base",
        "--epochs",
        "2",
        "--batch-size",
        "10",
        "--lr",
        "0.05",
        "--device",
        "cpu",
        "--out",
        out,
        "--quiet",
    ]
    assert cli(monkeypatch, "train", *args) == 0
    summary = json.loads((out / "summary.json").read_text())
    convs = (1 * 9 + 1) * 32 + (32 * 9 + 1) * 64 + (64 * 9 + 1) * 128 + (128 * 9 + 1) * 128
    assert summary["dataset"] == "mnist" and summary["parameters"] == convs + 2048 * 10 + 10
    assert summary["model_source"] == {"reference": "base", "kind": "builtin"}
    assert cli(monkeypatch, "evaluate", out, "--data-dir", data_dir) == 0
    report = json.loads((out / "evaluate-test" / "evaluation.json").read_text())
    assert report["accuracy"] == summary["test_acc"] and report["images"] == 10
    png = tmp_path / "seven.png"
    from PIL import Image

    Image.new("RGB", (40, 40), (120, 120, 120)).save(png)
    capsys.readouterr()
    assert cli(monkeypatch, "predict", out, png, "--json") == 0
    assert json.loads(capsys.readouterr().out)["class"] in [str(i) for i in range(10)]
    t = inference.load_trained(out, "cpu")
    assert t.input_size == (1, 28, 28)


def test_dataset_options_are_checked(tmp_path):
    with pytest.raises(CifarlabError, match="--labels is for --dataset cifar100, not cifar10"):
        resolve(None, {"labels": "coarse"})
    with pytest.raises(CifarlabError, match="--image-size is for --dataset imagefolder"):
        resolve(None, {"dataset": "mnist", "image_size": 64})
    with pytest.raises(CifarlabError, match="unknown dataset 'svhn'"):
        resolve(None, {"dataset": "svhn"})


@pytest.mark.slow
def test_analysis_and_evaluation_with_100_classes(tmp_path, monkeypatch, capsys):
    write_cifar100(tmp_path / "c100", n_train=200, n_test=100)
    out = tmp_path / "analysis"
    assert (
        cli(
            monkeypatch,
            "analyze",
            "--dataset",
            "cifar100",
            "--data-dir",
            tmp_path / "c100",
            "--out",
            out,
        )
        == 0
    )
    result = json.loads((out / "analysis.json").read_text())
    assert result["num_classes"] == 100 and result["dataset"] == "cifar100"
    assert (out / "samples_train.png").stat().st_size > 0
    report = {
        "model": "base",
        "checkpoint": "x",
        "epoch": 1,
        "split": "test",
        "images": 100,
        "device": "cpu",
        "precision": "fp32",
        "loss": 4.6,
        "accuracy": 0.01,
        "per_class": {
            f"fine_{i}": {"images": 1, "precision": 0.0, "recall": 0.0} for i in range(100)
        },
        "confusion_matrix": [[int(j == (i + 1) % 100) for j in range(100)] for i in range(100)],
    }
    text = inference.format_report(report)
    assert "most frequent confusions" in text and "fine_0 -> fine_1: 1" in text
    assert max(map(len, text.splitlines())) < 100


def test_datasets_command_lists_them(monkeypatch, capsys):
    assert cli(monkeypatch, "datasets") == 0
    out = capsys.readouterr().out
    for name in ("cifar10", "cifar100", "mnist", "fashion-mnist", "imagefolder"):
        assert name in out
