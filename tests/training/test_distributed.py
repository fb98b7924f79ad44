"""Data-parallel training under torchrun, on CPU with gloo.

The equivalence tests start `python -m torch.distributed.run` as a subprocess with two
processes and compare with one process at the same global batch. That is exact up to
float rounding: the loader hands rank r images r, r+2, ... of each global batch and
draws the augmentation for the whole global batch (so both ranks draw the same numbers
and see exactly what one process sees), DDP averages the two half-batch mean gradients
(= the global-batch mean gradient), and the metrics are sums over both ranks. The model
is `base` (no dropout, whose masks would differ per rank, and no BatchNorm) at fp32.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cifarlab.cli.main import main
from cifarlab.config.options import RECIPES, resolve
from cifarlab.data import Normalize, Split
from cifarlab.runs.checkpoint import load_checkpoint
from cifarlab.training import batches as device_batches
from cifarlab.training.loop import train
from tests.conftest import killed_at_epoch, write_cifar

RUN_FILES = {
    "config.json",
    "metrics.jsonl",
    "checkpoint.pt",
    "curves.png",
    "summary.json",
    "confusion_matrix.png",
    "test_predictions.npz",
    "tb",
}
ARGS = dict(
    model="base",
    epochs=2,
    batch_size=40,
    lr=0.02,
    momentum=0.9,
    limit=160,
    eval_limit=50,
    augment="flip-crop",
    device="cpu",
    precision="fp32",
)


def flags(values: dict) -> list[str]:
    out = []
    for k, v in values.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(flag if v else flag.replace("--", "--no-", 1))
        else:
            out += [flag, str(v)]
    return out


def torchrun(args: list[str], cwd: Path, nproc: int = 2, timeout: float = 120):
    """Run `torchrun --standalone --nproc_per_node=N ARGS`; kill its whole process group if
    it outlives `timeout` (a hang is a failure, and leaves no processes behind)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", *args]
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"torchrun did not finish within {timeout} s (a rank hangs?)")
    return proc.returncode, out, err


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in rows:
        del r["seconds"], r["images_per_second"]
    return rows


def assert_same_run(one: Path, two: Path, tol: float = 1e-4) -> None:
    a, b = metrics(one), metrics(two)
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        for key in ra:
            if ra[key] is None:  # no validation split
                assert rb[key] is None, key
            else:
                assert rb[key] == pytest.approx(ra[key], rel=tol, abs=tol), key
    wa, wb = load_checkpoint(one)["state_dict"], load_checkpoint(two)["state_dict"]
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=tol, rtol=tol), k
    sa = json.loads((one / "summary.json").read_text())
    sb = json.loads((two / "summary.json").read_text())
    assert sb["test_loss"] == pytest.approx(sa["test_loss"], rel=tol)
    assert sb["test_size"] == sa["test_size"]
    assert abs(sb["test_acc"] - sa["test_acc"]) <= 1.5 / sa["test_size"]  # one image at most
    pa, pb = np.load(one / "test_predictions.npz"), np.load(two / "test_predictions.npz")
    assert np.array_equal(pa["index"], pb["index"]) and np.array_equal(pa["labels"], pb["labels"])
    assert np.allclose(pa["probabilities"], pb["probabilities"], atol=1e-3)  # every rank's shard


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread, as torchrun gives each worker: far faster on a small busy
    machine (no threads waiting for each other), and lighter on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_cifar(root, n_train=200, n_test=100, learnable=True)
    return root


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> Path:
    """The single-process run every distributed run is compared with."""
    import torch.distributed as dist

    out = tmp_path_factory.mktemp("ref") / "one"
    s = train(resolve(None, {**ARGS, "data_dir": str(data_dir)}), out, progress=False)
    # one process: no process group, no per-rank RNG states
    assert s["world_size"] == 1 and not dist.is_initialized()
    assert "ranks" not in load_checkpoint(out)["rng"]
    return out


def test_ranks_draw_the_same_batches_as_one_process():
    """Rank loaders interleaved give the single-process batches, augmentation included,
    epoch after epoch (so all ranks draw the same permutation and stay in step)."""
    split = Split(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8), torch.arange(20))

    def loader(batch, rank=0, world=1):
        g = torch.Generator().manual_seed(5)
        return device_batches.DeviceLoader(
            split,
            batch,
            torch.device("cpu"),
            Normalize([0.5] * 3, [0.25] * 3),
            shuffle=True,
            augment="flip-crop",
            generator=g,
            rank=rank,
            world_size=world,
        )

    one, ranks = loader(8), [loader(4, r, 2) for r in range(2)]
    for _epoch in range(3):
        single = list(one)
        shards = [list(r) for r in ranks]
        assert len(single) == len(shards[0]) == len(shards[1]) == 3
        for i, (x, y) in enumerate(single):
            (x0, y0), (x1, y1) = shards[0][i], shards[1][i]
            assert torch.equal(y[0::2], y0) and torch.equal(y[1::2], y1)
            assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)


