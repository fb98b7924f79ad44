"""Use a trained model: evaluate it on its data, predict image files.

Everything starts from a checkpoint (a run folder or a checkpoint file). It holds the model's
name and arguments, the weights, the class names and the normalization, so rebuilding the
model needs no config and no dataset.

    t = load_trained("runs/train-x")                        # model on a device, eval mode
    report, result = evaluate_trained(t, load_cifar10(d))   # the run's own test split
    for p in predict_files(t, find_images(["photos/"])[0]): ...

Export is cifarlab.evaluate.export.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cifarlab.config.choices import SPLITS as SPLITS
from cifarlab.config.options import FIELD_NAMES, PRECISIONS, RENAMED, TrainConfig
from cifarlab.data import Dataset, Normalize, Split, dataset_spec, make_splits
from cifarlab.data.images import load_image
from cifarlab.errors import CifarlabError
from cifarlab.report.format import percent
from cifarlab.runs.checkpoint import load_checkpoint, model_from_checkpoint, resolve_checkpoint_path
from cifarlab.training.batches import DeviceLoader
from cifarlab.training.evaluation import EvalResult, evaluate
from cifarlab.training.hardware import pick_device
from cifarlab.training.precision import Precision

# ------------------------------------------------------------------------------ loading


@dataclass
class Trained:
    """A checkpoint's model in eval mode on `device`, run at `precision` (every command
    that runs it: evaluate, predict, explain)."""

    path: Path
    ckpt: dict[str, Any]
    model: nn.Module
    device: torch.device
    precision: Precision  # may be given by name ("bf16"): kept as a Precision

    def __post_init__(self) -> None:
        if isinstance(self.precision, str):
            self.precision = Precision(self.precision, self.device.type)

    @property
    def classes(self) -> list[str]:
        return list(self.ckpt["classes"])

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images the model was trained on."""
        return tuple(self.ckpt.get("input_size", (3, 32, 32)))

    @cached_property
    def normalize(self) -> Normalize:
        """uint8 (B, 3, 32, 32) on this device -> the model's input (the run's mean/std)."""
        return normalization(self.ckpt).to(self.device)


def normalization(ckpt: dict[str, Any]) -> Normalize:
    """The normalization a checkpoint's model was trained with."""
    return Normalize(ckpt["mean"], ckpt["std"])


def checkpoint_config(ckpt: dict[str, Any]) -> TrainConfig | None:
    """The training config stored in a checkpoint (unknown keys dropped), if any."""
    values = ckpt.get("config")
    if not isinstance(values, dict):
        return None
    values = {RENAMED.get(k, k): v for k, v in values.items()}
    return TrainConfig(**{k: v for k, v in values.items() if k in FIELD_NAMES})


