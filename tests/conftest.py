"""Tiny synthetic CIFAR-10 copies, written in the real pickle format; runs trained once for
the whole test run and shared by the tests that only read them."""

from __future__ import annotations

import importlib
import json
import os
import pickle
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

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
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


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
    from cifarlab.cli.main import main

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
    from cifarlab.training.trainer import Trainer

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
    (recipe overrides, swept learning rates); seeds 5-6, a 3-epoch epoch study. The improved
    CNN's place trains the base CNN (its network and recipe, with that place's overrides):
    what these tests check is the pipeline, and the improved network's 10.5 million weights
    would make each study's runs, checkpoints and data audit (the features of every image)
    several seconds longer."""
    from cifarlab.study import run as study
    from cifarlab.study import spec

    plan = spec.StudySpec(
        title=spec.QUICK.title,
        models=[
            spec.ModelPlan("base", "base", "base CNN", *base),
            spec.ModelPlan("improved", "base", "improved CNN", *improved),
        ],
        seeds=[5, 6],
        epoch_study={"model": "base", "epochs": 3},
        seed_study={"model": "base"},
    )
    monkeypatch.setattr(spec, "QUICK", plan)
    monkeypatch.setattr(study, "QUICK", plan)
    return plan


# ----------------------------------------------------------- shared by the whole test run
#
# Data written and runs trained once for the whole test run (session fixtures), for the
# tests that only read them. A test must not write into them: it copies a run folder
# (shutil.copytree) first. Each checks at the end of the test run that nothing in it changed.


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder`: its size and modification time, by relative path."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


def assert_unchanged(folder: Path, before: dict[str, tuple[int, int]]) -> None:
    assert snapshot(folder) == before, f"a test wrote into the shared {folder}; copy it first"


def run_config(run: Path):
    """The TrainConfig a run folder recorded."""
    from cifarlab.config.options import from_dict

    return from_dict(json.loads((run / "config.json").read_text()))


def tiny_flags(data_dir: Path) -> dict[str, Any]:
    """One epoch of a few steps at fp32: the cheapest run that writes a whole run folder."""
    return {
        "data_dir": str(data_dir),
        "epochs": 1,
        "batch_size": 10,
        "eval_limit": 10,
        "precision": "fp32",
    }


def copy_run(run: Path, to: Path) -> Path:
    """A copy of a shared run folder, to write into."""
    shutil.copytree(run, to)
    return to


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, as the shared runs were trained: a run of the test then gives the
    shared run's numbers bit for bit. (Also much lighter on a small busy machine.)"""
    with torch_threads(1):
        yield


@contextmanager
def isolated_env(root: Path) -> Iterator[None]:
    """_no_env_data's environment, for a fixture that outlives one test; training's output
    is dropped (the test that happens to ask first does not see it)."""
    import contextlib
    import io

    with (
        pytest.MonkeyPatch.context() as mp,
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
    ):
        mp.delenv("CIFARLAB_DATA", raising=False)
        mp.setenv("XDG_CACHE_HOME", str(Path(root) / "cache"))
        yield


TINY_FAST = "fast-tiny"


