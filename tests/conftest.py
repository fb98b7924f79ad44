"""Tiny synthetic CIFAR-10 copies, written in the real pickle format."""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# One thread per process (torch's, OpenMP's, BLAS's), unless OMP_NUM_THREADS says otherwise:
# the tests' models are tiny, and on a small machine shared with other work, threads that
# wait for each other make the suite several times slower. Set before numpy and torch load;
# subprocesses (torchrun, --jobs workers, Ray) inherit it.
THREADS = int(os.environ.setdefault("OMP_NUM_THREADS", "1"))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# A local Ray started by the tests listens on the loopback interface only (Ray reads this
# when it is imported, so it is set before any test module loads).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

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


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    """THREADS torch threads, even where torch was loaded before this file."""
    import torch

    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def _no_env_data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the user's data or cache, and never download."""
    monkeypatch.delenv("CIFARLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def cli(monkeypatch: pytest.MonkeyPatch, *args) -> int:
    """Run `cifarlab ARGS` in this process; its exit status (0 when it returns)."""
    from cifarlab.cli import main

    monkeypatch.setattr("sys.argv", ["cifarlab", *map(str, args)])
    try:
        main()
    except SystemExit as e:
        return int(e.code or 0)
    return 0


@contextmanager
def killed_at_epoch(epoch: int) -> Iterator[None]:
    """Training inside this block dies (KeyboardInterrupt) when it reaches `epoch`, as a
    killed process would, after the checkpoint of the epoch before was written."""
    from cifarlab.train_step import Trainer

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


def write_cifar100(root: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> Path:
    """cifar-100-python/ (train, test, meta) under `root`, in the official pickle layout."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = (np.arange(n) % 100).tolist()
        obj = {
            b"filenames": [f"{name}_{i}.png".encode() for i in range(n)],
            b"batch_label": name.encode(),
            b"fine_labels": fine,
            b"coarse_labels": [f // 5 for f in fine],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(obj, f)
    meta = {
        b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
    }
    with open(folder / "meta", "wb") as f:
        pickle.dump(meta, f)
    return folder


def write_idx(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = True) -> Path:
    """The four MNIST idx files (gzipped or not) in `folder`: 28x28 grey images whose
    brightness and a bar position tell the digit, so a model can learn them."""
    import gzip

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def images(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = (np.arange(n) % 10).astype(np.uint8)
        x = rng.normal(20, 10, size=(n, 28, 28))
        for i, k in enumerate(labels):
            x[i, 2 * k : 2 * k + 4, :] += 200
        return np.clip(x, 0, 255).astype(np.uint8), labels

    def dump(name: str, magic: int, array: np.ndarray) -> None:
        head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
        raw = head + array.tobytes()
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(raw) if gz else raw)

    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x, y = images(n)
        dump(f"{prefix}-images-idx3-ubyte", 2051, x)
        dump(f"{prefix}-labels-idx1-ubyte", 2049, y)
    return folder


def write_imagefolder(
    root: Path, classes=("cat", "dog", "owl"), per_class: int = 6, test: bool = True
) -> Path:
    """root/train/<class>/*.png|*.jpg (and test/): coloured images, a different colour per
    class, sizes 20..40 px; PNG and JPEG alternate."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    for split in ("train", "test") if test else ("train",):
        for k, name in enumerate(classes):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                size = int(rng.integers(20, 41))
                a = np.clip(rng.normal(colours[k % 4], 20, (size, size, 3)), 0, 255)
                ext = "png" if i % 2 == 0 else "jpg"
                Image.fromarray(a.astype(np.uint8)).save(folder / f"{i:03d}.{ext}")
    return Path(root)


def optional(module: str, extra: str):
    """An optional package the tests need: where it is not installed its tests are skipped,
    with the reason, except under CI (CI set), which installs every extra: there it fails."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    reason = f"{module} is not installed: pip install 'cifarlab[{extra}]'"
    return pytest.importorskip(module, reason=reason)


def use_quick_plan(
    monkeypatch: pytest.MonkeyPatch, base: tuple[dict, list], improved: tuple[dict, list]
):
    """Make `study --quick` the original study's pipeline at a tiny size: each model's
    (recipe overrides, swept learning rates); seeds 5-6, a 3-epoch epoch study."""
    from cifarlab import spec, study

    plan = spec.StudySpec(
        title=spec.QUICK.title,
        models=[spec.ModelPlan("base", "base", "base CNN", *base),
                spec.ModelPlan("improved", "improved", "improved CNN", *improved)],
        seeds=[5, 6],
        epoch_study={"model": "base", "epochs": 3},
        seed_study={"model": "base"},
    )  # fmt: skip
    monkeypatch.setattr(spec, "QUICK", plan)
    monkeypatch.setattr(study, "QUICK", plan)
    return plan


SLOW_FIXTURES = {"server", "local_ray"}  # an MLflow server, a local Ray


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a server or a cluster must be marked slow: -m "not slow" is the
    quick loop."""
    for item in items:
        uses = SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(uses))}: mark it slow")
