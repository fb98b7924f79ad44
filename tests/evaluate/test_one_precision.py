"""predict and explain run a trained model at the same precision (the run's, by default)."""

import json

from PIL import Image

from cifarlab.evaluate.explain import explain_files
from cifarlab.evaluate.trained import load_trained, predict_files
from tests.conftest import cli, copy_run


def bf16_run(shared_runs, tmp_path):
    """A copy of a shared run whose summary says it trained in bf16."""
    run = copy_run(shared_runs("base"), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "precision": "bf16"}))
    return run


def test_explain_predicts_what_predict_predicts_at_the_runs_precision(shared_runs, tmp_path):
    t = load_trained(bf16_run(shared_runs, tmp_path), "cpu")
    assert t.precision.name == "bf16"  # the run's, as its summary records it
    files = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        Image.new("RGB", (32, 32), colour).save(tmp_path / f"{i}.png")
        files.append(tmp_path / f"{i}.png")

    predicted = [p.top[0][1] for p in predict_files(t, files)]
    args = (t.model, t.normalize, files, t.classes, tmp_path / "out", None, t.input_size)
    rows, errors, _ = explain_files(*args, t.precision)
    assert not errors and [r["probability"] for r in rows] == predicted
    fp32 = [r["probability"] for r in explain_files(*args)[0]]
    assert fp32 != predicted  # the two precisions differ: the comparison above can fail


def test_the_explain_command_runs_the_model_at_the_runs_precision_or_the_given_one(
    shared_runs, tmp_path, monkeypatch
):
    from cifarlab.evaluate import explain

    run, seen = bf16_run(shared_runs, tmp_path), []
    real = explain.explain_files
    monkeypatch.setattr(explain, "explain_files", lambda *a: seen.append(a[-1]) or real(*a))
    Image.new("RGB", (32, 32), (200, 30, 30)).save(tmp_path / "red.png")
    assert cli(monkeypatch, "explain", run, tmp_path / "red.png", "--device", "cpu") == 0
    args = ["--device", "cpu", "--precision", "fp32"]
    assert cli(monkeypatch, "explain", run, tmp_path / "red.png", *args) == 0
    assert [p.name for p in seen] == ["bf16", "fp32"]
