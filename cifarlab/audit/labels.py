"""Likely label errors by confident learning (cleanlab's find_label_issues, ranked by
self-confidence: the probability the model gives the given label), on out-of-sample
predicted probabilities: the trained model's on the test set (it never trained on it), and
with --folds K, K-fold cross-validated ones on the training set (K models trained with the
run's recipe, each predicting the fold it did not see)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cifarlab.config.options import TrainConfig
from cifarlab.data import Dataset, Split
from cifarlab.errors import CifarlabError
from cifarlab.evaluate.trained import Trained, evaluate_images, load_trained
from cifarlab.runs.folder import RunDir
from cifarlab.training.loop import train


@dataclass(frozen=True)
class LabelIssue:
    split: str
    index: int  # in the dataset's own order
    given: int
    suggested: int  # the most likely class by the predictions
    score: float  # cleanlab's label quality (self-confidence): lower is likelier wrong


def label_issues(split_name: str, split: Split, probabilities: np.ndarray) -> list[LabelIssue]:
    """The images cleanlab flags, most likely error first."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    labels = split.labels.numpy()
    with warnings.catch_warnings():  # cleanlab warns of classes with few images (tiny data)
        warnings.simplefilter("ignore")
        ranked = find_label_issues(
            labels, probabilities, return_indices_ranked_by="self_confidence"
        )
        scores = get_label_quality_scores(labels, probabilities, method="self_confidence")
    positions = split.positions
    return [
        LabelIssue(
            split_name,
            int(positions[i]),
            int(labels[i]),
            int(probabilities[i].argmax()),
            float(scores[i]),
        )
        for i in ranked
    ]


def probabilities(t: Trained, split: Split) -> np.ndarray:
    """(N, classes) the model's predicted probabilities, with its run's test-time
    augmentation, at its precision."""
    return evaluate_images(t, split).probabilities.numpy().astype(np.float64)


def fold_config(cfg: TrainConfig) -> TrainConfig:
    """The run's recipe for a fold model: its options, on the fold's images (no --limit)."""
    return replace(cfg, limit=None)


def cross_validated(
    cfg: TrainConfig, data: Dataset, folds: int, out: Path, device: str, progress: bool
) -> np.ndarray:
    """(N_train, classes): each training image's probabilities from the fold model that
    did not train on it. Folds are a seeded permutation of the training set; fold model k
    trains in OUT/folds/k (reused when it has finished, resumed when interrupted)."""
    if folds < 2:
        raise CifarlabError(f"--folds needs 2 or more folds, not {folds}")
    n = len(data.train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed))
    parts = order.chunk(folds)
    probs = np.zeros((n, len(data.classes)))
    for k, held in enumerate(parts):
        keep = torch.cat([p for j, p in enumerate(parts) if j != k])
        fold = Dataset(
            data.name, data.train.subset(keep), data.test, data.classes, data.root, data.notes
        )
        run = out / "folds" / str(k)
        print(f"fold {k + 1}/{folds}: training on {len(keep):,} images, predicting {len(held):,}")
        if RunDir(run).status() != "finished":
            train(
                replace(fold_config(cfg), device=device),
                run,
                data=fold,
                progress=progress,
                resume=(run / "checkpoint.pt").exists(),
            )
        probs[held.numpy()] = probabilities(load_trained(run, device), data.train.subset(held))
    return probs
