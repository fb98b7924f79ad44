"""cifarlab compare: known answers for the tests, grouping, every bad input; per-example
predictions in every run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cifarlab
from cifarlab.experiments import stats
from cifarlab.experiments.compare import compare, group_runs
from tests.conftest import cli

# Student's sleep data (Cushny and Peebles), the extra hours of sleep of 10 patients under
# two drugs: the example of R's t.test. R 4.x prints, paired: t = -4.0621, df = 9,
# p-value = 0.002833, 95% CI -2.4598858 .. -0.7001142; Welch: t = -1.8608, df = 17.776,
# p-value = 0.07939, 95% CI -3.3654832 .. 0.2054832.
DRUG1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
DRUG2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_and_welch_t_against_the_published_sleep_example():
    r = stats.paired_t(DRUG1, DRUG2)
    assert r["statistic"] == pytest.approx(-4.0621, abs=1e-4)
    assert r["p"] == pytest.approx(0.002833, abs=1e-6)
    assert r["ci95"] == pytest.approx([-2.4598858, -0.7001142], abs=1e-7)
    w = stats.welch_t(DRUG1, DRUG2)
    assert w["statistic"] == pytest.approx(-1.8608, abs=1e-4)
    assert w["p"] == pytest.approx(0.07939, abs=1e-5)
    assert w["ci95"] == pytest.approx([-3.3654832, 0.2054832], abs=1e-7)


def test_mcnemar_on_a_hand_made_table():
    # 10 images both right, 1 only a right, 7 only b right, 2 both wrong: the exact test is
    # a binomial test of 1 success in 8 at one half, two-sided: 2 * (1 + 8) / 256.
    a = np.array([1] * 10 + [1] + [0] * 7 + [0] * 2, bool)
    b = np.array([1] * 10 + [0] + [1] * 7 + [0] * 2, bool)
    r = stats.mcnemar(a, b)
    assert (r["only_a"], r["only_b"], r["statistic"]) == (1, 7, 1.0)
    assert r["p"] == pytest.approx(18 / 256)
    assert r["ci95"][0] < -6 / 20 < r["ci95"][1]


def test_holm_on_a_textbook_list():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_effect_size_probability_of_improvement_and_power():
    assert stats.prob_improvement([1, 2], [2, 0]) == pytest.approx((0 + 1 + 0.5 + 1) / 4)
    g = stats.hedges_g([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert g == pytest.approx(-1.0 * (1 - 3 / (4 * 6 - 9)))
    assert stats.hedges_g([1.0], [2.0]) is None
    few = stats.seeds_for_power(DRUG1, DRUG2, paired=True)
    many = stats.seeds_for_power(DRUG1, DRUG2, paired=False)
    assert 2 <= few < many  # pairing by seed removes the shared spread
    # a difference far beyond the spread needs the fewest seeds, however large it is (scipy's
    # noncentral t gives nan there: counted as power 1)
    huge = [
        stats.seeds_for_power([m + 0.1, m + 2.0, m + 0.9], [0.0, 0.0, 0.0], paired=True)
        for m in (30.0, 50.0, 100.0)
    ]  # d_z = 31, 51, 101: beyond scipy's reach
    assert huge == [2, 2, 2]


def fake_run(folder: Path, seed: int, value: float, **config) -> Path:
    """A finished run folder as cifarlab writes it (config.json, summary.json)."""
    folder.mkdir(parents=True)
    cfg = {"model": "base", "seed": seed, "lr": 0.03, **config}
    (folder / "config.json").write_text(json.dumps(cfg))
    summary = {
        "status": "finished",
        "test_acc": value,
        "test_loss": 1 - value,
        "final_val_acc": value,
        "test_size": 100,
        "dataset": "cifar10",
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def predictions(folder: Path, correct: np.ndarray, index=None) -> None:
    n = len(correct)
    labels = np.arange(n) % 10
    guess = np.where(correct, labels, (labels + 1) % 10)
    probs = np.eye(10, dtype=np.float32)[guess]
    index = np.arange(n) if index is None else index
    np.savez(folder / "test_predictions.npz", labels=labels, probabilities=probs, index=index)


def test_groups_of_a_seeds_and_a_sweep_folder(tmp_path):
    for seed, v in zip([1, 2, 3], [0.70, 0.72, 0.71], strict=True):
        fake_run(tmp_path / "seeds" / "runs" / f"base-{seed}", seed, v)
    for lr, seed, v in [(0.01, 1, 0.60), (0.01, 2, 0.62), (0.01, 3, 0.61)]:
        fake_run(tmp_path / "sweep" / "runs" / f"base-{lr}-{seed}", seed, v, lr=lr)
    result = cifarlab.compare([tmp_path / "seeds", tmp_path / "sweep"])
    names = [g["name"] for g in result["groups"]]
    assert names == ["lr=0.03", "lr=0.01"]
    assert result["groups"][0]["seeds"] == [1, 2, 3]
    (pair,) = result["pairs"]
    assert pair["test"] == "paired-t" and pair["paired_seeds"] == [1, 2, 3]
    assert pair["diff"] == pytest.approx(0.10)
    assert set(pair) >= {
        "a",
        "b",
        "diff",
        "ci95",
        "test",
        "statistic",
        "p",
        "p_holm",
        "effect_size",
        "prob_improvement",
    }
    assert set(result["groups"][0]) >= {"name", "runs", "seeds", "values", "mean", "std", "ci95"}


def test_welch_without_shared_seeds_and_by_a_field(tmp_path):
    for seed, v in [(1, 0.7), (2, 0.72)]:
        fake_run(tmp_path / f"a{seed}", seed, v, model="base")
    for seed, v in [(3, 0.8), (4, 0.83), (5, 0.81)]:
        fake_run(tmp_path / f"b{seed}", seed, v, model="improved", lr=0.1)
    paths = [tmp_path / p for p in ("a1", "a2", "b3", "b4", "b5")]
    result = compare(paths, by=["model"])
    assert [g["name"] for g in result["groups"]] == ["model=base", "model=improved"]
    assert result["pairs"][0]["test"] == "welch-t"
    assert compare(paths, by=["model"], test="mann-whitney")["pairs"][0]["test"] == "mann-whitney"
    perm = compare(paths, by=["model"], test="permutation")["pairs"][0]
    assert perm["test"] == "permutation" and perm["ci95"] is not None


def test_one_run_a_side_uses_mcnemar_on_the_predictions(tmp_path):
    a = fake_run(tmp_path / "a", 0, 0.6)
    b = fake_run(tmp_path / "b", 0, 0.3, lr=0.1)
    predictions(a, np.arange(20) % 5 < 3)
    predictions(b, np.arange(20) % 5 < 1)
    (pair,) = compare([a, b])["pairs"]
    assert pair["test"] == "mcnemar" and pair["effect_size"] is None


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("empty", [], "holds no finished cifarlab run"),
        ("one-group", [], "compare needs two"),
        ("no-predictions", [], "no test applies"),
        ("other-images", [], "different images"),
        ("other-data", [], "different data"),
        ("one-group", ["--by", "no_such_option"], "not a train option"),
        ("no-predictions", ["--metric", "test_loss"], "only --metric test_acc"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    setup, args, message, tmp_path, monkeypatch, capsys
):
    root = tmp_path / "runs"
    root.mkdir()
    if setup == "one-group":
        fake_run(root / "a", 1, 0.5)
        fake_run(root / "b", 2, 0.6)
    elif setup in ("no-predictions", "other-images"):
        fake_run(root / "a", 0, 0.5)
        fake_run(root / "b", 0, 0.6, lr=0.1)
        if setup == "other-images":
            predictions(root / "a", np.ones(10, bool))
            predictions(root / "b", np.ones(10, bool), index=np.arange(10) + 5)
    elif setup == "other-data":
        fake_run(root / "a", 0, 0.5)
        fake_run(root / "b", 0, 0.6, lr=0.1, dataset="cifar100")
    out = tmp_path / "out"
    assert cli(monkeypatch, "compare", root, "--out", out, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_every_run_writes_its_test_predictions(cifar_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    args = [
        "train",
        "--data-dir",
        cifar_dir,
        "--epochs",
        "1",
        "--batch-size",
        "10",
        "--eval-limit",
        "8",
        "--tta",
        "flip",
        "--out",
        out,
        "--quiet",
    ]
    assert cli(monkeypatch, *args) == 0
    summary = json.loads((out / "summary.json").read_text())
    with np.load(out / "test_predictions.npz") as f:
        labels, probs, index = f["labels"], f["probabilities"], f["index"]
    assert labels.dtype == np.int64 and index.dtype == np.int64 and probs.dtype == np.float32
    assert probs.shape == (8, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert (probs.argmax(1) == labels).mean() == pytest.approx(summary["test_acc"])
    assert len(set(index.tolist())) == 8 and index.max() < 20  # positions in the test set


def test_compare_command_writes_three_files(tmp_path, monkeypatch, capsys):
    for seed, v in [(1, 0.7), (2, 0.72)]:
        fake_run(tmp_path / "runs" / f"a{seed}", seed, v)
        fake_run(tmp_path / "runs" / f"b{seed}", seed, v - 0.1, lr=0.1)
    out = tmp_path / "cmp"
    assert cli(monkeypatch, "compare", tmp_path / "runs", "--out", out) == 0
    assert "paired-t" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"compare.json", "compare.md", "compare.png"}
    assert json.loads((out / "compare.json").read_text())["metric"] == "test_acc"


def test_group_names_say_what_differs(tmp_path):
    runs_a = fake_run(tmp_path / "a", 1, 0.5, lr=0.01, momentum=0.9)
    runs_b = fake_run(tmp_path / "b", 1, 0.5, lr=0.03, momentum=0.9)
    from cifarlab.experiments.compare import find_runs

    groups = group_runs(find_runs([runs_a, runs_b]))
    assert list(groups) == ["lr=0.01", "lr=0.03"]


EVIDENCE_SPEC = """
title: Evidence
dataset: cifar10
seeds: [1, 2, 3]
models:
  - name: base
    model: base
    overrides: {limit: 60, eval_limit: 20, epochs: 1, batch_size: 20, lr: 0.02,
                precision: fp32}
    lrs: [0.01, 0.02]
    lr_seeds: 2
  - name: wide
    model: improved
    title: wide CNN
    overrides: {limit: 60, eval_limit: 20, epochs: 1, batch_size: 20, lr: 0.01,
                precision: fp32}
    lrs: [0.01, 0.02]
