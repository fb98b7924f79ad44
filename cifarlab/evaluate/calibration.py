"""Can the model's confidence be trusted? Calibration of predicted probabilities.

    report = calibration(probabilities, labels)      # ece, bins, nll, brier
    t = fit_temperature(log_probs_val, labels_val)   # one temperature, fitted on validation
    scaled = apply_temperature(log_probs_test, t)    # the test probabilities, recalibrated

ECE (expected calibration error) is the mean absolute gap between accuracy and confidence
(the top probability) over 15 equal-width confidence bins, weighted by the share of images
in each bin (Guo et al., 2017; Naeini et al., 2015). NLL is the mean negative log
probability of the true class, Brier the mean squared distance between the probability
vector and the one-hot label (summed over classes). Temperature scaling divides the logits
by one number T fitted by minimizing the NLL on the validation split: it changes the
confidences, never the predicted classes. torchmetrics computes the same ECE, but not the
bins the reliability diagram draws; the formula is a few lines of numpy.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cifarlab.errors import CifarlabError

BINS = 15


def calibration(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """ECE over `bins` equal-width bins (lo, hi] of the top probability, the bins themselves
    (lo, hi, count, confidence, accuracy; empty bins have None), NLL and Brier."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(p) == 0:
        raise CifarlabError("no images to measure calibration on")
    confidence = p.max(1)
    correct = p.argmax(1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        conf = float(confidence[members].mean()) if count else None
        acc = float(correct[members].mean()) if count else None
        if count:
            ece += count / len(p) * abs(acc - conf)
        table.append(
            {
                "lo": float(edges[b]),
                "hi": float(edges[b + 1]),
                "count": count,
                "confidence": conf,
                "accuracy": acc,
            }
        )
    true_p = np.clip(p[np.arange(len(y)), y], 1e-12, 1.0)
    onehot = np.eye(p.shape[1])[y]
    return {
        "ece": float(ece),
        "bins": table,
        "nll": float(-np.log(true_p).mean()),
        "brier": float(((p - onehot) ** 2).sum(1).mean()),
        "accuracy": float(correct.mean()),
        "images": len(p),
    }


def apply_temperature(log_probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """Probabilities of logits divided by the temperature (log-probabilities are logits up
    to a constant per image, which the softmax removes)."""
    return (torch.as_tensor(log_probabilities, dtype=torch.float64) / temperature).softmax(1)


def fit_temperature(log_probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 that minimizes the NLL of softmax(logits / T) on these images
    (L-BFGS on log T, from T = 1)."""
    z = torch.as_tensor(log_probabilities, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    if len(z) == 0:
        raise CifarlabError("no validation images to fit a temperature on")
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(nll)
    # a validation split the model gets all right pushes T to 0 (one-hot probabilities):
    # keep it within [0.05, 20]
    return float(log_t.detach().clamp(math.log(0.05), math.log(20.0)).exp())


def top_confusions(confusion: list[list[int]], classes: list[str], n: int = 10) -> list[dict]:
    """The n most frequent true -> predicted pairs of a confusion matrix (rows true)."""
    pairs = [
        (count, i, j)
        for i, row in enumerate(confusion)
        for j, count in enumerate(row)
        if i != j and count
    ]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    return [{"true": classes[i], "predicted": classes[j], "count": int(c)} for c, i, j in pairs[:n]]


def most_confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, n: int) -> list[int]:
    """Indices of the n wrong predictions with the highest top probability, most first."""
    p = np.asarray(probabilities)
    wrong = np.flatnonzero(p.argmax(1) != np.asarray(labels))
    order = np.argsort(-p[wrong].max(1), kind="stable")
    return wrong[order][:n].tolist()
