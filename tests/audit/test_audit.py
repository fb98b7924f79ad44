"""cifarlab audit on synthetic CIFAR-10 with planted near-duplicates and wrong labels: the
test knows which images they are, and checks that they are found and the clean ones not."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import CLASSES, cli

COPIES = {3: 5, 17: 66, 42: 130}  # test index -> the training image it copies
NOISY_COPIES = {70: 200}  # a copy with a little noise added
WRONG = [10, 60, 120, 150, 181]  # test images given a wrong label
TRAIN_WRONG = [7, 250, 444]  # training images given a wrong label (found with --folds)

pytestmark = pytest.mark.slow  # the module trains its model (about 10 s)


def smooth(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """n smooth random images (3 x 32 x 32): 4x4 noise upsampled, so that a shift of two
    pixels changes little, as in photographs."""
    low = torch.tensor(rng.normal(0, amplitude, size=(n, 3, 4, 4)), dtype=torch.float32)
    return F.interpolate(low, size=32, mode="bicubic", align_corners=False).numpy()


def write_planted(root: Path, n_train: int = 600, n_test: int = 200) -> Path:
    rng = np.random.default_rng(0)
    templates = smooth(rng, 10, 50)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        x = 128 + templates[labels] + smooth(rng, n, 50) + rng.normal(0, 2, (n, 3, 32, 32))
        return np.clip(x, 0, 255).astype(np.uint8), labels

    train, train_labels = make(n_train)
    test, test_labels = make(n_test)
    for t, s in COPIES.items():
        test[t], test_labels[t] = train[s], train_labels[s]
    for t, s in NOISY_COPIES.items():
        noisy = train[s].astype(np.float64) + rng.normal(0, 3, train[s].shape)
        test[t], test_labels[t] = np.clip(noisy, 0, 255).astype(np.uint8), train_labels[s]
    for t in WRONG:
        test_labels[t] = (test_labels[t] + 5) % 10
    for t in TRAIN_WRONG:
        train_labels[t] = (train_labels[t] + 5) % 10
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, x: np.ndarray, y: np.ndarray) -> None:
        obj = {b"labels": y.tolist(), b"data": x.reshape(len(x), 3072), b"batch_label": b""}
        (folder / name).write_bytes(pickle.dumps(obj))

    for i, part in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        dump(f"data_batch_{i}", train[part], train_labels[part])
    dump("test_batch", test, test_labels)
    meta = {b"label_names": [c.encode() for c in CLASSES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("audit")
    data = write_planted(root / "data")
    run = root / "run"
    args = ["train", "--model", "base", "--data-dir", data, "--epochs", "6", "--lr", "0.03"]
    args += ["--batch-size", "20", "--val-from", "train", "--val-size", "100", "--out", run]
    assert cli(pytest.MonkeyPatch(), *args, "--quiet", "--no-tensorboard") == 0
    return data, run


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_planted_duplicates_are_found_and_clean_images_are_not(trained, tmp_path, monkeypatch):
    data, run = trained
    for space in ("pixels", "features"):
        out = tmp_path / space
        assert cli(monkeypatch, "audit", run, "--space", space, "--out", out) == 0
        result = json.loads((out / "audit.json").read_text())
        limit = result["threshold"]["distance"]
        found = rows(out / "duplicates.csv")
        assert list(found[0]) == [
            "query_split",
            "query_index",
            "match_split",
            "match_index",
            "distance",
        ]
        distances = [float(r["distance"]) for r in found]
        assert distances == sorted(distances)  # most similar first
        near = {
            (int(r["query_index"]), int(r["match_index"]))
            for r in found
            if r["match_split"] == "train" and float(r["distance"]) <= limit
        }
        planted = {**COPIES, **NOISY_COPIES}
        assert set(planted.items()) <= near, space
        assert {q for q, _ in near} == set(planted), (space, near)  # no clean image flagged
        assert result["duplicates"]["test_with_a_train_duplicate"] == len(planted)
        assert result["duplicates"]["test_pairs"] == 0  # no two test images are copies
        per_class = result["duplicates"]["per_class"]
        assert sum(per_class.values()) == len(planted) and set(per_class) == set(CLASSES)


def test_planted_wrong_labels_are_flagged_and_accuracy_leaves_them_out(
    trained, tmp_path, monkeypatch
):
    data, run = trained
    out = tmp_path / "a"
    assert cli(monkeypatch, "audit", run, "--out", out) == 0
    issues = rows(out / "label_issues.csv")
    assert list(issues[0]) == ["split", "index", "given", "suggested", "score"]
    flagged = {int(r["index"]) for r in issues}
    # confident learning counts an image only where the model is about as sure of its class
    # as of that class's others: one planted image may be too ambiguous to count (tiny data)
    assert len(set(WRONG) & flagged) >= len(WRONG) - 1 and flagged <= set(WRONG), flagged
    scores = [float(r["score"]) for r in issues]
    assert scores == sorted(scores)
    for r in issues:
        if int(r["index"]) in WRONG:  # the suggestion is the class the image was made for
            assert int(r["suggested"]) == (int(r["given"]) + 5) % 10
    acc = json.loads((out / "audit.json").read_text())["test_accuracy"]
    assert acc["all"]["images"] == 200
    assert acc["without_label_issues"]["images"] == 200 - len(flagged)
    assert acc["without_label_issues"]["accuracy"] > acc["all"]["accuracy"]
    assert acc["without_both"]["images"] == 200 - len(flagged | set(COPIES) | set(NOISY_COPIES))
    for name in ("duplicates.png", "threshold.png", "label_issues.png"):
        assert (out / name).stat().st_size > 5000


@pytest.mark.parametrize(
    "args, message",
    [
        (["--folds", "1"], "--folds needs 2 or more folds"),
        (["--layer", "nope"], "--layer 'nope' is not a module of the model; its modules: 0, 1"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(
    trained, tmp_path, monkeypatch, capsys, args, message
):
    _, run = trained
    out = tmp_path / "o"
    assert cli(monkeypatch, "audit", run, "--out", out, *args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_folder_without_a_checkpoint_and_other_data_are_refused(
    trained, tmp_path, monkeypatch, capsys
):
    from tests.conftest import write_cifar100

    _, run = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(monkeypatch, "audit", empty) == 2
    assert "holds no checkpoint.pt: audit a trained run folder" in capsys.readouterr().err
    write_cifar100(tmp_path / "c100")
    out = tmp_path / "o"
    assert cli(monkeypatch, "audit", run, "--data-dir", tmp_path / "c100", "--out", out) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and not out.exists(), err


def test_folds_find_wrong_training_labels_and_say_how_long(trained, tmp_path, monkeypatch, capsys):
    """--folds 2: two models with the run's recipe, each predicting the half it did not see;
    a rerun reuses the finished fold runs."""
    _, run = trained
    out = tmp_path / "folds"
    assert cli(monkeypatch, "audit", run, "--folds", "2", "--out", out, "--quiet") == 0
    printed = capsys.readouterr().out
    assert "training 2 models with the run's recipe (6 epochs each): about" in printed
    assert "fold 2/2: training on 300 images, predicting 300" in printed
    issues = [r for r in rows(out / "label_issues.csv") if r["split"] == "train"]
    flagged = {int(r["index"]) for r in issues}
    assert len(set(TRAIN_WRONG) & flagged) >= len(TRAIN_WRONG) - 1, flagged
    assert len(flagged - set(TRAIN_WRONG)) <= 6, flagged  # 1% of 600: models of 200 images err
    result = json.loads((out / "audit.json").read_text())["label_issues"]
    assert result["train"] == len(flagged) and result["folds"] == 2
    assert sum(result["train_per_class"].values()) == len(flagged)
    stamp = (out / "folds" / "0" / "checkpoint.pt").stat().st_mtime
    assert cli(monkeypatch, "audit", run, "--folds", "2", "--out", out, "--quiet") == 0
    assert (out / "folds" / "0" / "checkpoint.pt").stat().st_mtime == stamp  # reused
