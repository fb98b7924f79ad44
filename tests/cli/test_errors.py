"""Bad input and misleading output: one clear line (exit 2), never a traceback or a silent
wrong result. Tiny synthetic data, one epoch."""

import json
import os
import shutil
from urllib.error import URLError

import pytest
import torch

from cifarlab.config.options import resolve
from cifarlab.data import DATASETS, load_dataset, make_splits
from cifarlab.errors import CifarlabError
from cifarlab.evaluate import export
from cifarlab.training import summary as run_summary
from cifarlab.training.loop import train
from tests.conftest import cli, copy_run, write_cifar, write_idx, write_imagefolder


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


# ------------------------------------------------- 2. evaluate on what is not a checkpoint


@pytest.mark.parametrize(
    "name,text", [("train.py", "print('hi')\n"), ("config.json", '{"model": "base"}\n')]
)
def test_evaluate_a_file_that_is_not_a_checkpoint(tmp_path, monkeypatch, capsys, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert cli(monkeypatch, "evaluate", path) == 2
    err = one_line_error(capsys)
    assert f"{path} is not a cifarlab checkpoint" in err and "checkpoint.pt" in err
    assert "could run code" not in err and "weights_only" not in err


def test_a_tampered_checkpoint_names_the_blocked_code(run, tmp_path, monkeypatch, capsys):
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    ckpt["payload"] = RunsCode()
    torch.save(ckpt, tmp_path / "tampered.pt")
    assert cli(monkeypatch, "evaluate", tmp_path / "tampered.pt") == 2
    err = one_line_error(capsys)
    assert "could run code" in err and "(it names posix.system)" in err
    assert "In PyTorch 2.6" not in err and "safe_globals" not in err and "allowlist" not in err


class RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def test_evaluate_a_study_folder_lists_its_runs(run, tmp_path, monkeypatch, capsys):
    names = [f"base-lr{i}-abc12{i}" for i in range(7)]
    for name in names:
        (tmp_path / "study" / "runs" / name).mkdir(parents=True)
        shutil.copy(run / "checkpoint.pt", tmp_path / "study" / "runs" / name)
    (tmp_path / "study" / "analysis").mkdir()
    assert cli(monkeypatch, "evaluate", tmp_path / "study") == 2
    err = one_line_error(capsys)
    assert "no checkpoint.pt in" in err and "7 run folders" in err
    shown = [n for n in names if f"runs/{n}" in err]
    assert shown == names[:5] and "pick one" in err
    # a folder with nothing below it: as before
    (tmp_path / "empty").mkdir()
    assert cli(monkeypatch, "evaluate", tmp_path / "empty") == 2
    assert "no checkpoint.pt in run folder" in one_line_error(capsys)


# ---------------------------------------------- 3. evaluate uses the run's recorded data_dir


def test_evaluate_finds_the_runs_own_data(run, monkeypatch, capsys):
    assert cli(monkeypatch, "evaluate", run, "--out", run.parent / "eval") == 0
    report = json.loads((run.parent / "eval" / "evaluation.json").read_text())
    assert report["accuracy"] == json.loads((run / "summary.json").read_text())["test_acc"]


def test_evaluate_an_imagefolder_run_without_data_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_imagefolder(tmp_path / "pets")
    cfg = dict(model="base", dataset="imagefolder", data_dir="pets", epochs=1, batch_size=6)
    train(resolve(None, {**cfg, "device": "cpu"}), "run", progress=False)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert cli(monkeypatch, "evaluate", "run") == 0  # data_dir as recorded: pets
    report = json.loads((tmp_path / "run" / "evaluate-test" / "evaluation.json").read_text())
    assert report["images"] == summary["test_size"] and report["accuracy"] == summary["test_acc"]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    capsys.readouterr()
    assert cli(monkeypatch, "evaluate", "../run", "--out", "e") == 2
    err = one_line_error(capsys)
    assert "the run's data was at pets" in err and "--data-dir" in err
    assert not os.path.exists("e")
    assert cli(monkeypatch, "evaluate", "../run", "--data-dir", "../pets", "--out", "e") == 0


# ------------------------------------------------ 4. --limit above the training set's size


def test_limit_above_the_training_set_says_so_once(run, tmp_path, capsys):
    data = str(run.parent / "data")
    cfg = dict(model="base", epochs=2, batch_size=25, data_dir=data, device="cpu")
    cfg.update(eval_limit=4, val_from="train", val_size=10, limit=100000)
    capsys.readouterr()
    train(resolve(None, cfg), tmp_path / "over", progress=False)
    out = capsys.readouterr().out
    note = "note: --limit 100000 is more than the 40 training images; using all of them"
    assert out.count(note) == 1 and out.count("note:") == 1
    train(resolve(None, {**cfg, "limit": 40}), tmp_path / "exact", progress=False)
    assert "note:" not in capsys.readouterr().out


# ------------------------------------------------------- 5. a failed download, offline


def offline(folder_name: str, error: Exception):
    """A download that fails the way torchvision's does offline, after making its folder."""

    def download(cache):
        (cache / folder_name / "raw").mkdir(parents=True, exist_ok=True)
        (cache / folder_name / "raw" / "train-images-idx3-ubyte.gz.part").write_bytes(b"x")
        raise error

    return download


TORCHVISION_OFFLINE = RuntimeError(
    "Error downloading train-images-idx3-ubyte.gz:\n"
    "Tried https://ossci-datasets.s3.amazonaws.com/mnist/, got:\n"
    "<urlopen error [Errno -2] Name or service not known>\n"
    "Tried http://yann.lecun.com/exdb/mnist/, got:\n"
    "<urlopen error [Errno -2] Name or service not known>\n"
)


@pytest.mark.parametrize(
    "error", [TORCHVISION_OFFLINE, URLError(OSError(-2, "Name or service not known"))]
)
def test_offline_download_one_line_and_nothing_left(tmp_path, monkeypatch, capsys, error):
    monkeypatch.setattr(DATASETS["mnist"], "download", offline("MNIST", error))
    cache = tmp_path / "cache" / "cifarlab"
    assert cli(monkeypatch, "train", "--dataset", "mnist", "--out", tmp_path / "run") == 2
    err = one_line_error(capsys)
    assert "could not download MNIST" in err and "Name or service not known" in err
    assert "--data-dir" in err
    assert not cache.exists() and not (tmp_path / "run").exists()


def test_failed_download_keeps_what_the_cache_held(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache" / "cifarlab"
    write_cifar(cache, n_train=10, n_test=10)
    (cache / "MNIST" / "raw").mkdir(parents=True)  # an earlier failure's, say
    write_idx(cache / "FashionMNIST" / "raw", n_train=10, n_test=10)
    before = sorted(p.relative_to(cache) for p in cache.rglob("*"))
    monkeypatch.setattr(DATASETS["mnist"], "download", offline("MNIST", TORCHVISION_OFFLINE))
    with pytest.raises(CifarlabError, match="could not download MNIST"):
        load_dataset("mnist")
    assert sorted(p.relative_to(cache) for p in cache.rglob("*")) == before


# ----------------------------------------------- 6. what the summary says the test set is


def test_eval_limit_run_does_not_claim_the_whole_test_half(run):
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_set"] == "12 images (of the study's test half)"


def test_test_set_of_standard_datasets(cifar_dir):
    data = load_dataset("cifar10", cifar_dir)  # 50 train, 20 test images

    def name(**split_args):
        return run_summary.test_set_name(make_splits(data, **split_args))

    assert name() == "10 images (the study's test half; the other half is validation)"
    assert name(val_size=5) == "15 images (the cifar10 test set less its 5 validation images)"
    assert name(eval_limit=4) == "4 images (of the study's test half)"
    assert name(eval_limit=10) == name()  # not cut: all of the half
    assert name(val_from="none") == "the whole cifar10 test set (20 images)"
    assert name(val_from="train", val_size=10) == "the whole cifar10 test set (20 images)"
    assert name(val_from="none", eval_limit=4) == "4 images (the first 4 of the cifar10 test set)"


def test_test_set_of_an_imagefolder_run(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "pets", per_class=10)  # 3 classes
    data = load_dataset("imagefolder", root)
    assert run_summary.test_set_name(make_splits(data)) == (
        f"15 images (the test half of the images in {root}/test; the other half is validation)"
    )
    assert run_summary.test_set_name(make_splits(data, val_from="none", eval_limit=6)) == (
        f"6 images (the first 6 of the images in {root}/test)"
    )
    alone = write_imagefolder(tmp_path / "alone", per_class=10, test=False)
    cfg = dict(model="base", dataset="imagefolder", data_dir=str(alone), test_fraction=0.4)
    cfg.update(epochs=1, batch_size=6, device="cpu", eval_limit=3)
    summary = train(resolve(None, cfg), tmp_path / "run", progress=False)
    held_out = f"the 40% of each class of {alone}/train held out (--test-fraction 0.4)"
    assert summary["test_set"] == f"3 images (of the test half of {held_out})"
    assert f"on {summary['test_set']}" in capsys.readouterr().out


# --------------------------------------------- 7. --device help of evaluate and predict


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_device_help_says_where_the_model_runs(monkeypatch, capsys, command):
    assert cli(monkeypatch, command, "--help") == 0
    out = " ".join(capsys.readouterr().out.split())
    device = out[out.index("--device") : out.index("--precision")]
    assert "Where to train" not in device and "Where the model runs" in device


def test_train_out_on_a_finished_run_does_not_suggest_resume(
    shared_runs, tmp_path, monkeypatch, capsys
):
    run = copy_run(shared_runs("base"), tmp_path / "run")
    args = ["train", "--data-dir", shared_runs.data["cifar"], "--out", run, "--epochs", "1"]
    assert cli(monkeypatch, *args) == 2
    err = capsys.readouterr().err
    assert "holds a finished run; choose another --out" in err and "--resume" not in err


def test_ctrl_c_says_how_to_go_on(monkeypatch, capsys):
    from cifarlab.cli import main as entry

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(entry.cli, "main", interrupted)
    with pytest.raises(SystemExit) as stop:
        entry.main()
    assert stop.value.code == 130
    assert "`cifarlab train --resume RUN` continues" in capsys.readouterr().err
