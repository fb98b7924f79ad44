"""How numbers read: percentages, points, metrics by their kind and durations, at their
boundaries; and the screen lines and report tables that write them through these."""

from __future__ import annotations

import math
import time
from types import SimpleNamespace

import pytest

from cifarlab.config.options import TrainConfig
from cifarlab.report.format import duration, metric_value, percent, points


@pytest.mark.parametrize(
    ("x", "digits", "text"),
    [
        (0.7248, 2, "72.48%"),
        (0, 2, "0.00%"),
        (1, 2, "100.00%"),
        (0.7248, 1, "72.5%"),
        (0.00004, 2, "0.00%"),
        (None, 2, "-"),
    ],
)
def test_percent(x, digits, text):
    assert percent(x, digits) == text


def test_points_are_signed_percentage_points():
    assert [points(0.1189), points(-0.005), points(0.0), points(None)] == [
        "+11.89",
        "-0.50",
        "+0.00",
        "-",
    ]


@pytest.mark.parametrize(
    ("name", "value", "signed", "text"),
    [
        ("val_acc", 0.6514, False, "65.14%"),
        ("test_acc", 0.0123, True, "+1.23"),
        ("accuracy", 0.5, False, "50.00%"),
        ("test_loss", 1.92364, False, "1.9236"),
        ("val_loss", -0.01234, True, "-0.0123"),
        ("val_loss", 0.01234, True, "+0.0123"),
        ("test_acc", None, False, "-"),
        ("test_loss", None, True, "-"),
    ],
)
def test_metric_value_by_its_kind(name, value, signed, text):
    assert metric_value(name, value, signed) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.4, "0s"),
        (0.5, "1s"),
        (45, "45s"),
        (59.4, "59s"),
        (59.9, "1m00s"),
        (60, "1m00s"),
        (185, "3m05s"),
        (3599, "59m59s"),
        (3599.5, "1h00m00s"),
        (3600, "1h00m00s"),
        (3725, "1h02m05s"),
        (86400, "24h00m00s"),
        (90061, "25h01m01s"),
    ],
)
def test_duration_at_its_boundaries(seconds, text):
    assert duration(seconds) == text


def test_an_unknown_duration_reads_as_a_dash_and_a_negative_one_is_refused():
    assert [duration(None), duration(math.nan), duration(math.inf)] == ["-", "-", "-"]
    with pytest.raises(ValueError, match="negative"):
        duration(-1)


def test_the_runner_and_the_study_report_write_the_same_duration(monkeypatch, capsys):
    from cifarlab.experiments.runner import Progress
    from cifarlab.report.document import Report
    from cifarlab.study.report import steps_table

    progress = Progress(None, [], None)
    progress.step = "1/1 seeds"
    progress.start = time.perf_counter() - 65
    monkeypatch.setattr(progress, "eta", lambda: 3725.0)
    progress.on_run(0, TrainConfig(), "finished", "seed=5")
    line = capsys.readouterr().out
    assert line.endswith("(cached) | elapsed 1m05s, about 1h02m05s left\n")

    spec = SimpleNamespace(steps=lambda: {"seeds": "Seed study"}, models=[], seed_study=None)
    study = SimpleNamespace(
        spec=spec, study={"step_seconds": {"seeds": 3725.0}, "total_seconds": 65.0}
    )
    doc = Report("study")
    steps_table(doc, study)
    table = doc.markdown(".")
    assert "| Seed study | 1h02m05s | - |" in table and "| **total** | **1m05s** |  |" in table


def test_the_evaluation_summary_writes_its_time_as_a_duration():
    from cifarlab.evaluate.report import format_evaluation

    robustness = {
        "clean_acc": 0.8,
        "mean_corruption_acc": 0.6,
        "relative_drop": 0.25,
        "seconds": 261.2,
    }
    assert format_evaluation({"robustness": robustness}) == (
        "robustness: clean 80.00%, mean under corruptions 60.00% (relative drop 25.0%), 4m21s"
    )


def test_screen_columns_keep_their_widths():
    from cifarlab.evaluate.trained import Prediction, format_prediction, prediction_header
    from cifarlab.training.summary import epoch_line

    row = {
        "epoch": 3,
        "train_loss": 1.23456,
        "train_acc": 0.5,
        "val_loss": 1.5,
        "val_acc": 0.075,
        "seconds": 12.34,
        "images_per_second": 4051.6,
    }
    assert epoch_line(row, 10) == (
        "epoch   3/10  train loss 1.2346 acc  50.00%  val loss "
        "1.5000 acc   7.50%    12.3 s   4,052 img/s"
    )
    p = Prediction("cat.png", 3, [("cat", 0.875), ("dog", 0.1), ("frog", 0.025)])
    line = format_prediction(p)
    assert line == "cat           87.5%         dog  10.0%        frog   2.5%  cat.png"
    assert line.index("cat.png") == prediction_header(3).index("file")


def test_the_comparison_verdict_writes_points_for_an_accuracy():
    from cifarlab.experiments.compare import verdict

    pair = {
        "a": "A",
        "b": "B",
        "diff": 0.0123,
        "ci95": [0.001, 0.02],
        "test": "welch",
        "p": 0.01,
        "p_holm": 0.02,
    }
    assert verdict(pair, "test_acc") == (
        "A vs B: +1.23 points (95% CI +0.10 .. +2.00), welch p = 0.0100, Holm p = 0.0200: "
        "A is better."
    )
    loss = {**pair, "diff": -0.05, "ci95": [-0.08, -0.02]}
    assert verdict(loss, "test_loss").startswith("A vs B: -0.0500 (95% CI -0.0800 .. -0.0200)")


def test_a_count_of_one_is_singular():
    from cifarlab.report.format import count

    assert [count(1, "epoch"), count(3, "epoch"), count(None, "epoch")] == [
        "1 epoch",
        "3 epochs",
        "? epochs",
    ]
