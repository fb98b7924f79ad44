"""`cifarlab audit RUN`: what is in the data a trained run was tested on.

    result, out = audit_run("runs/fast", folds=0)

Into OUT (default RUN/audit/):

    duplicates.csv     query_split,query_index,match_split,match_index,distance: every test
                       image's nearest training images and nearest other test image,
                       by cosine distance, most similar first (indices: the dataset's order)
    label_issues.csv   split,index,given,suggested,score: cleanlab's likely label errors,
                       most likely first (score: the given label's predicted probability)
    audit.json         the audited checkpoint (its SHA-256), the threshold and how it was
                       chosen, counts per split and class, and the run's test accuracy on
                       every test image, without the near-duplicates of training images,
                       without the label issues, without both
    duplicates.png     the closest test-train pairs, side by side
    threshold.png      the pairs just below and just above the threshold
    label_issues.png   the likeliest label errors, with the given and the suggested class

The threshold: a test image is a near-duplicate of a training image when their distance is
at most a fifth of the median distance between a test image and its nearest training image
(in the same space; the scale of each model's features is its own); `--threshold D` sets it.
"""

from __future__ import annotations

import csv
import io
import os
import resource
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.audit import figures
from cifarlab.audit.features import feature_layer, model_features, pixel_features
from cifarlab.audit.labels import LabelIssue, cross_validated, label_issues, probabilities
from cifarlab.audit.neighbours import Pair, pairs
from cifarlab.config.choices import AUDIT_SPACES
from cifarlab.data import Dataset, load_dataset
from cifarlab.errors import CifarlabError
from cifarlab.evaluate.trained import (
    Trained,
    check_classes,
    checkpoint_config,
    load_trained,
    run_dataset_args,
)
from cifarlab.files import atomic_write_bytes, file_digest, write_json
from cifarlab.report.format import percent
from cifarlab.runs.folder import RunDir

# the near-duplicate threshold as a share of the median nearest-neighbour distance (a fifth:
# the rule's words below say so): chosen by
# looking at the pairs (threshold.png) of a fast model on CIFAR-10, where pairs stop being
# the same photograph near a fifth of it
FRACTION = 0.2