def run_dataset_args(ckpt: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """load_dataset's arguments for evaluating a checkpoint: the run's own dataset and its
    options, with those given on the command line on top (another --dataset starts from
    that dataset's defaults). The data folder: --data-dir, else the run's own (as recorded,
    relative to the current folder) where it still exists, else the default."""
    cfg = checkpoint_config(ckpt) or TrainConfig()
    keys = ("dataset", "labels", "image_size", "test_fraction")
    own = {k: getattr(cfg, k) for k in keys}
    if given.get("dataset", cfg.dataset) != cfg.dataset:
        own = {}
    elif given.get("data_dir") is None and cfg.data_dir is not None:
        own["data_dir"] = recorded_data_dir(cfg)
    return TrainConfig(**{**own, **given}).dataset_args()


def recorded_data_dir(cfg: TrainConfig) -> str | None:
    """The run's data folder as its config records it, where that still exists; None (the
    default place) where it does not and the dataset can be downloaded; else an error."""
    if Path(cfg.data_dir).expanduser().is_dir():
        return cfg.data_dir
    if dataset_spec(cfg.dataset).download is not None:
        return None
    raise CifarlabError(
        f"the run's data was at {cfg.data_dir} (as its config records it, relative to where "
        f"the run started), which is not there from {Path.cwd()}; pass --data-dir with the "
        "folder the run trained on"
    )


def run_precision(ckpt: dict[str, Any], path: Path, device: torch.device) -> Precision:
    """The precision the run itself used on this kind of device, so its numbers repeat.

    From the run's summary.json next to the checkpoint when it ran on the same kind of
    device, else the config's --precision, else auto.
    """
    try:
        summary = json.loads((path.parent / "summary.json").read_text())
    except (OSError, ValueError):
        summary = None
    same_device = isinstance(summary, dict) and summary.get("device") == device.type
    if same_device and summary.get("precision") in PRECISIONS:
        return Precision.choose(summary["precision"], device)
    cfg = checkpoint_config(ckpt)
    try:
        return Precision.choose(cfg.precision if cfg else "auto", device)
    except CifarlabError:
        return Precision.choose("auto", device)


def load_trained(
    run_or_checkpoint: str | os.PathLike,
    device: str = "auto",
    precision: str | None = None,
    model: str | None = None,
) -> Trained:
    """Load a checkpoint and rebuild its model; precision None means the run's own.
    model: the user's --model, needed for a model whose code is outside cifarlab."""
    path = resolve_checkpoint_path(run_or_checkpoint)
    ckpt = load_checkpoint(path)
    dev = pick_device(device)
    prec = Precision.choose(precision, dev) if precision else run_precision(ckpt, path, dev)
    net = model_from_checkpoint(ckpt, model).to(dev, memory_format=torch.channels_last)
    return Trained(path, ckpt, net, dev, prec)


# ----------------------------------------------------------------------------- evaluate


def evaluation_split(ckpt: dict[str, Any], data: Dataset, split: str = "test") -> Split:
    """test/val: the run's own split, rebuilt from its config as training built it;
    full-test: the whole CIFAR-10 test set."""
    if split == "full-test":
        return data.test
    if split not in SPLITS:
        raise CifarlabError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    cfg = checkpoint_config(ckpt)
    if cfg is None:
        raise CifarlabError(
            f"the checkpoint holds no training config, so its {split} split is unknown; "
            "use --split full-test"
        )
    return getattr(make_splits(data, **cfg.split_args()), split)


def per_class_metrics(confusion: torch.Tensor, classes: list[str]) -> dict[str, dict]:
    """Precision and recall per class from a confusion matrix (rows true, columns predicted).

    "accuracy" is the fraction of the class's images classified correctly, as in a run's
    summary.json (per_class_test_acc); it equals the recall.
    """
    c = confusion.to(torch.float64)
    tp, support, predicted = c.diag(), c.sum(1), c.sum(0)
    precision = (tp / predicted.clamp(min=1)).tolist()
    recall = (tp / support.clamp(min=1)).tolist()
    return {
        name: {
            "images": int(support[i]),
            "predicted": int(predicted[i]),
            "precision": precision[i],
            "recall": recall[i],
            "accuracy": recall[i],
        }
        for i, name in enumerate(classes)
    }


def check_classes(t: Trained, data: Dataset, what: str = "evaluate") -> None:
    """One line where the data's classes are not the checkpoint's."""
    if list(data.classes) != t.classes:

        def names(c: list[str]) -> str:
            return f"{len(c)}: " + ", ".join(c[:5]) + (", ..." if len(c) > 5 else "")

        raise CifarlabError(
            f"the dataset's classes ({names(data.classes)}) are not the checkpoint's "
            f"({names(t.classes)}); {what} on the data the model was trained for"
        )


def evaluate_images(
    t: Trained, images: Split, batch_size: int | None = None, tta: bool = True
) -> EvalResult:
    """The model over `images` as its run tested: its eval batch size (unless given), its
    test-time augmentation (tta=False: none, as training's validation), its precision."""
    cfg = checkpoint_config(t.ckpt)
    batch_size = batch_size or (cfg.eval_batch_size if cfg else 1000)
    loader = DeviceLoader(images, batch_size, t.device, t.normalize)
    views = cfg.tta if cfg is not None and tta else "none"
    margin = cfg.tta_margin if cfg is not None else 1.0
    n = len(t.classes)
    return evaluate(t.model, loader, t.device, t.precision, n, tta=views, tta_margin=margin)


def evaluate_trained(
    t: Trained, data: Dataset, split: str = "test", batch_size: int | None = None
) -> tuple[dict[str, Any], EvalResult]:
    """Evaluate on a split (default: the run's test split, with its eval batch size)."""
    check_classes(t, data)
    images = evaluation_split(t.ckpt, data, split)
    cfg = checkpoint_config(t.ckpt)
    batch_size = batch_size or (cfg.eval_batch_size if cfg else 1000)
    t0 = time.perf_counter()
    result = evaluate_images(t, images, batch_size, tta=split != "val")  # as training did
    report = {
        "checkpoint": str(t.path),
        "model": t.ckpt["model"]["name"],
        "epoch": t.ckpt.get("epoch"),
        "split": split,
        "images": len(images),
        "loss": result.loss,
        "accuracy": result.acc,
        "per_class": per_class_metrics(result.confusion, t.classes),
        "confusion_matrix": result.confusion.tolist(),
        "device": t.device.type,
        "precision": t.precision.name,
        "batch_size": batch_size,
        "seconds": time.perf_counter() - t0,
    }
    return report, result


def format_report(report: dict[str, Any], most_confused: int = 10) -> str:
    """The evaluation as a table for the screen (percentages): per class, then the
    confusion matrix (up to 20 classes) or the most frequent confusions (more)."""
    names = list(report["per_class"])
    w = max(12, 1 + max(map(len, names)))
    lines = [
        f"{report['model']} from {report['checkpoint']} (epoch {report['epoch']}) | "
        f"{report['split']} split, {report['images']:,} images | "
        f"{report['device']} {report['precision']}",
        f"loss {report['loss']:.4f}   accuracy {percent(report['accuracy'])}",
        "",
        f"{'class':<{w}}{'images':>8}{'precision':>11}{'recall':>9}  (recall: accuracy per class)",
    ]
    for name, m in report["per_class"].items():
        lines.append(
            f"{name:<{w}}{m['images']:>8,}{percent(m['precision']):>11}{percent(m['recall']):>9}"
        )
    matrix = report["confusion_matrix"]
    if len(names) <= 20:
        lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
        lines.append(" " * w + "".join(f"{n[:6]:>7}" for n in names))
        for name, row in zip(names, matrix, strict=True):
            lines.append(f"{name:<{w}}" + "".join(f"{v:>7}" for v in row))
        return "\n".join(lines)
    pairs = [(v, i, j) for i, row in enumerate(matrix) for j, v in enumerate(row) if i != j and v]
    lines += ["", f"the {most_confused} most frequent confusions (true -> predicted: images)"]
    for v, i, j in sorted(pairs, key=lambda p: (-p[0], p[1], p[2]))[:most_confused]:
        lines.append(f"  {names[i]} -> {names[j]}: {v:,}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ predict


def find_images(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Files to predict: files as given, folders walked recursively in sorted order
    (hidden files and folders skipped). Returns (files, errors for missing paths)."""
    files: list[Path] = []
    errors: list[str] = []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files += [Path(root) / n for n in sorted(names) if not n.startswith(".")]
        elif p.exists():
            files.append(p)
        else:
            errors.append(f"{p}: no such file or folder")
    return files, errors


@dataclass
class Prediction:
    file: str
    index: int  # the predicted class
    top: list[tuple[str, float]]  # top-k (class, probability), most likely first

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "class": self.top[0][0],
            "index": self.index,
            "probability": self.top[0][1],
            "top_k": [{"class": c, "probability": p} for c, p in self.top],
        }


@dataclass
class Failure:
    file: str
    error: str


def _try_load(path: Path, shape: tuple[int, int, int]) -> np.ndarray | Failure:
    try:
        return load_image(path, shape[1], shape[0])
    except CifarlabError as e:
        return Failure(str(path), str(e))


@torch.no_grad()
def predict_tensor(t: Trained, images: torch.Tensor, top_k: int = 3) -> list[list[tuple]]:
    """uint8 (B, 3, 32, 32) -> per image the top-k (class index, probability)."""
    with t.precision.autocast():
        logits = t.model(t.normalize(images.to(t.device)))
    logits = logits.float()
    # A stable sort breaks ties (frequent in bf16) toward the lower index, as argmax does.
    idx = logits.sort(dim=1, descending=True, stable=True).indices[:, : min(top_k, logits.shape[1])]
    probs = logits.softmax(1).gather(1, idx)
    return [list(zip(i, p, strict=True)) for i, p in zip(idx.tolist(), probs.tolist(), strict=True)]


def predict_files(
    t: Trained,
    files: Sequence[Path],
    top_k: int = 3,
    batch_size: int = 256,
    workers: int | None = None,
) -> Iterator[Prediction | Failure]:
    """Predict image files batch by batch, in order; unreadable files come as Failure.

    A thread pool decodes the next batch while the model runs on the current one (torch
    and Pillow's decoders release the GIL); each decoded batch goes through the model as
    one uint8 tensor.
    """
    chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    classes = t.classes
    with ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool:
        pending = [pool.submit(_try_load, f, t.input_size) for f in chunks[0]] if chunks else []
        for k, chunk in enumerate(chunks):
            decoded = [f.result() for f in pending]
            nxt = chunks[k + 1] if k + 1 < len(chunks) else []
            pending = [pool.submit(_try_load, f, t.input_size) for f in nxt]
            ok = [a for a in decoded if isinstance(a, np.ndarray)]
            tops = iter(predict_tensor(t, torch.from_numpy(np.stack(ok)), top_k) if ok else [])
            for path, item in zip(chunk, decoded, strict=True):
                if isinstance(item, Failure):
                    yield item
                    continue
                top = next(tops)
                yield Prediction(str(path), top[0][0], [(classes[i], float(p)) for i, p in top])


def format_prediction(p: Prediction) -> str:
    """One table row: class, probability, the runners-up, then the file."""
    others = "".join(f"{c:>12} {percent(q, 1):>6}" for c, q in p.top[1:])
    return f"{p.top[0][0]:<12}{percent(p.top[0][1], 1):>7}{others}  {p.file}"


def prediction_header(top_k: int) -> str:
    others = "".join(f"{f'#{k}':>19}" for k in range(2, top_k + 1))
    return f"{'class':<12}{'prob':>7}{others}  file"
