"""Tiny synthetic CIFAR-10 copies, written in the real pickle format."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip


def write_cifar(
    root: Path, n_train: int = 50, n_test: int = 20, seed: int = 0, learnable: bool = False
) -> Path:
    """Write cifar-10-batches-py/ under `root` with n_train (over 5 batches) and n_test images.

    With learnable=True each class gets its own colour and stripe pattern plus noise, so a
    model can learn it in a few steps.
    """
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def make(n: int) -> tuple[np.ndarray, list[int]]:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        if learnable:
            base = np.zeros((n, 3, 32, 32), dtype=np.float64)
            for k in range(10):
                idx = labels == k
                base[idx, k % 3] += 120
                base[idx, :, :: (k // 3) + 2, :] += 80
            base += rng.normal(0, 30, size=base.shape)
            data = np.clip(base, 0, 255).astype(np.uint8).reshape(n, 3072)
        else:
            data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        return data, labels.tolist()

    def dump(name: str, data: np.ndarray, labels: list[int]) -> None:
        obj = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"{name}_{i:05d}.png".encode() for i in range(len(labels))],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f)

    data, labels = make(n_train)
    for i, chunk in enumerate(np.array_split(np.arange(n_train), 5), start=1):
        dump(f"data_batch_{i}", data[chunk], [labels[j] for j in chunk])
    data, labels = make(n_test)
    dump("test_batch", data, labels)
    meta = {
        b"label_names": [c.encode() for c in CLASSES],
        b"num_cases_per_batch": n_train // 5,
        b"num_vis": 3072,
    }
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


@pytest.fixture
def cifar_dir(tmp_path: Path) -> Path:
    """Parent folder of a tiny random cifar-10-batches-py (50 train, 20 test images)."""
    write_cifar(tmp_path / "data")
    return tmp_path / "data"


@pytest.fixture
def learnable_dir(tmp_path: Path) -> Path:
    """Parent folder of a small learnable synthetic CIFAR-10 (500 train, 200 test)."""
    write_cifar(tmp_path / "data", n_train=500, n_test=200, learnable=True)
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _no_env_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the user's data or cache, and never download."""
    monkeypatch.delenv("CIFARLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@contextmanager
def killed_at_epoch(epoch: int) -> Iterator[None]:
    """Training inside this block dies (KeyboardInterrupt) when it reaches `epoch`, as a
    killed process would, after the checkpoint of the epoch before was written."""
    from cifarlab.trainer import Trainer

    real = Trainer.train_epoch

    def crash(self):
        if self.epoch + 1 == epoch:
            raise KeyboardInterrupt
        return real(self)

    Trainer.train_epoch = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        Trainer.train_epoch = real
