import json

import numpy as np
import pytest
from PIL import Image

from cifarlab.cli.main import main
from cifarlab.data import load_cifar10
from cifarlab.study import analysis


def test_stats_match_numpy(cifar_dir):
    d = load_cifar10(cifar_dir)
    r = analysis.analyze(d)
    x = d.train.images.numpy().astype(np.float64) / 255.0
    np.testing.assert_allclose(r["mean"], x.mean(axis=(0, 2, 3)), atol=1e-12)
    np.testing.assert_allclose(r["std"], x.std(axis=(0, 2, 3)), atol=1e-12)
    # the normalized training set, computed directly with the float32 normalization
    m = np.array(r["mean"], dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.array(r["std"], dtype=np.float32).reshape(1, 3, 1, 1)
    z = ((d.train.images.numpy().astype(np.float32) / np.float32(255.0)) - m) / s
    np.testing.assert_allclose(
        r["normalized_mean"], z.mean(axis=(0, 2, 3), dtype=np.float64), atol=1e-9
    )
    np.testing.assert_allclose(
        r["normalized_std"], z.std(axis=(0, 2, 3), dtype=np.float64), atol=1e-9
    )
    assert np.allclose(r["normalized_mean"], 0, atol=1e-6)
    assert np.allclose(r["normalized_std"], 1, atol=1e-6)


def test_counts_and_format(cifar_dir):
    r = analysis.analyze(load_cifar10(cifar_dir))
    assert r["train_size"] == 50 and r["test_size"] == 20
    assert r["train_class_counts"] == [5] * 10
    assert r["test_class_counts"] == [2] * 10
    assert r["image_shape"] == [3, 32, 32]
    assert r["before_conversion"]["dtype"] == "uint8"
    assert r["after_conversion"]["dtype"] == "float32"
    assert 0.0 <= r["after_conversion"]["min"] <= r["after_conversion"]["max"] <= 1.0
    table = analysis.format_table(r)
    assert "airplane" in table and "norm mean" in table


def test_analyze_command_end_to_end(cifar_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(
        "sys.argv", ["cifarlab", "analyze", "--data-dir", str(cifar_dir), "--out", str(out)]
    )
    main()
    printed = capsys.readouterr().out
    assert "mean" in printed and "truck" in printed
    r = json.loads((out / "analysis.json").read_text())
    for key in [
        "train_size",
        "test_size",
        "classes",
        "train_class_counts",
        "test_class_counts",
        "image_shape",
        "before_conversion",
        "after_conversion",
        "mean",
        "std",
        "normalized_mean",
        "normalized_std",
    ]:
        assert key in r
    for name in [
        "samples_train",
        "samples_test",
        "class_distribution_train",
        "class_distribution_test",
    ]:
        with Image.open(out / f"{name}.png") as im:
            im.verify()
            assert im.format == "PNG"


@pytest.mark.parametrize("command", [["analyze"], ["sweep", "--lr", "0.1,0.2"], ["seeds"]])
def test_bad_data_dir_is_one_line_and_leaves_no_folder(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run folder would be tmp_path/runs/...
    argv = ["cifarlab", *command, "--data-dir", str(tmp_path / "x")]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code != 0
    err = capsys.readouterr().err
    assert err.startswith("error: data folder") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()  # a failed command left no empty run folder