failure_analysis: {model: wide, corruptions: [fog], severities: [2]}
"""


@pytest.mark.slow
def test_the_study_states_its_evidence_and_where_a_model_fails(cifar_dir, tmp_path, monkeypatch):
    """One small study: lr evidence over 2 seeds (paired t) and over 1 (McNemar), the
    second model against the first, and the failure analysis of the second."""
    spec = tmp_path / "study.yaml"
    spec.write_text(EVIDENCE_SPEC)
    out = tmp_path / "study"
    args = ["study", "--spec", spec, "--data-dir", cifar_dir, "--out", out, "--quiet"]
    assert cli(monkeypatch, *args) == 0
    md = (out / "report.md").read_text()
    for name, seeds, test in (("base", 2, "paired-t"), ("wide", 1, "mcnemar")):
        line = next(line for line in md.splitlines() if f"evidence/lr-{name}" in line)
        assert f"{test} p = " in line and "Holm p = " in line, line
        assert ("not distinguishable from noise" in line) or ("is better" in line)
        assert ("McNemar" in line) == (test == "mcnemar")
        lr = json.loads((out / "evidence" / f"lr-{name}" / "compare.json").read_text())
        assert [g["n"] for g in lr["groups"]] == [seeds, seeds]
    model_line = next(line for line in md.splitlines() if "evidence/wide-vs-base" in line)
    assert "model=improved vs model=base" in model_line
    # where the wide CNN fails
    assert "Where the wide CNN fails" in md and "after temperature" in md
    for name in ("mistakes.png", "reliability.png", "gradcam.png", "calibration.json"):
        assert (out / "failures" / "wide" / name).is_file(), name
    r = json.loads((out / "failures" / "robustness-base.json").read_text())
    assert list(r["corruptions"]) == ["fog"] and list(r["corruptions"]["fog"]) == ["2"]
    assert (out / "failures" / "robustness.png").is_file()
    study = json.loads((out / "study.json").read_text())
    assert set(study["results"]["failures"]["robustness"]) == {"base", "wide"}


def test_seeds_per_config_in_the_spec_and_on_the_command_line(monkeypatch, capsys):
    from cifarlab.study.spec import ORIGINAL, is_original, spec_from_dict

    three = ORIGINAL.with_seeds_per_config(3)
    assert is_original(three) and three.first_seeds(3) == [5, 6, 7]
    assert spec_from_dict(three.to_dict()).to_dict() == three.to_dict()
    assert ORIGINAL.with_seeds_per_config(1).to_dict() == ORIGINAL.to_dict()
    assert cli(monkeypatch, "study", "--print-spec", "--seeds-per-config", "2") == 0
    out = capsys.readouterr().out
    assert "lr_seeds: 2" in out and "seeds: 2}" in out
    bad = {**ORIGINAL.to_dict(), "models": [{"name": "b", "model": "base", "lr_seeds": 0}]}
    with pytest.raises(cifarlab.CifarlabError, match="lr_seeds of b"):
        spec_from_dict(bad)


def test_holm_and_pairs_with_no_spread_at_all(tmp_path):
    assert stats.holm([0.01, float("nan"), 0.04, 0.03]) == pytest.approx([0.04, 1.0, 0.09, 0.09])
    for seed in (1, 2):
        fake_run(tmp_path / f"a{seed}", seed, 0.5 + seed / 100)
        fake_run(tmp_path / f"b{seed}", seed, 0.5 + seed / 100, lr=0.1)  # the same values
    (pair,) = compare([tmp_path])["pairs"]
    assert pair["p"] == 1.0 and pair["p_holm"] == 1.0


def test_compare_refuses_validation_splits_of_other_sizes(tmp_path):
    fake_run(tmp_path / "a", 1, 0.5, val_size=100, val_from="train")
    fake_run(tmp_path / "b", 1, 0.6, val_size=200, val_from="train", lr=0.1)
    with pytest.raises(cifarlab.CifarlabError, match="different data"):
        compare([tmp_path], metric="val_acc")
