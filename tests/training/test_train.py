import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cifarlab.cli.main import main
from cifarlab.config.options import TrainConfig, resolve
from cifarlab.config.parse import read_config_file
from cifarlab.errors import CifarlabError
from cifarlab.models.builtin import count_parameters
from cifarlab.models.registry import build_model
from cifarlab.runs.checkpoint import load_checkpoint
from cifarlab.training import batches as device_batches
from cifarlab.training.loop import train
from cifarlab.training.optim import lr_lambda
from cifarlab.training.trainer import NonFiniteLoss
from tests.conftest import copy_run


def small_cfg(data_dir, **kw) -> TrainConfig:
    base = dict(
        model="base",
        epochs=2,
        batch_size=50,
        lr=0.01,
        data_dir=str(data_dir),
        device="cpu",
        eval_batch_size=100,
    )
    return resolve(None, {**base, **kw})


@pytest.mark.parametrize("name,features", [("base", 3200), ("improved", 8192)])
def test_model_shapes(name, features):
    model = build_model(name).eval()
    x = torch.randn(4, 3, 32, 32)
    assert model(x).shape == (4, 10)
    flatten = [i for i, m in enumerate(model) if isinstance(m, torch.nn.Flatten)][0]
    assert model[: flatten + 1](x).shape == (4, features)


def test_base_spatial_sizes():
    model = build_model("base")
    x = torch.randn(1, 3, 32, 32)
    sizes = []
    for m in model:
        x = m(x)
        if x.dim() == 4:
            sizes.append(x.shape[-1])
    assert sizes[:4] == [30, 28, 28, 14] and sizes[-1] == 5


def test_unknown_model():
    with pytest.raises(CifarlabError, match="unknown model 'nope'"):
        build_model("nope")


def test_flip_crop_matches_torchvision():
    import torchvision.transforms.v2.functional as TF

    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    flip = torch.tensor([True, False, True, False, True, False])
    shift = torch.tensor([[0, 0], [8, 8], [3, 5], [4, 4], [8, 0], [1, 7]])
    out = device_batches.flip_crop(x, flip, shift)
    for i in range(6):
        img = TF.horizontal_flip(x[i]) if flip[i] else x[i]
        img = TF.pad(img, [4])
        img = TF.crop(img, int(shift[i, 0]), int(shift[i, 1]), 32, 32)
        assert torch.equal(out[i], img)


def test_loader_shards_and_covers():
    from cifarlab.data import Normalize, Split

    split = Split(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10))
    seen = []
    for rank in range(2):
        g = torch.Generator().manual_seed(3)
        loader = device_batches.DeviceLoader(
            split,
            2,
            torch.device("cpu"),
            Normalize([0.5] * 3, [0.2] * 3),
            shuffle=True,
            generator=g,
            rank=rank,
            world_size=2,
        )
        assert len(loader) == 3
        seen += [int(v) for _, y in loader for v in y]
    assert sorted(seen) == list(range(10))


