"""Your own models (a file, a module, an entry point), your own study spec, the Python API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cifarlab.models import registry as plugins
from tests.conftest import cli

PLUGIN = '''
import torch.nn as nn


def tiny(num_classes, in_channels, image_size):
    """A two-layer CNN for the tests."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, num_classes),
    )


def not_a_module(num_classes):
    return "a string"


def wrong_outputs(num_classes, in_channels):
    pool = nn.AdaptiveAvgPool2d(1)
    return nn.Sequential(pool, nn.Flatten(), nn.Linear(in_channels, num_classes + 1))


VALUE = 3
'''


@pytest.fixture
def plugin_file(tmp_path) -> Path:
    path = tmp_path / "nets" / "mine.py"
    path.parent.mkdir()
    path.write_text(PLUGIN)
    return path


def train_args(data_dir, out, model) -> list:
    return [
        "train",
        "--model",
        model,
        "--data-dir",
        data_dir,
        "--epochs",
        "1",
        "--limit",
        "40",
        "--eval-limit",
        "10",
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


def test_model_from_a_file(cifar_dir, tmp_path, plugin_file, monkeypatch, capsys):
    ref = f"{plugin_file}:tiny"
    out = tmp_path / "run"
    assert cli(monkeypatch, *train_args(cifar_dir, out, ref)) == 0
    summary = json.loads((out / "summary.json").read_text())
    source = summary["model_source"]
    assert source["kind"] == "file" and source["reference"] == ref
    assert len(source["sha256"]) == 64 and summary["parameters"] == 3 * 9 * 8 + 8 + 8 * 10 + 10
    capsys.readouterr()
    # never imported on the checkpoint's word: --model again, the same one
    assert cli(monkeypatch, "evaluate", out, "--data-dir", cifar_dir) == 2
    assert f"pass --model {ref}" in capsys.readouterr().err
    assert cli(monkeypatch, "evaluate", out, "--data-dir", cifar_dir, "--model", "base") == 2
    assert "is not this run's model" in capsys.readouterr().err
    assert cli(monkeypatch, "evaluate", out, "--data-dir", cifar_dir, "--model", ref) == 0
    report = json.loads((out / "evaluate-test" / "evaluation.json").read_text())
    assert report["accuracy"] == summary["test_acc"]
    plugin_file.write_text(PLUGIN + "\n# changed\n")
    capsys.readouterr()
    assert cli(monkeypatch, "export", out, "--model", ref, "--format", "torchscript") == 0
    assert "has changed since the run was trained" in capsys.readouterr().err


def test_model_from_a_module(cifar_dir, tmp_path, plugin_file, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_file.parent))
    out = tmp_path / "run"
    assert cli(monkeypatch, *train_args(cifar_dir, out, "mine:tiny")) == 0
    source = json.loads((out / "summary.json").read_text())["model_source"]
    assert source["kind"] == "module" and source["path"] == str(plugin_file.resolve())


def test_model_from_an_entry_point(cifar_dir, tmp_path, plugin_file, monkeypatch, capsys):
    import importlib.metadata

    monkeypatch.syspath_prepend(str(plugin_file.parent))
    ep = importlib.metadata.EntryPoint("tinynet", "mine:tiny", plugins.GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda: {"tinynet": ep})
    out = tmp_path / "run"
    assert cli(monkeypatch, *train_args(cifar_dir, out, "tinynet")) == 0
    assert cli(monkeypatch, "evaluate", out, "--data-dir", cifar_dir) == 0  # installed: no --model
    capsys.readouterr()
    assert cli(monkeypatch, "models") == 0
    listed = capsys.readouterr().out
    assert "tinynet" in listed and "A two-layer CNN for the tests." in listed


@pytest.mark.parametrize(
    "ref,message",
    [
        ("nets/nope.py:tiny", "model file nets/nope.py does not exist"),
        ("{file}:missing", r"no function 'missing' \(it defines: not_a_module, tiny, wrong_"),
        ("{file}:VALUE", "is a int, not a function"),
        ("{file}:not_a_module", "returned a str, not a torch.nn.Module"),
        ("{file}:wrong_outputs", r"outputs of shape \(2, 11\) for 2 images .* expected \(2, 10\)"),
        ("no_such_package.nets:tiny", "no module 'no_such_package'"),
        ("resnet", r"unknown model 'resnet' \(did you mean 'resnet18'\?\); choose one of: base"),
    ],
)
def test_bad_plugins_get_one_line_before_training(
    cifar_dir, tmp_path, plugin_file, monkeypatch, capsys, ref, message
):
    out = tmp_path / "run"
    assert cli(monkeypatch, *train_args(cifar_dir, out, ref.format(file=plugin_file))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not out.exists()


SPEC = """
title: My models on CIFAR-10
dataset: cifar10
seeds: [1, 2]
models:
  - name: small
    model: {file}:tiny
    title: tiny CNN
    overrides: {{limit: 60, eval_limit: 20, epochs: 2, batch_size: 20, lr: 0.05}}
    lrs: [0.05, 0.1]
  - name: base
    model: base
    overrides: {{limit: 60, eval_limit: 20, epochs: 1, batch_size: 20}}
epoch_study: {{model: small, epochs: 3}}
seed_study: {{model: small}}
"""


@pytest.mark.slow
def test_spec_driven_study(learnable_dir, tmp_path, plugin_file, monkeypatch, capsys):
    spec = tmp_path / "study.yaml"
    spec.write_text(SPEC.format(file=plugin_file))
    out = tmp_path / "study"
    args = ["study", "--spec", spec, "--data-dir", learnable_dir, "--out", out, "--quiet"]
    assert cli(monkeypatch, *args) == 0
    md = (out / "report.md").read_text()
    assert md.startswith("# My models on CIFAR-10")
    for text in (
        "## 4. Tiny CNN",
        "## 5. Learning-rate study",
        "## 6. Epoch study",
        "## 7. Base",
        "## 8. Seed sensitivity",
        "Figure 1:",
        "gain over the tiny CNN",
    ):
        assert text in md, text
    assert "published" not in md and "72.48" not in md
    study = json.loads((out / "study.json").read_text())
    assert list(study["step_seconds"]) == [
        "analysis",
        "small",
        "lr_small",
        "epochs",
        "base",
        "seeds",
        "audit",  # of the last model's run: the data audit is a step of every study
    ]
    assert study["step_runs"]["lr_small"] == [1, 1]  # lr 0.05 is the main run's


def test_print_spec_is_the_original_study(monkeypatch, capsys, tmp_path):
    from cifarlab.study.spec import ORIGINAL, read_spec

    assert cli(monkeypatch, "study", "--print-spec") == 0
    path = tmp_path / "original.yaml"
    path.write_text(capsys.readouterr().out)
    assert read_spec(path).to_dict() == ORIGINAL.to_dict()
    assert (
        cli(monkeypatch, "study", "--print-spec", "--dataset", "cifar100", "--labels", "coarse")
        == 0
    )
    assert "labels: coarse" in capsys.readouterr().out


@pytest.mark.parametrize(
    "text,message",
    [
        ("models: []", "needs `models:`"),
        ("models: [{name: a}]", "each model needs at least `name:` and `model:`"),
        ("models: [{name: a, model: base, lr: 1}]", "unknown key"),
        ("models: [{name: a, model: base}, {name: a, model: improved}]", "names must differ"),
        ("models: [{name: seeds, model: base}]", "must be a word"),
        ("models: [{name: a, model: base}]\nepoch_study: {model: b, epochs: 3}", "one of a"),
        ("models: [{name: a, model: base, lrs: [0.1, -1]}]", "positive numbers"),
        ("models: [{name: a, model: base}]\nseeds: 9-5", "range goes down"),
        (
            "models: [{name: a, model: base, overrides: {learn: 1}}]",
            "overrides of a: unknown train",
        ),
    ],
)
def test_bad_specs(tmp_path, monkeypatch, capsys, text, message):
    spec = tmp_path / "s.yaml"
    spec.write_text(text)
    assert cli(monkeypatch, "study", "--spec", spec, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
