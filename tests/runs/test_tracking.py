"""TensorBoard event files of a run, read back with tensorboard's own event reader."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cifarlab.cli.main import main
from cifarlab.config.options import resolve
from cifarlab.runs.tracking import SCALARS, Tracking
from cifarlab.training.loop import train
from tests.conftest import cli, killed_at_epoch

EPOCH_TAGS = sorted(SCALARS.values())


def tiny_cfg(data_dir, **kw):
    values = dict(
        model="base",
        epochs=3,
        batch_size=10,
        lr=0.01,
        limit=20,
        eval_limit=10,
        data_dir=str(data_dir),
        device="cpu",
    )
    return resolve(None, {**values, **kw})


def read_events(folder):
    """Every scalar, image and tensor of the event files in `folder` (all of them)."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def steps(acc, tag):
    return [e.step for e in acc.Scalars(tag)]


def test_events_hold_one_scalar_per_epoch_hparams_and_figures(shared_runs):
    run = shared_runs("base")  # 3 epochs of the base CNN at lr 0.01
    summary = json.loads((run / "summary.json").read_text())
    acc = read_events(run / "tb")
    tags = acc.Tags()
    assert sorted(tags["scalars"]) == sorted(EPOCH_TAGS + ["test/accuracy", "test/loss"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for key, tag in SCALARS.items():
        assert steps(acc, tag) == [1, 2, 3], tag
        assert [e.value for e in acc.Scalars(tag)] == pytest.approx([r[key] for r in rows])
    (test_acc,) = acc.Scalars("test/accuracy")
    assert (test_acc.step, test_acc.value) == (3, pytest.approx(summary["test_acc"]))
    assert sorted(tags["images"]) == ["confusion_matrix", "curves"]
    assert (run / "confusion_matrix.png").exists()
    # the hparams plugin's session: the resolved config and the test metrics
    hparams = acc.PluginTagToContent("hparams")
    assert set(hparams) == {
        "_hparams_/experiment",
        "_hparams_/session_start_info",
        "_hparams_/session_end_info",
    }
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/session_start_info"]
    ).session_start_info
    assert start.hparams["lr"].number_value == 0.01
    assert start.hparams["model"].string_value == "base"
    assert start.hparams["val_size"].string_value == "none"


def test_kill_and_resume_keep_one_scalar_per_epoch(cifar_dir, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_cfg(cifar_dir, epochs=4)
    with killed_at_epoch(3):
        train(cfg, run, progress=False)
    assert steps(read_events(run / "tb"), "loss/train") == [1, 2]
    train(cfg, run, resume=True, progress=False)
    acc = read_events(run / "tb")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for key, tag in SCALARS.items():
        assert steps(acc, tag) == [1, 2, 3, 4], tag
        assert [e.value for e in acc.Scalars(tag)] == pytest.approx([r[key] for r in rows])
    assert len(list((run / "tb").glob("events.out.tfevents.*"))) == 1  # rebuilt, not appended


def test_no_tensorboard(cifar_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(
        "sys.argv",
        [
            "cifarlab",
            "train",
            "--epochs",
            "1",
            "--limit",
            "20",
            "--eval-limit",
            "10",
            "--batch-size",
            "10",
            "--data-dir",
            str(cifar_dir),
            "--out",
            str(out),
            "--quiet",
            "--no-tensorboard",
        ],
    )
    main()
    assert (out / "summary.json").exists() and not (out / "tb").exists()


def test_resumed_without_tensorboard_leaves_no_stale_events(cifar_dir, tmp_path):
    run = tmp_path / "run"
    with killed_at_epoch(2):
        train(tiny_cfg(cifar_dir, epochs=2), run, progress=False)
    assert (run / "tb").is_dir()
    train(
        tiny_cfg(cifar_dir, epochs=2),
        run,
        resume=True,
        progress=False,
        tracking=Tracking(tensorboard=False),
    )
    assert not (run / "tb").exists()  # its epoch 1 alone would disagree with metrics.jsonl


def test_sweep_runs_are_named_by_what_differs(shared_sweep):
    out = shared_sweep.out  # --lr 0.01,0.02
    folders = sorted(p.relative_to(out).as_posix() for p in out.glob("runs/*/tb/*"))
    assert sorted(f.split("/")[-1] for f in folders) == ["lr=0.01", "lr=0.02"]
    epochs = list(range(1, shared_sweep.flags["epochs"] + 1))
    for f in folders:  # what `tensorboard --logdir OUT` lists as runs: one per folder
        assert steps(read_events(out / f), "loss/train") == epochs


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_mlflow_without_the_extra_is_one_line_before_anything_is_written(
    cifar_dir, tmp_path, monkeypatch, capsys, command
):
    """Issue 26, defect 6: no header, no config.json, no tb/ left behind."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    out = tmp_path / "run"
    args = [command, "--data-dir", cifar_dir, "--mlflow", "http://127.0.0.1:9", "--out", out]
    assert cli(monkeypatch, *args, *(["--lr", "0.1,0.2"] if command == "sweep" else [])) == 2
    captured = capsys.readouterr()
    assert "needs MLflow: pip install 'cifarlab[mlflow]'" in captured.err
    assert captured.out == "" and not out.exists()
