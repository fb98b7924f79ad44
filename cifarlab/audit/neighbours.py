"""Exact nearest neighbours by cosine distance, in chunks (a chunk of queries against every
base vector: one matrix product, ~200 MB at 1,024 x 50,000), and the near-duplicate pairs
they give."""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK = 1024


def nearest(
    queries: torch.Tensor, base: torch.Tensor, k: int = 1, same: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, indices), each (N, k), nearest first; same: queries are the base (an
    image is not its own neighbour). Vectors must be L2-normalized."""
    k = min(k, len(base) - int(same))
    dists, idxs = [], []
    for start in range(0, len(queries), CHUNK):
        sims = queries[start : start + CHUNK] @ base.T
        if same:
            rows = torch.arange(len(sims))
            sims[rows, rows + start] = -2.0
        s, j = sims.topk(k, dim=1)
        dists.append((1 - s).clamp(min=0))
        idxs.append(j)
    return torch.cat(dists), torch.cat(idxs)


@dataclass(frozen=True)
class Pair:
    """A query image and one of its nearest neighbours: splits, the indices of the
    dataset's own order, and their cosine distance."""

    query_split: str
    query_index: int
    match_split: str
    match_index: int
    distance: float


def pairs(
    test: torch.Tensor,
    train: torch.Tensor,
    test_index: torch.Tensor,
    train_index: torch.Tensor,
    k: int = 1,
) -> list[Pair]:
    """Each test image's k nearest training images, and each pair of test images that are
    each other's nearest (or one the other's), once; most similar first."""
    out = []
    d, j = nearest(test, train, k)
    for q in range(len(test)):
        for r in range(d.shape[1]):
            out.append(
                Pair("test", int(test_index[q]), "train", int(train_index[j[q, r]]), float(d[q, r]))
            )
    d, j = nearest(test, test, 1, same=True)
    seen = set()
    for q in range(len(test)):
        a, b = sorted((q, int(j[q, 0])))
        if (a, b) not in seen:
            seen.add((a, b))
            out.append(Pair("test", int(test_index[a]), "test", int(test_index[b]), float(d[q, 0])))
    return sorted(out, key=lambda p: (p.distance, p.query_index))