@pytest.mark.slow
def test_two_processes_match_one_and_only_rank_0_writes(data_dir, reference, tmp_path):
    tmp_path = tmp_path / "work"  # (tmp_path itself holds the test's cache folder)
    tmp_path.mkdir()
    code, out, err = torchrun(
        [
            "-m",
            "cifarlab",
            "train",
            "--quiet",
            "--out",
            "two",
            "--data-dir",
            str(data_dir),
            *flags(ARGS),
        ],
        cwd=tmp_path,
    )
    assert code == 0, err[-3000:]
    assert sorted(os.listdir(tmp_path)) == ["two"]  # no stray files or run folders
    assert set(os.listdir(tmp_path / "two")) == RUN_FILES
    assert len(os.listdir(tmp_path / "two" / "tb")) == 1  # one event file: rank 0's
    assert out.count("epoch   1/2") == 1 and out.count("test accuracy") == 1  # rank 0 prints
    assert "x 2 processes (global batch 40)" in out
    assert_same_run(reference, tmp_path / "two")
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["status"] == "finished"
    assert len(load_checkpoint(tmp_path / "two")["rng"]["ranks"]) == 2


FAST = dict(
    RECIPES["fast"],
    model="fast",
    epochs=3,
    batch_size=10,
    lr=0.2,
    warmup_epochs=0.5,
    limit=40,
    eval_limit=20,
    device="cpu",
    precision="fp32",
    sync_bn=True,
)


@pytest.mark.slow
def test_resume_under_torchrun_with_sync_bn(data_dir, tmp_path, monkeypatch):
    """The fast recipe (BatchNorm, whitening, alternating flips, translation, weight
    averaging, test-time augmentation) with --sync-bn: a one-process run cut after epoch
    2 and finished by two processes (every rank loads the checkpoint; each normalizes
    over the global batch of 10, not its own 5) ends as the uninterrupted run."""
    cfg = resolve(None, {**FAST, "data_dir": str(data_dir)})
    train(cfg, tmp_path / "one", progress=False)
    with killed_at_epoch(3):
        train(cfg, tmp_path / "cut", progress=False)
    assert load_checkpoint(tmp_path / "cut")["lookahead_started"] is True
    code, out, err = torchrun(
        ["-m", "cifarlab", "train", "--quiet", "--resume", "cut", "--data-dir", str(data_dir)],
        cwd=tmp_path,
    )
    assert code == 0, err[-3000:]
    assert out.count("resuming") == 1
    assert set(os.listdir(tmp_path / "cut")) == RUN_FILES
    assert_same_run(tmp_path / "one", tmp_path / "cut", tol=1e-3)


NAN_ON_RANK_1 = """
import os
import torch
from cifarlab.training import trainer as T

real = T.build_model

def build(name, **kw):
    model = real(name, **kw)
    if os.environ["RANK"] == "1":
        calls = [0]

        def hook(module, inputs, output):
            if module.training:
                calls[0] += 1
                if calls[0] == 3:
                    return output * float("nan")

        model.register_forward_hook(hook)
    return model

T.build_model = build
from cifarlab.cli.main import main

main()
"""


@pytest.mark.slow
def test_nan_on_one_rank_stops_every_rank(data_dir, tmp_path):
    """Rank 1 alone gets a NaN loss at step 3: both ranks stop there (no rank waits for
    the other until a timeout), rank 0 reports it once and records the failure."""
    script = tmp_path / "nan_on_rank_1.py"
    script.write_text(NAN_ON_RANK_1)
    args = {**ARGS, "epochs": 3}
    code, out, err = torchrun(
        [
            str(script),
            "train",
            "--quiet",
            "--out",
            "run",
            "--data-dir",
            str(data_dir),
            "--dist-timeout",
            "60",
            *flags(args),
        ],
        cwd=tmp_path,
    )
    assert code != 0
    assert err.count("error: the loss became NaN or infinite at epoch 1, step 3") == 1, err
    assert "error (rank" not in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "step 3" in summary["error"]


@pytest.mark.parametrize("rank,printed", [("0", True), ("1", False)])
def test_global_batch_must_divide(tmp_path, monkeypatch, capsys, data_dir, rank, printed):
    """Checked before any process group exists; one clear line, from rank 0 only."""
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("LOCAL_RANK", rank)
    out = tmp_path / "run"
    argv = ["cifarlab", "train", "--out", str(out), "--data-dir", str(data_dir)]
    monkeypatch.setattr("sys.argv", [*argv, *flags({**ARGS, "batch_size": 40})])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    if printed:
        assert err == (
            "error: --batch-size 40 is the global batch and must divide evenly among 3 "
            "processes; use a multiple of 3 (e.g. 39 or 42)\n"
        )
    else:
        assert err == ""
    assert not out.exists()
