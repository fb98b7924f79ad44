"""Calibration, mistakes and what `cifarlab evaluate` writes about where a model fails."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cifarlab.evaluate.calibration import (
    apply_temperature,
    calibration,
    fit_temperature,
    most_confident_mistakes,
    top_confusions,
)
from tests.conftest import cli


def test_ece_bins_nll_and_brier_of_a_hand_computed_example():
    # confidences 0.9 (right), 0.79 (wrong), 0.62 (right), 0.55 (right): four of the 15
    # bins hold one image each, with gaps 0.1, 0.79, 0.38, 0.45 -> ECE 1.72 / 4.
    p = np.array([[0.9, 0.1], [0.79, 0.21], [0.62, 0.38], [0.55, 0.45]])
    y = np.array([0, 1, 0, 0])
    c = calibration(p, y)
    assert c["ece"] == pytest.approx(0.43)
    assert c["nll"] == pytest.approx(
        -(math.log(0.9) + math.log(0.21) + math.log(0.62) + math.log(0.55)) / 4
    )
    assert c["brier"] == pytest.approx((0.02 + 2 * 0.79**2 + 2 * 0.38**2 + 2 * 0.45**2) / 4)
    assert len(c["bins"]) == 15 and sum(b["count"] for b in c["bins"]) == 4
    full = [b for b in c["bins"] if b["count"]]
    assert [round(b["lo"] * 15) for b in full] == [8, 9, 11, 13]
    assert [b["accuracy"] for b in full] == [1.0, 1.0, 0.0, 1.0]
    assert [b["confidence"] for b in full] == pytest.approx([0.55, 0.62, 0.79, 0.9])
    assert all(b["confidence"] is None for b in c["bins"] if not b["count"])


def test_temperature_fitted_on_overconfident_outputs_lowers_the_nll():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (2000,), generator=g)
    logits = torch.randn(2000, 10, generator=g)
    logits[torch.arange(2000), labels] += 1.5  # right about half the time
    logits *= 4  # and far too sure of it
    log_p = logits.log_softmax(1)
    t = fit_temperature(log_p, labels)
    assert 2.5 < t < 6
    before = calibration(log_p.exp().numpy(), labels.numpy())
    after = calibration(apply_temperature(log_p, t).numpy(), labels.numpy())
    assert after["nll"] < before["nll"] and after["ece"] < before["ece"]
    assert after["accuracy"] == before["accuracy"]  # the predicted classes do not change


def test_top_confusions_and_most_confident_mistakes():
    confusion = [[5, 3, 0], [1, 4, 7], [0, 2, 6]]
    top = top_confusions(confusion, ["a", "b", "c"], n=2)
    assert top == [
        {"true": "b", "predicted": "c", "count": 7},
        {"true": "a", "predicted": "b", "count": 3},
    ]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert most_confident_mistakes(probs, np.array([1, 1, 1, 0]), 5) == [0, 3, 2]


@pytest.fixture
def evaluated(cifar_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    args = [
        "train",
        "--data-dir",
        cifar_dir,
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--eval-limit",
        "10",
        "--precision",
        "fp32",
        "--out",
        run,
        "--quiet",
    ]
    assert cli(monkeypatch, *args) == 0
    return run


def test_evaluate_writes_predictions_calibration_and_mistakes(
    evaluated, cifar_dir, monkeypatch, capsys
):
    out = evaluated / "ev"
    args = [
        "evaluate",
        evaluated,
        "--data-dir",
        cifar_dir,
        "--temperature",
        "--mistakes",
        "4",
        "--out",
        out,
    ]
    assert cli(monkeypatch, *args) == 0
    assert "calibration: ECE" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert names >= {
        "evaluation.json",
        "predictions.npz",
        "calibration.json",
        "reliability.png",
        "mistakes.png",
        "confusion_matrix.png",
    }
    report = json.loads((out / "evaluation.json").read_text())
    assert "top_confusions" in report
    cal = json.loads((out / "calibration.json").read_text())
    assert {"ece", "bins", "nll", "brier"} <= set(cal)
    assert cal["temperature"]["value"] > 0 and "ece" in cal["temperature"]["after"]
    with np.load(out / "predictions.npz") as f:
        assert (f["probabilities"].argmax(1) == f["labels"]).mean() == pytest.approx(
            report["accuracy"]
        )
        train_run = np.load(evaluated / "test_predictions.npz")
        assert np.array_equal(f["index"], train_run["index"])  # the same test images


def test_temperature_without_a_validation_split_is_one_line(
    cifar_dir, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    args = [
        "train",
        "--data-dir",
        cifar_dir,
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--eval-limit",
        "10",
        "--val-from",
        "none",
        "--out",
        run,
        "--quiet",
    ]
    assert cli(monkeypatch, *args) == 0
    capsys.readouterr()
    out = tmp_path / "ev"
    assert (
        cli(monkeypatch, "evaluate", run, "--data-dir", cifar_dir, "--temperature", "--out", out)
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "validation split" in err
    assert not out.exists()


def test_evaluate_gradcam_and_a_bad_layer(evaluated, cifar_dir, monkeypatch, capsys):
    out = evaluated / "gc"
    args = [
        "evaluate",
        evaluated,
        "--data-dir",
        cifar_dir,
        "--gradcam",
        "3",
        "--mistakes",
        "0",
        "--out",
        out,
    ]
    assert cli(monkeypatch, *args) == 0
    assert (out / "gradcam.png").is_file() and not (out / "mistakes.png").exists()
    assert json.loads((out / "evaluation.json").read_text())["gradcam_layer"] == "5"
    capsys.readouterr()
    bad = evaluated / "bad"
    assert (
        cli(
            monkeypatch,
            "evaluate",
            evaluated,
            "--data-dir",
            cifar_dir,
            "--gradcam",
            "2",
            "--layer",
            "nope",
            "--out",
            bad,
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err and not bad.exists()


def test_evaluate_robustness_on_generated_corruptions(evaluated, cifar_dir, monkeypatch, capsys):
    out = evaluated / "rob"
    args = [
        "evaluate",
        evaluated,
        "--data-dir",
        cifar_dir,
        "--corruptions",
        "fog,contrast",
        "--severities",
        "1,5",
        "--mistakes",
        "0",
        "--out",
        out,
    ]
    assert cli(monkeypatch, *args) == 0
    assert "robustness: clean" in capsys.readouterr().out
    r = json.loads((out / "robustness.json").read_text())
    assert set(r["corruptions"]) == {"fog", "contrast"}
    assert set(r["corruptions"]["fog"]) == {"1", "5"}
    values = [a for s in r["corruptions"].values() for a in s.values()]
    assert r["mean_corruption_acc"] == pytest.approx(sum(values) / len(values))
    assert r["clean_acc"] == pytest.approx(
        json.loads((out / "evaluation.json").read_text())["accuracy"]
    )
    assert (out / "robustness.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [(["--corruptions", "fgo"], "fgo"), (["--corruptions", "fog", "--severities", "0-6"], "1")],
)
def test_bad_corruption_input_is_one_line(evaluated, cifar_dir, monkeypatch, capsys, args, message):
    capsys.readouterr()
    out = evaluated / "bad"
    assert (
        cli(monkeypatch, "evaluate", evaluated, "--data-dir", cifar_dir, *args, "--out", out) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not out.exists()


def test_evaluate_on_the_official_shift_sets(evaluated, tmp_path, monkeypatch, capsys):
    from tests.data.test_shift_sets import write_cifar10c, write_cifar101

    c = write_cifar10c(tmp_path / "c", names=("fog", "pixelate"))
    assert (
        cli(
            monkeypatch,
            "evaluate",
            evaluated,
            "--dataset",
            "cifar10-c",
            "--data-dir",
            c,
            "--severities",
            "1,2",
        )
        == 0
    )
    r = json.loads((evaluated / "evaluate-cifar10-c" / "robustness.json").read_text())
    assert set(r["corruptions"]) == {"fog", "pixelate"} and set(r["corruptions"]["fog"]) == {
        "1",
        "2",
    }
    d = write_cifar101(tmp_path / "d")
    assert (
        cli(
            monkeypatch,
            "evaluate",
            evaluated,
            "--dataset",
            "cifar10.1",
            "--data-dir",
            d,
            "--mistakes",
            "0",
        )
        == 0
    )
    report = json.loads((evaluated / "evaluate-cifar10.1" / "evaluation.json").read_text())
    assert report["split"] == "full-test" and report["images"] == len(
        np.load(next(d.rglob("cifar10.1_v6_labels.npy")))
    )


def test_failure_analysis_in_specs():
    from cifarlab.study.spec import ORIGINAL, QUICK, spec_from_dict

    assert spec_from_dict(ORIGINAL.to_dict()).to_dict() == ORIGINAL.to_dict()
    assert QUICK.failure_analysis["corruptions"] == ["gaussian_noise", "fog"]
    assert len(QUICK.failure_analysis["severities"]) == 2
    bad = {**QUICK.to_dict(), "failure_analysis": {"model": "base", "corruptions": ["fgo"]}}
    with pytest.raises(Exception, match="fgo"):
        spec_from_dict(bad)


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    return float(torch.nn.functional.cross_entropy(logits / temperature, labels))


def test_a_split_without_mistakes_sharpens_and_one_of_confident_mistakes_stops_at_20():
    labels = torch.arange(50) % 10
    logits = torch.full((50, 10), -5.0)
    logits[torch.arange(50), labels] = 5.0  # every image right: the NLL falls as T -> 0
    sharp = fit_temperature(logits.log_softmax(1), labels)
    assert sharp < 1 and nll(logits, labels, sharp) < nll(logits, labels, 1.0)
    wrong = (labels + 1) % 10  # every image confidently wrong: the NLL falls as T grows
    assert fit_temperature(logits.log_softmax(1), wrong) == pytest.approx(20.0)


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_temperature):
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20000, 10, generator=g)
    labels = torch.multinomial((logits / true_temperature).softmax(1), 1, generator=g)[:, 0]
    fitted = fit_temperature(logits.log_softmax(1), labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
