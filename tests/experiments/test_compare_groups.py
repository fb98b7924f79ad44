"""compare with groups of any size: one run against several, and the same run found in two
folders counted once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifarlab.experiments import stats
from cifarlab.experiments.compare import compare
from tests.conftest import cli


def finished(folder: Path, seed: int, acc: float, lr: float = 0.03) -> Path:
    """A finished run folder with the files compare reads."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": "base", "seed": seed, "lr": lr}))
    summary = {"status": "finished", "test_acc": acc, "test_size": 100, "dataset": "cifar10"}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_one_run_against_a_group_by_its_prediction_interval():
    # mean 0.71, sd 0.01, n 3: t = 0.09 / (0.01 * sqrt(4/3)) = 7.794 on 2 degrees of
    # freedom; t tables: 6.965 (p = 0.02) < 7.794 < 9.925 (p = 0.01)
    r = stats.one_against_group(0.80, [0.70, 0.71, 0.72])
    assert r["test"] == "prediction-t"
    assert r["statistic"] == pytest.approx(7.794, abs=1e-3)
    assert 0.01 < r["p"] < 0.02
    half = 4.303 * 0.01 * (4 / 3) ** 0.5  # t(0.975, 2) = 4.303
    assert r["ci95"] == pytest.approx([0.09 - half, 0.09 + half], abs=1e-4)


@pytest.mark.parametrize("test", ["t", "mann-whitney", "permutation"])
def test_a_study_folder_one_run_and_several_is_answered_not_a_traceback(tmp_path, test):
    finished(tmp_path / "runs" / "a", 1, 0.80, lr=0.1)
    for seed, acc in [(1, 0.70), (2, 0.71), (3, 0.72)]:
        finished(tmp_path / "runs" / f"b{seed}", seed, acc)
    result = compare([tmp_path / "runs"], test=test)
    (pair,) = result["pairs"]
    assert pair["a"] == "lr=0.1" and pair["test"] == "prediction-t"
    assert pair["diff"] == pytest.approx(0.09) and pair["ci95"][0] > 0
    assert "one run against 3" in pair["note"]
    assert (test != "t") == pair["note"].startswith(f"--test {test} needs two runs a side")


def test_the_command_says_what_one_run_against_several_can_conclude(tmp_path, monkeypatch, capsys):
    finished(tmp_path / "a" / "r1", 1, 0.60, lr=0.1)
    finished(tmp_path / "b" / "r1", 1, 0.70)
    finished(tmp_path / "b" / "r2", 2, 0.72)
    assert cli(monkeypatch, "compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "c") == 0
    out = capsys.readouterr().out
    assert "prediction-t" in out and "One run against 2" in out


def test_the_same_run_in_two_folders_counts_once(tmp_path):
    for sweep in ("sweep1", "sweep2"):  # two sweeps that share the point lr=0.03
        for seed, acc in [(1, 0.70), (2, 0.72)]:
            finished(tmp_path / sweep / f"lr0.03-s{seed}", seed, acc)
    for seed, acc in [(1, 0.75), (2, 0.78)]:
        finished(tmp_path / "sweep2" / f"lr0.1-s{seed}", seed, acc, lr=0.1)
    result = compare([tmp_path / "sweep1", tmp_path / "sweep2"])
    base = next(g for g in result["groups"] if g["name"] == "lr=0.03")
    assert base["n"] == 2 and base["seeds"] == [1, 2]
    assert result["pairs"][0]["test"] == "paired-t"
    assert sorted(Path(p).name for p in result["counted_once"]) == ["lr0.03-s1", "lr0.03-s2"]
