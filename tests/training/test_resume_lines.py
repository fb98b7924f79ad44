"""What a resumed run says: afresh when it was killed before its first checkpoint, else the epoch
it goes on from."""

from __future__ import annotations

import json

from tests.conftest import cli


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_afresh(
    cifar_dir, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(
        json.dumps(
            {
                "model": "base",
                "epochs": 1,
                "batch_size": 10,
                "eval_limit": 10,
                "precision": "fp32",
                "data_dir": str(cifar_dir),
            }
        )
    )
    assert cli(monkeypatch, "train", "--resume", run) == 0
    out = capsys.readouterr().out
    assert "has no checkpoint yet" in out and "starting it afresh" in out
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"
    assert cli(monkeypatch, "train", "--resume", tmp_path / "nothing") == 2
    assert "no run there" in capsys.readouterr().err


def test_a_resumed_run_says_at_which_epoch(cifar_dir, tmp_path, monkeypatch, capsys):
    from cifarlab.training.trainer import Trainer

    real = Trainer.train_epoch

    def killed_at_epoch_2(self):
        if self.epoch == 1:
            raise KeyboardInterrupt
        return real(self)

    run = tmp_path / "run"
    args = [
        "train",
        "--data-dir",
        cifar_dir,
        "--epochs",
        "2",
        "--batch-size",
        "10",
        "--eval-limit",
        "10",
        "--precision",
        "fp32",
        "--out",
        run,
        "--quiet",
    ]
    monkeypatch.setattr(Trainer, "train_epoch", killed_at_epoch_2)
    assert cli(monkeypatch, *args) == 130  # interrupted after epoch 1's checkpoint
    monkeypatch.setattr(Trainer, "train_epoch", real)
    capsys.readouterr()
    assert cli(monkeypatch, "train", "--resume", run) == 0
    assert "resuming at epoch 2 of 2" in capsys.readouterr().out


def test_resume_of_a_run_another_process_trains_says_so_first(
    cifar_dir, tmp_path, monkeypatch, capsys
):
    """The lock is checked before the notice and before the data loads (issue 26, defect 7)."""
    import fcntl
    import os

    from cifarlab.training import loop

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "base", "data_dir": str(cifar_dir)}))
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT)  # as another process's lock
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"pid": 4242, "host": "elsewhere"}).encode())
    monkeypatch.setattr(loop, "load_dataset", lambda **kw: 1 / 0)  # never reached
    try:
        assert cli(monkeypatch, "train", "--resume", run) == 2
    finally:
        os.close(fd)
    captured = capsys.readouterr()
    assert "being trained by process 4242 on elsewhere" in captured.err
    assert "starting it afresh" not in captured.out
