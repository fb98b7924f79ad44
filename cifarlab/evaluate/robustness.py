"""Does the model survive images that are not its test set? Accuracy under corruptions.

    r = robustness(trained, test_split, ["fog", "contrast"], [1, 3, 5], cache_dir)
    r = robustness_official(trained, "~/data/CIFAR-10-C", ["fog"], [1, 2, 3, 4, 5])

Either the run's own test images are corrupted here (cifarlab.data.corruptions: the 15
corruptions of CIFAR-10-C, deterministic, cached), or the official CIFAR-10-C release is
read from the user's folder (cifarlab.data.shift). Both give robustness.json's form:
clean_acc, corruptions (name -> severity -> accuracy), mean_corruption_acc (over every
corruption and severity evaluated) and the relative drop from clean.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch

from cifarlab.data import Split, default_cache_dir
from cifarlab.data.corruptions import FAMILIES, corrupted
from cifarlab.data.shift import cifar10c_block, read_cifar10c
from cifarlab.evaluate.trained import Trained, checkpoint_config
from cifarlab.training.batches import DeviceLoader
from cifarlab.training.evaluation import evaluate


def accuracy(t: Trained, images: torch.Tensor, labels: torch.Tensor, batch_size: int) -> float:
    """The model's accuracy on uint8 images, with the run's test-time augmentation."""
    cfg = checkpoint_config(t.ckpt)
    loader = DeviceLoader(Split(images, labels), batch_size, t.device, t.normalize)
    tta = cfg.tta if cfg is not None else "none"
    margin = cfg.tta_margin if cfg is not None else 1.0
    n = len(t.classes)
    return evaluate(t.model, loader, t.device, t.precision, n, tta=tta, tta_margin=margin).acc


def images_key(images: torch.Tensor) -> str:
    """A short hash of the images: the cache folder of their corrupted copies."""
    return hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()[:16]


def _summary(clean: float, table: dict[str, dict[str, float]], source: str, t0: float) -> dict:
    values = [acc for severities in table.values() for acc in severities.values()]
    mean = sum(values) / len(values)
    return {
        "source": source,
        "clean_acc": clean,
        "corruptions": table,
        "families": {name: FAMILIES[name] for name in table},
        "mean_corruption_acc": mean,
        "relative_drop": (clean - mean) / clean if clean else None,
        "seconds": time.perf_counter() - t0,
    }


def robustness(
    t: Trained,
    split: Split,
    names: list[str],
    severities: list[int],
    cache_dir: Path | None = None,
    batch_size: int = 1000,
    progress: bool = True,
    source: str = "generated from the run's test images",
) -> dict[str, Any]:
    """Accuracy on the run's test images under each corruption and severity (generated,
    cached under cache_dir, default ~/.cache/cifarlab/corruptions)."""
    t0 = time.perf_counter()
    cache_dir = cache_dir or default_cache_dir() / "corruptions"
    key = images_key(split.images)
    clean = accuracy(t, split.images, split.labels, batch_size)
    if progress:
        print(
            f"accuracy under corruptions ({source}; clean {100 * clean:.1f}%), "
            f"at severities {', '.join(map(str, severities))}:",
            flush=True,
        )
    table: dict[str, dict[str, float]] = {}
    for name in names:
        table[name] = {}
        for s in severities:
            images = corrupted(split.images, name, s, cache_dir, key)
            table[name][str(s)] = accuracy(t, images, split.labels, batch_size)
        if progress:
            accs = ", ".join(f"{100 * a:.1f}%" for a in table[name].values())
            print(f"  {name}: {accs}", flush=True)
    return _summary(clean, table, source, t0)


def robustness_official(
    t: Trained,
    folder: Path,
    names: list[str] | None,
    severities: list[int],
    clean: float,
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Accuracy on the official CIFAR-10-C files in `folder` (each corruption's blocks of
    the severities asked); clean: the accuracy on CIFAR-10's test set, for the drop."""
    t0 = time.perf_counter()
    labels, arrays = read_cifar10c(Path(folder), names)
    table = {
        name: {
            str(s): accuracy(t, *cifar10c_block(array, labels, s), batch_size) for s in severities
        }
        for name, array in arrays.items()
    }
    return _summary(clean, table, f"CIFAR-10-C files in {folder}", t0)
