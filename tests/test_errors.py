"""Bad input and misleading output: one clear line (exit 2), never a traceback or a silent
wrong result. Tiny synthetic data, one epoch."""

import os
import shutil

import pytest

from cifarlab import export
from cifarlab.config import resolve
from cifarlab.train_loop import train
from tests.conftest import cli, write_cifar


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A base CNN trained 1 epoch on 50 random images (40 test images)."""
    root = tmp_path_factory.mktemp("errors")
    write_cifar(root / "data", n_train=50, n_test=40)
    cfg = dict(model="base", epochs=1, batch_size=25, lr=0.01, data_dir=str(root / "data"))
    cfg.update(device="cpu", eval_limit=12, eval_batch_size=5)
    train(resolve(None, cfg), root / "run", progress=False)
    return root / "run"


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ------------------------------------------------------------ 1. export --out unwritable


def read_only(monkeypatch, folder) -> None:
    """os.access says `folder` cannot be written: tests run as root, for whom a chmod'ed
    folder stays writable."""
    real = os.access

    def access(path, mode, **kw):
        if str(path) == str(folder) and mode & os.W_OK:
            return False
        return real(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)


@pytest.fixture
def no_conversion(monkeypatch):
    """The conversion must not start when the destination is refused."""
    monkeypatch.setattr(export, "export_trained", lambda *a, **k: pytest.fail("converted"))


def test_export_out_file_in_place_of_a_folder(run, tmp_path, monkeypatch, capsys, no_conversion):
    (tmp_path / "notes.txt").write_text("a file")
    for out in (tmp_path / "notes.txt" / "model.onnx", tmp_path / "notes.txt" / "a" / "m.onnx"):
        assert cli(monkeypatch, "export", run, "--out", out) == 2
        err = one_line_error(capsys)
        assert "notes.txt is a file, not a folder" in err
    assert (tmp_path / "notes.txt").read_text() == "a file"
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_export_out_names_a_folder(run, tmp_path, monkeypatch, capsys, no_conversion):
    folder = tmp_path / "exports"
    folder.mkdir()
    assert cli(monkeypatch, "export", run, "--out", folder) == 2
    err = one_line_error(capsys)
    assert "is a folder" in err and "model.onnx" in err
    assert os.listdir(folder) == []


def test_export_out_in_a_read_only_folder(run, tmp_path, monkeypatch, capsys, no_conversion):
    folder = tmp_path / "locked"
    folder.mkdir()
    read_only(monkeypatch, folder)
    for out in (folder / "m.onnx", folder / "new" / "m.onnx"):
        assert cli(monkeypatch, "export", run, "--out", out) == 2
        assert "no permission to write in" in one_line_error(capsys)
    assert os.listdir(folder) == []


def test_export_default_path_in_a_read_only_run_folder(
    run, tmp_path, monkeypatch, capsys, no_conversion
):
    copy = tmp_path / "run"
    copy.mkdir()
    shutil.copy(run / "checkpoint.pt", copy / "checkpoint.pt")
    read_only(monkeypatch, copy)
    assert cli(monkeypatch, "export", copy) == 2
    assert "no permission to write in" in one_line_error(capsys)
    assert os.listdir(copy) == ["checkpoint.pt"]
