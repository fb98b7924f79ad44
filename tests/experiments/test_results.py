"""The typed results `sweep`, `seeds` and `tune` print: read from the JSON they write, every
field where the JSON has it."""

from pathlib import Path

from cifarlab.experiments.results import SeedsResult, Spread, SweepResult
from cifarlab.experiments.stats import describe
from cifarlab.tune.report import TuneResult


def test_seeds_result_reads_seeds_json():
    rows = [
        {"seed": 1, "test_acc": 0.70, "test_loss": 0.9, "run_dir": "r/1"},
        {"seed": 2, "test_acc": 0.74, "test_loss": 0.8, "run_dir": "r/2"},
    ]
    d = {
        "fixed": {"model": "base"},
        "rows": rows,
        "test_acc": describe([0.70, 0.74]),
        "test_loss": describe([0.9, 0.8]),
    }
    result = SeedsResult.from_dict(d)
    assert [r.seed for r in result.rows] == [1, 2]
    assert result.rows[1].run_dir == Path("r/2")
    assert result.test_acc.mean == 0.72 and result.test_acc.n == 2
    assert result.test_acc.ci95_low < 0.70 < 0.74 < result.test_acc.ci95_high
    one = Spread.from_dict(describe([0.5]))
    assert one.std is None and one.ci95_low is None and one.range == 0


def test_sweep_result_keeps_the_option_order_and_a_seed_option():
    base = {
        "final_val_acc": 0.5,
        "best_val_acc": 0.6,
        "best_val_epoch": 2,
        "test_acc": 0.55,
        "test_loss": 1.1,
        "val_loss_rises": 1,
        "largest_val_loss_rise": 0.02,
    }
    rows = [{"lr": 0.01, "seed": s, **base, "run_dir": f"runs/{s}"} for s in (1, 2)]
    d = {"fixed": {}, "options": ["lr", "seed"], "grid": {"lr": [0.01], "seed": [1, 2]}}
    result = SweepResult.from_dict({**d, "rows": rows})
    assert [list(r.values.items()) for r in result.rows] == [
        [("lr", 0.01), ("seed", 1)],
        [("lr", 0.01), ("seed", 2)],
    ]
    assert result.rows[0].best_val_epoch == 2 and result.rows[1].run_dir == Path("runs/2")


def test_tune_result_lines_say_diverged_best_and_confirm():
    d = {
        "n_complete": 3,
        "n_pruned": 2,
        "n_failed": 0,
        "n_diverged": 1,
        "best": {"number": 4, "value": 0.61, "params": {"lr": 0.05}, "run": "trials/4-x"},
        "confirm": {"groups": [{"name": "best", "mean": 0.6, "n": 2}]},
    }
    lines = TuneResult.from_dict(d).lines("val_acc")
    assert lines[0] == "3 complete, 2 pruned (1 of them diverged: a NaN loss), 0 failed"
    assert lines[1].startswith("best: trial 4, val_acc ") and lines[1].endswith("(lr=0.05)")
    assert lines[2] == "confirm best: test acc 60.00% (n=2)"
    nothing = TuneResult.from_dict({"n_complete": 0, "n_pruned": 0, "n_failed": 2, "best": None})
    assert nothing.lines("val_loss") == ["0 complete, 0 pruned, 2 failed"]


def test_a_single_runs_group_carries_its_test_image_interval():
    from cifarlab.experiments.compare import Run, describe_group
    from cifarlab.experiments.stats import accuracy_interval

    summary = {"test_acc": 0.7248, "test_size": 5000}
    one = describe_group("lr=0.03", [Run(Path("a"), {"seed": 0}, summary, 0.7248)])
    assert one["ci95"] is None
    assert one["test_images_ci95"] == list(accuracy_interval(0.7248, 5000))
    low, high = one["test_images_ci95"]
    assert 0.71 < low < 0.7248 < high < 0.74  # about +-1.2 points on 5,000 images
    loss = describe_group(
        "x", [Run(Path("a"), {}, {**summary, "test_loss": 0.8}, 0.8)], "test_loss"
    )
    assert loss["test_images_ci95"] is None  # a loss has no binomial interval
    runs = [Run(Path(p), {"seed": s}, summary, 0.72) for p, s in (("a", 0), ("b", 1))]
    assert describe_group("two", runs)["test_images_ci95"] is None
