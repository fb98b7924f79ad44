"""CIFAR-10-C and CIFAR-10.1 read from tiny folders in the official formats: the arrays, one
severity's block, the catalog's datasets, and one line for each thing wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cifarlab.data import dataset_spec, load_dataset
from cifarlab.data.shift import cifar10c_block, read_cifar10c, read_cifar101
from cifarlab.errors import CifarlabError
from tests.conftest import CLASSES, cli

K = 10  # images per severity (10,000 in the official files)


def write_cifar10c(root: Path, names=("fog", "pixelate"), k: int = K) -> Path:
    """root/CIFAR-10-C/: labels.npy (5 blocks of the same k labels) and NAME.npy per
    corruption, 5k x 32 x 32 x 3 uint8 whose pixels all hold the severity."""
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True)
    np.save(folder / "labels.npy", np.tile(np.arange(k) % 10, 5).astype(np.uint8))
    for name in names:
        data = np.repeat(np.arange(1, 6, dtype=np.uint8), k)[:, None, None, None]
        np.save(folder / f"{name}.npy", np.broadcast_to(data, (5 * k, 32, 32, 3)).copy())
    return folder


def write_cifar101(folder: Path, version: str = "v6", n: int = 12) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    np.save(folder / f"cifar10.1_{version}_data.npy", data)
    np.save(folder / f"cifar10.1_{version}_labels.npy", np.arange(n) % 10)
    return folder


def one_line_error(match: str, call, *args, **kwargs) -> str:
    with pytest.raises(CifarlabError, match=match) as e:
        call(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_cifar10c_arrays_and_blocks(tmp_path):
    folder = write_cifar10c(tmp_path)
    labels, arrays = read_cifar10c(folder)
    assert labels.dtype == torch.int64 and len(labels) == 5 * K
    assert list(arrays) == ["fog", "pixelate"] and isinstance(arrays["fog"], np.memmap)
    images, block_labels = cifar10c_block(arrays["fog"], labels, 3)
    assert images.shape == (K, 3, 32, 32) and images.dtype == torch.uint8
    assert (images == 3).all() and block_labels.tolist() == [i % 10 for i in range(K)]
    assert list(read_cifar10c(folder, ["pixelate"])[1]) == ["pixelate"]
    one_line_error("severity must be one of 1..5", cifar10c_block, arrays["fog"], labels, 6)


def test_cifar10c_bad_folders_say_what_is_wrong(tmp_path):
    folder = write_cifar10c(tmp_path)
    one_line_error(r"no snow.npy in .*; there: fog, pixelate", read_cifar10c, folder, ["snow"])
    np.save(folder / "fog.npy", np.zeros((5 * K, 32, 32), np.uint8))
    one_line_error(
        r"fog.npy is uint8 \(50, 32, 32\); expected uint8 \(50, 32, 32, 3\)", read_cifar10c, folder
    )
    np.save(folder / "fog.npy", np.zeros((5 * K, 32, 32, 3), np.float32))
    one_line_error(
        r"fog.npy is float32 .*\(the official files: \(50000, 32, 32, 3\) uint8\)",
        read_cifar10c,
        folder,
    )
    np.save(folder / "fog.npy", np.zeros((5 * K - 5, 32, 32, 3), np.uint8))  # lengths differ
    one_line_error(r"fog.npy is uint8 \(45, 32, 32, 3\)", read_cifar10c, folder)
    (folder / "fog.npy").write_bytes(b"garbage")
    one_line_error("fog.npy is not a readable .npy array", read_cifar10c, folder)
    np.save(folder / "labels.npy", np.zeros(49, np.int64))
    one_line_error("holds 49 labels; expected 5 severities", read_cifar10c, folder)
    (folder / "labels.npy").unlink()
    one_line_error("no labels.npy in", read_cifar10c, folder)


def test_cifar101_versions(tmp_path):
    folder = write_cifar101(tmp_path / "c101", "v6", 12)
    write_cifar101(folder, "v4", 13)
    v6, v4 = read_cifar101(folder), read_cifar101(folder, "v4")
    assert len(v6.test) == 12 and len(v4.test) == 13 and len(v6.train) == 0
    assert v6.test.images.shape == (12, 3, 32, 32) and v6.test.images.dtype == torch.uint8
    raw = np.load(folder / "cifar10.1_v6_data.npy")
    assert torch.equal(v6.test.images[3], torch.from_numpy(raw[3]).permute(2, 0, 1))
    assert v6.image_shape == (3, 32, 32) and v6.classes == CLASSES
    assert v4.notes["cifar10.1_version"] == "v4"
    (folder / "cifar10.1_v6_data.npy").unlink()
    assert len(read_cifar101(folder, None).test) == 13  # v6 absent: v4
    one_line_error(r"no cifar10.1_v6_data.npy .*versions there: v4", read_cifar101, folder)
    one_line_error("version must be v6 or v4, not 'v5'", read_cifar101, folder, "v5")


def test_cifar101_bad_files(tmp_path):
    folder = write_cifar101(tmp_path / "c101")
    np.save(folder / "cifar10.1_v6_labels.npy", np.arange(11) % 10)
    one_line_error("holds 11 labels for 12 images", read_cifar101, folder)
    np.save(folder / "cifar10.1_v6_labels.npy", np.arange(12) + 5)
    one_line_error("label 10 is outside 0..9", read_cifar101, folder)
    np.save(folder / "cifar10.1_v6_data.npy", np.zeros((12, 32, 32, 3), np.float64))
    one_line_error(r"is float64 \(12, 32, 32, 3\); expected uint8", read_cifar101, folder)


def test_catalog_reads_both_for_evaluation_only(tmp_path):
    write_cifar10c(tmp_path / "c")
    data = load_dataset("cifar10-c", tmp_path / "c")
    assert len(data.train) == 0 and len(data.test) == 0 and data.classes == CLASSES
    assert data.notes["cifar10c_folder"] == str(tmp_path / "c" / "CIFAR-10-C")
    folder = write_cifar101(tmp_path / "r" / "datasets")
    data = load_dataset("cifar10.1", tmp_path / "r")
    assert len(data.test) == 12 and len(data.train) == 0 and data.model_args()["num_classes"]
    assert data.root == folder and "CIFAR-10.1 v6" in data.notes["test_set"]
    for name in ("cifar10-c", "cifar10.1"):
        assert dataset_spec(name).evaluation_only and dataset_spec(name).download is None
        one_line_error(f"--dataset {name} needs --data-dir PATH", load_dataset, name)
        one_line_error("no CIFAR-10", load_dataset, name, tmp_path)


@pytest.mark.parametrize("name", ["cifar10.1", "cifar10-c"])
def test_train_refuses_them_in_one_line(name, tmp_path, monkeypatch, capsys):
    assert cli(monkeypatch, "train", "--dataset", name, "--data-dir", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--dataset {name} is for evaluation only" in err


def test_datasets_lists_them(monkeypatch, capsys):
    assert cli(monkeypatch, "datasets") == 0
    out = capsys.readouterr().out
    assert "cifar10-c " in out and "cifar10.1 " in out and "evaluation only" in out
