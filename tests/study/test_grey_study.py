"""The quick study on 1-channel images (issue 26, defect 2): every step, the failure
analysis's corruptions included, and a report that names the data it ran on."""

import json

import pytest

from tests.conftest import cli, use_quick_plan, write_idx


@pytest.mark.slow
def test_a_quick_study_on_grey_images_writes_a_complete_report(tmp_path, monkeypatch):
    data = write_idx(tmp_path / "mnist", n_train=120, n_test=80)
    tiny = {"limit": 60, "eval_limit": 20, "epochs": 1, "batch_size": 20}
    plan = use_quick_plan(monkeypatch, base=(tiny, [0.03]), improved=(tiny, [0.03]))
    plan.failure_analysis = {
        "model": "improved",
        "robustness": ["base", "improved"],
        "corruptions": ["gaussian_noise", "fog", "pixelate"],
        "severities": [1, 5],
    }
    out = tmp_path / "study"
    args = ["study", "--quick", "--dataset", "mnist", "--data-dir", data, "--out", out]
    assert cli(monkeypatch, *args, "--quiet") == 0
    assert json.loads((out / "study.json").read_text())["status"] == "finished"
    report = (out / "report.md").read_text()
    assert report.startswith("# CNN image classification on MNIST")
    assert "Where the improved CNN fails" in report and "Robustness: accuracy" in report
    assert "## Reproduce" in report and (out / "failures" / "robustness.png").is_file()