def audit_run(
    run: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    data_dir: str | None = None,
    space: str = "features",
    layer: str | None = None,
    folds: int = 0,
    threshold: float | None = None,
    neighbours: int = 3,
    device: str = "auto",
    model: str | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Audit the data of a trained run folder; audit.json's content and the folder. Bad
    input (no checkpoint, other data, no layer to read, --folds 1) fails before anything
    is written."""
    t0 = time.perf_counter()
    if space not in AUDIT_SPACES:
        raise CifarlabError(f"--space must be one of {', '.join(AUDIT_SPACES)}, not {space!r}")
    if folds == 1 or folds < 0:
        raise CifarlabError(
            f"--folds needs 2 or more folds (0: no training-set audit), not {folds}"
        )
    run = Path(run)
    if not (run / "checkpoint.pt").exists():
        raise CifarlabError(f"{run} holds no checkpoint.pt: audit a trained run folder")
    t = load_trained(run, device, model=model)
    if space == "features":
        feature_layer(t.model, layer)  # no layer to read: one line, before any work
    data = _data(t, data_dir)
    out = Path(out) if out is not None else run / "audit"
    cfg = checkpoint_config(t.ckpt)
    if folds and cfg is None:
        raise CifarlabError("the checkpoint holds no training config, so --folds has no recipe")
    out.mkdir(parents=True, exist_ok=True)

    found, limit, rule = _duplicates(t, data, space, layer, neighbours, threshold)
    write_rows(out / "duplicates.csv", found, Pair)
    test_probs = probabilities(t, data.test)
    issues = label_issues("test", data.test, test_probs)
    if folds:
        print(_fold_estimate(run, cfg, data, folds))
        train_probs = cross_validated(cfg, data, folds, out, device, progress)
        issues += label_issues("train", data.train, train_probs)
    write_rows(out / "label_issues.csv", issues, LabelIssue)

    result = _summary(run, data, space, layer, t, found, limit, rule, issues, test_probs, folds)
    result["seconds"] = time.perf_counter() - t0
    result["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures.closest_pairs(data, found, limit, out)
    figures.likely_errors(data, issues, out)
    write_json(out / "audit.json", result)
    return result, out


def _data(t: Trained, data_dir: str | None) -> Dataset:
    given = {"data_dir": data_dir} if data_dir else {}
    data = load_dataset(**run_dataset_args(t.ckpt, given))
    check_classes(t, data, "audit")
    return data


def _duplicates(
    t: Trained, data: Dataset, space: str, layer: str | None, k: int, threshold: float | None
) -> tuple[list[Pair], float, str]:
    """The pairs, the threshold and the sentence saying how it was chosen."""
    if space == "features":
        test, train = model_features(t, data.test, layer), model_features(t, data.train, layer)
    else:
        norm = t.normalize.to("cpu")
        test, train = pixel_features(data.test, norm), pixel_features(data.train, norm)
    found = pairs(test, train, data.test.positions, data.train.positions, k)
    if threshold is not None:
        return found, threshold, "given with --threshold"
    nearest: dict[int, float] = {}
    for p in found:  # sorted: the first of a test image is its nearest training image
        if p.match_split == "train":
            nearest.setdefault(p.query_index, p.distance)
    typical = float(np.median(list(nearest.values())))
    rule = (
        f"a fifth of the median distance between a test image and its nearest training "
        f"image, {typical:.4f}"
    )
    return found, FRACTION * typical, rule


def _fold_estimate(run: Path, cfg: Any, data: Dataset, folds: int) -> str:
    """How long --folds will take, from the run's own training speed."""
    words = f"training {folds} models with the run's recipe ({cfg.epochs} epochs each)"
    speed = (RunDir(run).summary() or {}).get("mean_images_per_second")
    if not speed:
        return words + " (time unknown: the run has no summary of its speed)"
    images = folds * cfg.epochs * len(data.train) * (folds - 1) / folds
    return words + f": about {images / speed / 60:.0f} minutes at the run's {speed:.0f} images/s"


def write_rows(path: Path, rows: list[Pair] | list[LabelIssue], kind: type) -> None:
    """A CSV of `rows`, the fields of the dataclass `kind` as its columns."""
    buffer = io.StringIO()
    names = list(kind.__dataclass_fields__)
    writer = csv.DictWriter(buffer, names)
    writer.writeheader()
    for r in rows:
        writer.writerow(
            {k: f"{v:.6f}" if isinstance(v, float) else v for k, v in asdict(r).items()}
        )
    atomic_write_bytes(path, buffer.getvalue().encode())


def _per_class(data: Dataset, split: str, indices: set[int]) -> dict[str, int]:
    """How many of `indices` (the dataset's order) each class holds in `split`."""
    part = data.test if split == "test" else data.train
    where = {int(p): i for i, p in enumerate(part.positions)}
    counts = {c: 0 for c in data.classes}
    for i in indices:
        counts[data.classes[int(part.labels[where[i]])]] += 1
    return counts


def _accuracy(data: Dataset, correct: np.ndarray, leave_out: set[int]) -> dict[str, Any]:
    """Test accuracy over the test images but those of `leave_out` (the dataset's order)."""
    where = {int(p): i for i, p in enumerate(data.test.positions)}
    keep = np.ones(len(correct), bool)
    keep[[where[i] for i in leave_out]] = False
    mean = float(correct[keep].mean()) if keep.any() else None
    return {"images": int(keep.sum()), "accuracy": mean}


def _summary(
    run: Path,
    data: Dataset,
    space: str,
    layer: str | None,
    t: Trained,
    found: list[Pair],
    limit: float,
    rule: str,
    issues: list[LabelIssue],
    test_probs: np.ndarray,
    folds: int,
) -> dict[str, Any]:
    """audit.json, less its time and memory."""
    near = {p.query_index for p in found if p.match_split == "train" and p.distance <= limit}
    within = [p for p in found if p.match_split == "test" and p.distance <= limit]
    flagged = {i.index for i in issues if i.split == "test"}
    train_flagged = {i.index for i in issues if i.split == "train"}
    correct = test_probs.argmax(1) == data.test.labels.numpy()
    return {
        "run": str(run),
        "checkpoint_sha256": file_digest(run / "checkpoint.pt"),
        "dataset": data.name,
        "images": {"train": len(data.train), "test": len(data.test)},
        "space": space,
        "layer": feature_layer(t.model, layer)[0] if space == "features" else None,
        "threshold": {"distance": limit, "rule": rule},
        "duplicates": {
            "test_with_a_train_duplicate": len(near),
            "test_pairs": len(within),
            "per_class": _per_class(data, "test", near),
        },
        "label_issues": {
            "test": len(flagged),
            "test_per_class": _per_class(data, "test", flagged),
            "train": len(train_flagged) if folds else None,
            "train_per_class": _per_class(data, "train", train_flagged) if folds else None,
            "folds": folds or None,
        },
        "test_accuracy": {
            "all": _accuracy(data, correct, set()),
            "without_train_duplicates": _accuracy(data, correct, near),
            "without_label_issues": _accuracy(data, correct, flagged),
            "without_both": _accuracy(data, correct, near | flagged),
            "how": "the run's model with its own test-time augmentation, on every test image",
        },
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What `cifarlab audit` prints."""
    d, li, acc = result["duplicates"], result["label_issues"], result["test_accuracy"]
    n = result["images"]["test"]
    lines = [
        f"near-duplicates (cosine distance <= {result['threshold']['distance']:.4f}, "
        f"{result['space']}): {d['test_with_a_train_duplicate']:,} of {n:,} test images have "
        f"one in training; {d['test_pairs']:,} pairs within the test set",
        f"likely label errors (cleanlab): {li['test']:,} test images"
        + (
            f", {li['train']:,} training images ({li['folds']} folds)"
            if li["train"] is not None
            else ""
        ),
    ]
    for key, words in (
        ("all", "all test images"),
        ("without_train_duplicates", "without the near-duplicates"),
        ("without_label_issues", "without the label issues"),
        ("without_both", "without both"),
    ):
        a = acc[key]
        lines.append(f"test accuracy, {words}: {percent(a['accuracy'])} on {a['images']:,} images")
    return lines


__all__ = ["audit_run", "summary_lines"]
