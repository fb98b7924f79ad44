"""Models beyond the study's: the CIFAR ResNet-18, and timm's models (--model timm:NAME)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from cifarlab.errors import CifarlabError
from cifarlab.models.builtin import count_parameters
from cifarlab.models.registry import build_model, check_name, is_reference, kind_of
from cifarlab.runs.folder import model_slug
from tests.conftest import cli, optional

TIMM_TINY = "timm:test_resnet"  # timm's own test model: 373,658 parameters at 10 classes


def test_resnet18_has_the_cifar_resnet18s_parameter_count():
    assert count_parameters(build_model("resnet18")) == 11_173_962


def test_resnet18_fits_grey_images_and_other_class_counts():
    model = build_model("resnet18", num_classes=100, in_channels=1, image_size=28).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 100)
    assert model[0].stride == (1, 1) and model[0].kernel_size == (3, 3)  # the CIFAR stem
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


def test_resnet18_is_listed_with_its_recipe(monkeypatch, capsys):
    assert cli(monkeypatch, "models", "resnet18") == 0
    out = capsys.readouterr().out
    assert "resnet18" in out and "11,173,962" in out and "ResNet-18, CIFAR variant" in out
    assert "lr=0.1" in out and "label_smoothing=0.1" in out and "nesterov=True" in out


def test_timm_names_are_timm_models_never_plugin_references():
    assert kind_of("timm:resnet18") == "timm" and not is_reference("timm:resnet18")
    assert kind_of("timmy:build") == "module"  # only the exact prefix
    assert model_slug("timm:resnet18") == "timm-resnet18"
    with pytest.raises(CifarlabError, match="not a timm model name"):
        check_name("timm:")


def test_a_timm_model_trains_and_evaluates_through_the_real_path(
    cifar_dir, tmp_path, monkeypatch, capsys
):
    optional("timm", "timm")
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        TIMM_TINY,
        "--data-dir",
        cifar_dir,
        "--epochs",
        "1",
        "--limit",
        "20",
        "--eval-limit",
        "10",
        "--batch-size",
        "10",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--out",
        out,
        "--quiet",
    ]
    assert cli(monkeypatch, *args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parameters"] == 373_658
    assert summary["model_source"]["kind"] == "timm"
    assert summary["model_source"]["timm_version"]
    # installed code, not the user's: evaluate rebuilds it without --model
    assert cli(monkeypatch, "evaluate", out, "--data-dir", cifar_dir) == 0
    report = json.loads((out / "evaluate-test" / "evaluation.json").read_text())
    assert report["accuracy"] == summary["test_acc"]


def test_timm_vits_get_the_datas_image_size():
    optional("timm", "timm")
    model = build_model("timm:test_vit3", num_classes=7, in_channels=1, image_size=28).eval()
    with torch.no_grad():  # its patch grid is made for 160x160 unless told the size
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)


def test_an_unknown_timm_model_is_one_line_with_close_names(cifar_dir, monkeypatch, capsys):
    optional("timm", "timm")
    args = [
        "train",
        "--model",
        "timm:resnet19",
        "--data-dir",
        cifar_dir,
        "--epochs",
        "1",
        "--limit",
        "20",
        "--device",
        "cpu",
        "--quiet",
    ]
    assert cli(monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unknown timm model 'resnet19'" in err and "timm:resnet18" in err
    assert "cifarlab models --timm PATTERN" in err


def test_without_the_timm_extra_one_line_says_what_to_install(cifar_dir, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed
    args = ["train", "--model", TIMM_TINY, "--data-dir", cifar_dir, "--device", "cpu"]
    assert cli(monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "cifarlab[timm]"' in err
    assert cli(monkeypatch, "models", "--timm", "resnet") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "cifarlab[timm]"' in err
    with pytest.raises(CifarlabError, match=r"cifarlab\[timm\]"):
        build_model(TIMM_TINY)


def test_models_timm_lists_matching_names(monkeypatch, capsys):
    optional("timm", "timm")
    assert cli(monkeypatch, "models", "--timm", "resnet1") == 0
    listing, summary = capsys.readouterr().out.split("\n\n")
    names = listing.split()
    assert "resnet18" in names and "resnet10t" in names  # a part of a name matches
    assert all("resnet1" in n for n in names) and len(names) == len(set(names))
    assert summary.startswith(f"{len(names)} timm models match 'resnet1'")
    assert cli(monkeypatch, "models", "--timm", "no-such-net") == 0
    assert "no timm model matches 'no-such-net'" in capsys.readouterr().out