def test_schedules():
    f = lr_lambda("onecycle", total_steps=10, warmup_steps=2)
    assert [round(f(s), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    assert lr_lambda("constant", 10, 0)(9) == 1.0
    assert lr_lambda("cosine", 10, 0)(5) == pytest.approx(0.5)


def test_training_lowers_loss_and_writes_run_folder(learnable_dir, tmp_path):
    out = tmp_path / "run"
    s = train(
        small_cfg(learnable_dir, epochs=3, lr=0.02, momentum=0.9, schedule="constant"),
        out,
        progress=False,
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert set(rows[0]) == {
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "seconds",
        "images_per_second",
        "lr_mean",  # the mean lr of the epoch's steps (TensorBoard's lr)
    }
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert s["test_acc"] > 0.5  # 10 classes: chance is 0.1
    summary = json.loads((out / "summary.json").read_text())
    for key in [
        "test_loss",
        "test_acc",
        "per_class_test_acc",
        "confusion_matrix",
        "total_seconds",
        "device",
        "torch_version",
        "parameters",
    ]:
        assert key in summary
    assert summary["parameters"] == count_parameters(build_model("base"))
    confusion = torch.tensor(summary["confusion_matrix"])
    assert confusion.sum() == summary["test_size"] == 100
    assert summary["test_acc"] == confusion.diag().sum() / 100
    assert json.loads((out / "config.json").read_text())["lr"] == 0.02
    with Image.open(out / "curves.png") as im:
        assert im.format == "PNG"
    ckpt = load_checkpoint(out)
    assert ckpt["epoch"] == 3 and ckpt["model"]["name"] == "base"


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        del r["seconds"], r["images_per_second"]
    return rows


@pytest.mark.parametrize("model", ["base", pytest.param("improved", marks=pytest.mark.slow)])
def test_same_seed_same_metrics(shared_runs, tmp_path, one_thread, model):
    """Trained again from the same seed: the shared run's metrics; another seed: others."""
    cfg = shared_runs.config(model)  # augmentation (and improved's dropout) draw random numbers
    train(cfg, tmp_path / "b", progress=False)
    train(cfg.replace(seed=1), tmp_path / "c", progress=False)
    assert _metrics(shared_runs(model)) == _metrics(tmp_path / "b")
    assert _metrics(shared_runs(model)) != _metrics(tmp_path / "c")


def test_resume_from_cli(base_run, tmp_path, monkeypatch, capsys):
    out = copy_run(base_run, tmp_path / "run")
    monkeypatch.setattr("sys.argv", ["cifarlab", "train", "--resume", str(out)])
    main()
    assert "already finished" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["cifarlab", "train", "--resume", str(out), "--lr", "1"])
    with pytest.raises(SystemExit):
        main()
    assert "drop --lr" in capsys.readouterr().err


def test_nan_loss_stops_with_epoch_and_step(cifar_dir, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"epoch 1, step \d+.*lower learning rate"):
        train(small_cfg(cifar_dir, lr=1e6, batch_size=10), out, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and "NaN" in summary["error"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--epochs", "-1"], "--epochs must be at least 1"),
        (["--lr", "0"], "--lr must be greater than 0"),
        (["--lr", "-0.1"], "--lr must be greater than 0"),
        (["--model", "resnet9000"], "unknown model 'resnet9000'"),
        (["--momentum", "1.5"], "--momentum must be in"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_invalid_options_rejected_before_work(tmp_path, monkeypatch, capsys, args, message):
    out = tmp_path / "run"
    monkeypatch.setattr("sys.argv", ["cifarlab", "train", "--out", str(out), *args])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_cuda_requested_without_cuda(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("sys.argv", ["cifarlab", "train", "--device", "cuda"])
    with pytest.raises(SystemExit):
        main()
    assert "CUDA is not available" in capsys.readouterr().err


def test_config_file_precedence(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("model: improved\nlr: 0.05\nepochs: 7\n")
    cfg = resolve(read_config_file(y), {"epochs": 2})
    assert (cfg.model, cfg.lr, cfg.epochs, cfg.augment) == ("improved", 0.05, 2, "flip-crop")
    t = tmp_path / "c.toml"
    t.write_text('model = "base"\nbatch-size = 128\n')
    assert resolve(read_config_file(t), {}).batch_size == 128


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("c.yaml", "lr: [1, 2\n", "is not valid"),
        ("c.yaml", "learning_rate: 0.1\n", "unknown option"),
        ("c.toml", "epochs = 'four'\n", "must be a whole number"),
        ("c.txt", "{}", "must end in .yaml, .yml, .json or .toml"),
    ],
)
def test_bad_config_files(tmp_path, name, text, message):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(CifarlabError, match=message):
        resolve(read_config_file(p), {})


def test_interrupted_checkpoint_write_keeps_the_old_one(tmp_path, monkeypatch):
    """A save interrupted after writing the new checkpoint to its temporary file, before
    renaming it over checkpoint.pt: the old checkpoint is intact and the temporary file is
    gone (a process killed outright leaves it hidden, and no load picks it up)."""
    import os

    from cifarlab.runs.checkpoint import make_checkpoint, save_checkpoint

    model = build_model("base")
    path = tmp_path / "checkpoint.pt"
    kw = dict(
        model_name="base",
        classes=list("abcdefghij"),
        input_size=[3, 32, 32],
        mean=[0.5] * 3,
        std=[0.2] * 3,
    )
    save_checkpoint(make_checkpoint(model, epoch=1, **kw), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]

    renamed = []

    class KilledAtRename:
        """cifarlab.files' `os`: the real module, but the process dies at os.replace."""

        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, src, dst):
            renamed.append((Path(src), Path(dst)))
            raise KeyboardInterrupt

    monkeypatch.setattr("cifarlab.files.os", KilledAtRename())  # the os module is untouched
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(make_checkpoint(model, epoch=2, **kw), path)
    monkeypatch.undo()

    ((tmp, dst),) = renamed
    assert dst == path and tmp.parent == tmp_path and tmp.name.startswith(".")
    assert not tmp.exists()  # the interrupted write removed its temporary file
    assert load_checkpoint(path)["epoch"] == 1 and load_checkpoint(tmp_path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    # the next save of this process takes the same temporary name: nothing is left over
    save_checkpoint(make_checkpoint(model, epoch=3, **kw), path)
    assert load_checkpoint(tmp_path)["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_json_config_file_reads_as_yaml_and_a_negative_seed_is_refused(tmp_path):
    """Issue 26, defect 10: JSON is YAML; --seed -1 is refused as `seeds` refuses it."""
    (tmp_path / "c.json").write_text('{"epochs": 3, "batch-size": 64}')
    assert read_config_file(tmp_path / "c.json") == {"epochs": 3, "batch_size": 64}
    with pytest.raises(CifarlabError, match="--seed must be at least 0"):
        resolve(None, {"seed": -1})
