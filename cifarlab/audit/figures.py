"""The audit's figures, for a person to judge what it found: the closest test-train pairs
side by side, the pairs on either side of the threshold, and the likeliest label errors."""

from __future__ import annotations

from pathlib import Path

import torch

from cifarlab.audit.labels import LabelIssue
from cifarlab.audit.neighbours import Pair
from cifarlab.data import Dataset, Split
from cifarlab.report.image_figures import image_grid

SHOWN = 20


def _image(data: Dataset, split: str, index: int) -> tuple[torch.Tensor, str]:
    part: Split = data.train if split == "train" else data.test
    where = (part.positions == index).nonzero()
    k = int(where[0, 0]) if len(where) else index
    return part.images[k], data.classes[int(part.labels[k])]


def _pairs_figure(data: Dataset, chosen: list[Pair], path: Path, title: str) -> Path:
    images, captions = [], []
    for p in chosen:
        a, ca = _image(data, p.query_split, p.query_index)
        b, cb = _image(data, p.match_split, p.match_index)
        images += [a, b]
        captions += [
            f"{p.query_split} {p.query_index}\n{ca}",
            f"{p.match_split} {p.match_index}\n{cb}, d={p.distance:.4f}",
        ]
    stack = torch.stack(images) if images else torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    return image_grid(stack, captions, path, title)


def closest_pairs(data: Dataset, found: list[Pair], limit: float, out: Path) -> None:
    """duplicates.png (the closest test-train pairs) and threshold.png (the 8 test-train
    pairs just below the threshold and the 8 just above it)."""
    train = [p for p in found if p.match_split == "train"]
    best: dict[int, Pair] = {}
    for p in train:  # each test image's closest training image
        best.setdefault(p.query_index, p)
    ranked = sorted(best.values(), key=lambda p: p.distance)
    n_below = sum(p.distance <= limit for p in ranked)
    _pairs_figure(
        data,
        ranked[:SHOWN],
        out / "duplicates.png",
        f"The {min(SHOWN, len(ranked))} closest test-train pairs (test left, its nearest "
        f"training image right); {n_below} test images are within {limit:.4f}",
    )
    around = ranked[max(0, n_below - 8) : n_below + 8]
    _pairs_figure(
        data,
        around,
        out / "threshold.png",
        f"Around the threshold {limit:.4f}: the last 8 test-train pairs within it, "
        "then the first 8 beyond it",
    )


def likely_errors(data: Dataset, issues: list[LabelIssue], out: Path) -> None:
    """label_issues.png: the likeliest label errors, each with its given and suggested class."""
    chosen = issues[:SHOWN]
    images = [_image(data, i.split, i.index)[0] for i in chosen]
    captions = [
        f"{i.split} {i.index}\ngiven {data.classes[i.given]}\nsuggested {data.classes[i.suggested]}"
        for i in chosen
    ]
    stack = torch.stack(images) if images else torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
    image_grid(
        stack,
        captions,
        out / "label_issues.png",
        f"The {len(chosen)} likeliest label errors of {len(issues)} flagged "
        "(cleanlab, by self-confidence)",
    )