@contextmanager
def fast_tiny_registered() -> Iterator[str]:
    """A narrow FastNet (widths 16/32/32) registered as "fast-tiny", for quick training."""
    from cifarlab.models.builtin import FastNet
    from cifarlab.models.registry import REGISTRY, ModelSpec

    spec = ModelSpec(TINY_FAST, "test", lambda num_classes=10: FastNet(num_classes, (16, 32, 32)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(REGISTRY, TINY_FAST, spec)
        yield TINY_FAST


@pytest.fixture
def tiny_fast() -> Iterator[str]:
    """The "fast-tiny" model, registered for the test."""
    with fast_tiny_registered() as name:
        yield name


@pytest.fixture(scope="session")
def shared_cifar_dir(tmp_path_factory) -> Iterator[Path]:
    """cifar_dir's data (50 train, 20 test random images), for the whole test run."""
    root = tmp_path_factory.mktemp("shared-cifar") / "data"
    write_cifar(root)
    before = snapshot(root)
    yield root
    assert_unchanged(root, before)


@pytest.fixture(scope="session")
def shared_learnable_dir(tmp_path_factory) -> Iterator[Path]:
    """learnable_dir's data (500 train, 200 test learnable images), for the whole test run."""
    root = tmp_path_factory.mktemp("shared-learnable") / "data"
    write_cifar(root, n_train=500, n_test=200, learnable=True)
    before = snapshot(root)
    yield root
    assert_unchanged(root, before)


def shared_run_values(name: str) -> tuple[str, dict[str, Any]]:
    """The data ("cifar": shared_cifar_dir, "learnable": shared_learnable_dir) and the
    options of shared run `name`."""
    from cifarlab.config.options import RECIPES

    tiny = dict(batch_size=10, lr=0.01, limit=20, eval_limit=10, eval_batch_size=100)
    runs = {
        # flip-crop augmentation draws random numbers (and `improved`'s dropout too)
        "base": ("cifar", dict(model="base", epochs=3, augment="flip-crop", **tiny)),
        "improved": ("cifar", dict(model="improved", epochs=2, augment="flip-crop", **tiny)),
        # the fast recipe at a few steps: BatchNorm, whitening (and its bias's own schedule),
        # alternating flips, translation, the triangle schedule, test-time augmentation and
        # lookahead (5 steps an epoch: the average starts at step 10, in epoch 2)
        "fast": (
            "learnable",
            {
                **RECIPES["fast"],
                "model": TINY_FAST,
                "epochs": 4,
                "batch_size": 20,
                "lr": 0.2,
                "warmup_epochs": 0.5,
                "limit": 100,
                "precision": "fp32",
                "eval_batch_size": 100,
            },
        ),
        # --optimizer muon (Muon's momentum, and two schedules)
        "fast-muon": (
            "learnable",
            {
                **RECIPES["fast-muon"],
                "model": TINY_FAST,
                "epochs": 3,
                "batch_size": 40,
                "limit": 200,
                "precision": "fp32",
                "eval_batch_size": 100,
            },
        ),
        # Adam's two moments and step counts
        "adam": (
            "cifar",
            dict(
                model="base",
                epochs=3,
                optimizer="adam",
                betas="0.8,0.99",
                weight_decay=5e-4,
                augment="flip-crop",
                **{**tiny, "lr": 1e-3},
            ),
        ),
        # AdamW, and every batch regularizer drawing from its own generator (random erasing,
        # MixUp or CutMix per batch, with label smoothing); early stopping's counter: at a
        # tiny lr the validation accuracy stays where it was, so the run stops after epoch 3
        # of 5 (the best is epoch 1's)
        "regularized": (
            "cifar",
            dict(
                model="base",
                epochs=5,
                optimizer="adamw",
                augment="flip-crop",
                random_erasing=0.5,
                mixup=0.4,
                cutmix=1.0,
                label_smoothing=0.1,
                early_stop=2,
                **{**tiny, "lr": 1e-7},
            ),
        ),
    }
    # the fast-cpu recipe: fast-muon with each step's gradient summed over micro-batches (15,
    # 15 and 10: BatchNorm's averages moved three times a step) and TTA only for the unsure
    # images; 4 epochs, so that the whitening bias stops its gradient (epoch 4) after a resume,
    # blocks 1 and 2 freeze after epochs 2 and 3 (--freeze-from 0.5), and epochs 2 and 3
    # leave out some of the images learned well (--prune-easy 0.5: a resume at epoch 3 needs
    # the images' scores)
    runs["fast-cpu"] = (
        "learnable",
        {
            **RECIPES["fast-cpu"],
            "model": TINY_FAST,
            "epochs": 4,
            "batch_size": 40,
            "micro_batch": 15,
            "freeze_from": 0.5,
            "prune_easy": 0.5,
            "limit": 200,
            "precision": "fp32",
            "eval_batch_size": 100,
        },
    )
    return runs[name]


class SharedRuns:
    """shared_runs(name): the folder of run `name` (see shared_run_values), trained
    uninterrupted with one torch thread, once for the whole test run, when a test first
    asks for it; shared_runs.config(name): its config."""

    def __init__(self, root: Path, data: dict[str, Path]) -> None:
        self.root, self.data = root, data
        self.done: dict[str, tuple[Path, dict]] = {}

    def config(self, name: str):
        from cifarlab.config.options import resolve

        kind, values = shared_run_values(name)
        with fast_tiny_registered():
            return resolve(None, {**values, "data_dir": str(self.data[kind]), "device": "cpu"})

    def __call__(self, name: str) -> Path:
        if name not in self.done:
            from cifarlab.training.loop import train

            out = self.root / name
            with isolated_env(self.root), fast_tiny_registered(), torch_threads(1):
                train(self.config(name), out, progress=False)
            self.done[name] = (out, snapshot(out))
        return self.done[name][0]


@pytest.fixture(scope="session")
def shared_runs(tmp_path_factory, shared_cifar_dir, shared_learnable_dir) -> Iterator[SharedRuns]:
    data = {"cifar": shared_cifar_dir, "learnable": shared_learnable_dir}
    runs = SharedRuns(tmp_path_factory.mktemp("shared-runs"), data)
    yield runs
    for out, before in runs.done.values():
        assert_unchanged(out, before)


@pytest.fixture(scope="session")
def base_run(tmp_path_factory) -> Iterator[Path]:
    """A base CNN trained 1 epoch on 50 images; 40 test images, its split: 12 val, 12 test.
    For the whole test run: evaluate, predict and export it; copy it to write into it."""
    from cifarlab.config.options import resolve
    from cifarlab.training.loop import train

    root = tmp_path_factory.mktemp("base-run")
    write_cifar(root / "data", n_train=50, n_test=40)
    cfg = dict(model="base", epochs=1, batch_size=25, lr=0.01, data_dir=str(root / "data"))
    cfg.update(device="cpu", eval_limit=12, eval_batch_size=5)
    with isolated_env(root):
        train(resolve(None, cfg), root / "run", progress=False)
    before = snapshot(root / "run")
    yield root / "run"
    assert_unchanged(root / "run", before)


SWEEP_FLAGS = dict(model="base", epochs=2, batch_size=25, limit=50, eval_limit=10, device="cpu")
SWEEP_GRID = {"lr": [0.01, 0.02]}


@pytest.fixture(scope="session")
def shared_sweep(tmp_path_factory, shared_cifar_dir) -> Iterator[SimpleNamespace]:
    """`cifarlab sweep --lr 0.01,0.02` of the base CNN (SWEEP_FLAGS) into `.out`, its
    `.result`, `.flags` and `.grid`: run once for the whole test run (copy `.out` to write
    into it)."""
    from cifarlab.experiments import runner as many_runs
    from cifarlab.experiments import sweeps as experiments

    root = tmp_path_factory.mktemp("shared-sweep")
    flags = {**SWEEP_FLAGS, "data_dir": str(shared_cifar_dir)}
    with isolated_env(root):
        runner = many_runs.Runner(progress=False)
        result = experiments.sweep(flags, SWEEP_GRID, root / "sweep", runner=runner)
    before = snapshot(root / "sweep")
    yield SimpleNamespace(out=root / "sweep", result=result, flags=flags, grid=SWEEP_GRID)
    assert_unchanged(root / "sweep", before)


@pytest.fixture(scope="module")
def local_ray(request: pytest.FixtureRequest) -> Iterator[None]:
    """A local Ray with 2 CPUs for the test module (its executors use it and leave it
    running); the functions the module defines are sent to Ray's workers by value."""
    ray = optional("ray", "ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    ray.cloudpickle.register_pickle_by_value(request.module)
    yield
    ray.shutdown()


SLOW_FIXTURES = {"server", "local_ray"}  # an MLflow server, a local Ray


# The modules that take longest, in seconds of one worker (measured on a 2-core AMD EPYC,
# 2026-12-06). pytest-xdist hands whole modules to its workers in the order collected
# (--no-loadscope-reorder in pyproject.toml): the longest go first, so that the workers
# finish together instead of one waiting while the other runs a long module last. A module
# missing here only runs later than it might.
LONGEST = {
    "tests/tune/test_ray_tune.py": 75,
    "tests/tune/test_tune.py": 69,
    "tests/docs/test_tutorial_examples.py": 57,
    "tests/experiments/test_ray.py": 40,
    "tests/docs/test_examples.py": 38,
    "tests/training/test_distributed.py": 38,
    "tests/experiments/test_jobs.py": 31,
    "tests/runs/test_mlflow.py": 29,
    "tests/report/test_figures_text.py": 28,
    "tests/training/test_resume.py": 23,
    "tests/experiments/test_sweeps_and_studies.py": 21,
    "tests/audit/test_audit.py": 20,
    "tests/docs/test_site.py": 20,
    "tests/experiments/test_compare.py": 16,
    "tests/training/test_train.py": 14,
    "tests/data/test_datasets.py": 13,
    "tests/models/test_plugins.py": 11,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that starts a server or a cluster must be marked slow: -m "not slow" is the
    quick loop. The longest modules (LONGEST) run first."""
    for item in items:
        uses = SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
        if uses and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {', '.join(sorted(uses))}: mark it slow")
    items.sort(key=lambda item: -LONGEST.get(item.nodeid.split("::")[0], 0))  # stable
