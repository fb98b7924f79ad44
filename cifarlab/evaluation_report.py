"""What `cifarlab evaluate` writes: how accurate a trained model is, and where and why it
fails.

    report, out = evaluate_run("runs/train-x", temperature=True, mistakes=32)

Into the output folder (default RUN/evaluate-SPLIT):

    evaluation.json      loss, accuracy, per-class metrics, confusion matrix, top confusions
    confusion_matrix.png the confusion matrix as a heat map
    predictions.npz      per image: label, class probabilities, position in the test set
    calibration.json     ECE (15 bins), the bins, NLL, Brier; with --temperature, the same
                         after temperature scaling fitted on the validation split
    reliability.png      the reliability diagram (before and after the temperature)
    mistakes.png         the most confident mistakes, with true and predicted class
    gradcam.png          with --gradcam N: Grad-CAM maps of the first N test images, for
                         the predicted and the true class (cifarlab.explain)
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cifarlab import plots
from cifarlab.calibration import (
    apply_temperature,
    calibration,
    fit_temperature,
    most_confident_mistakes,
    top_confusions,
)
from cifarlab.data import Dataset, Split, load_dataset
from cifarlab.errors import CifarlabError
from cifarlab.evaluation import EvalResult
from cifarlab.explain import gradcam, gradcam_figure, last_conv_layer
from cifarlab.files import atomic_write_bytes, write_json
from cifarlab.inference import (
    Trained,
    checkpoint_config,
    evaluate_trained,
    evaluation_split,
    load_trained,
    run_dataset_args,
)
from cifarlab.run_folder import make_dir, new_run_dir


def evaluate_run(
    run_or_checkpoint: str | os.PathLike,
    *,
    split: str = "test",
    out: str | os.PathLike | None = None,
    device: str = "auto",
    precision: str | None = None,
    batch_size: int | None = None,
    model: str | None = None,
    data_options: dict[str, Any] | None = None,
    temperature: bool = False,
    mistakes: int = 32,
    gradcam: int = 0,
    layer: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """`cifarlab evaluate`: evaluate a run folder's (or checkpoint file's) model on a split
    of its data and write the files above into `out`. The report and the folder. Bad input
    (including --temperature on a run without a validation split) fails before anything
    is written."""
    t = load_trained(run_or_checkpoint, device, precision, model)
    if out is None and Path(run_or_checkpoint).is_dir():
        out = Path(run_or_checkpoint) / f"evaluate-{split}"
    out_dir = new_run_dir(out, "evaluate", create=False)
    data = load_dataset(**run_dataset_args(t.ckpt, data_options or {}))
    if temperature and split == "val":
        raise CifarlabError("--temperature is fitted on the validation split: evaluate the "
                            "test split with it (--split test)")  # fmt: skip
    if gradcam or layer:
        report_layer = last_conv_layer(t.model, layer)[0]  # a bad --layer: before any work
    report, result = evaluate_trained(t, data, split, batch_size)
    val = _validation(t, data, batch_size) if temperature else None
    images = evaluation_split(t.ckpt, data, split)
    report["top_confusions"] = top_confusions(report["confusion_matrix"], t.classes)
    if gradcam:
        report["gradcam_layer"] = report_layer
    make_dir(out_dir)  # only now: bad input leaves no empty folder
    write_json(out_dir / "evaluation.json", report)
    title = f"{report['model']}, {split} split: accuracy {100 * report['accuracy']:.2f}%"
    plots.confusion_heatmap(report["confusion_matrix"], t.classes,
                            out_dir / "confusion_matrix.png", title)  # fmt: skip
    write_predictions(out_dir / "predictions.npz", images.labels, result, images.positions)
    report["calibration"] = write_calibration(out_dir, result, images.labels, val)
    if mistakes:
        write_mistakes(out_dir / "mistakes.png", images.images, result, images.labels,
                       t.classes, mistakes, report["model"])  # fmt: skip
    if gradcam:
        write_gradcam(out_dir / "gradcam.png", t, images, result, gradcam, report_layer)
    return report, out_dir


def _validation(
    t: Trained, data: Dataset, batch_size: int | None
) -> tuple[EvalResult, torch.Tensor]:
    """The model's outputs on the run's validation split and its labels (for the
    temperature)."""
    cfg = checkpoint_config(t.ckpt)
    split = evaluation_split(t.ckpt, data, "val") if cfg is not None else None
    if cfg is None or cfg.val_from == "none" or split is None or len(split) == 0:
        raise CifarlabError(
            "--temperature needs the run's validation split, and this run has none "
            "(--val-from none); it is never fitted on the test split"
        )
    return evaluate_trained(t, data, "val", batch_size)[1], split.labels


def write_predictions(
    path: Path, labels: torch.Tensor, result: EvalResult, index: torch.Tensor
) -> None:
    """predictions.npz: labels, probabilities and index, as a training run's
    test_predictions.npz."""
    buf = io.BytesIO()
    np.savez(buf, labels=labels.numpy().astype(np.int64),
             probabilities=result.probabilities.numpy().astype(np.float32),
             index=index.numpy().astype(np.int64))  # fmt: skip
    atomic_write_bytes(path, buf.getvalue())


def write_calibration(
    out_dir: Path,
    result: EvalResult,
    labels: torch.Tensor,
    val: tuple[EvalResult, torch.Tensor] | None,
) -> dict[str, Any]:
    """calibration.json and reliability.png; with `val`, the temperature fitted on it and
    every number again after scaling the test outputs by it."""
    y = labels.numpy()
    before = calibration(result.probabilities.numpy(), y)
    cal: dict[str, Any] = dict(before)
    panels = [("before temperature scaling" if val else "reliability", before)]
    if val is not None:
        val_result, val_labels = val
        t = fit_temperature(val_result.log_probabilities, val_labels)
        after = calibration(apply_temperature(result.log_probabilities, t).numpy(), y)
        cal["temperature"] = {"value": t, "fitted_on": f"validation split ({len(val_labels)} "
                              "images)", "after": after}  # fmt: skip
        panels.append((f"after temperature {t:.3f}", after))
    write_json(out_dir / "calibration.json", cal)
    plots.reliability_diagram(panels, out_dir / "reliability.png")
    return {k: v for k, v in cal.items() if k != "bins"}


def write_mistakes(
    path: Path,
    images: torch.Tensor,
    result: EvalResult,
    labels: torch.Tensor,
    classes: list[str],
    n: int,
    model: str,
) -> None:
    """mistakes.png: the n most confident wrong predictions, most confident first."""
    probs = result.probabilities.numpy()
    picked = most_confident_mistakes(probs, labels.numpy(), n)
    captions = [f"true {classes[int(labels[i])]}\npred {classes[int(probs[i].argmax())]} "
                f"{probs[i].max():.2f}" for i in picked]  # fmt: skip
    plots.image_grid(images[picked], captions, path,
                     f"{model}: the {len(picked)} most confident mistakes")  # fmt: skip


def format_diagnosis(report: dict[str, Any]) -> str:
    """The calibration (and temperature) and top confusions, for the screen."""
    cal = report["calibration"]
    lines = [f"\ncalibration: ECE {100 * cal['ece']:.2f}% (15 bins), NLL {cal['nll']:.4f}, "
             f"Brier {cal['brier']:.4f}"]  # fmt: skip
    if "temperature" in cal:
        t, after = cal["temperature"]["value"], cal["temperature"]["after"]
        lines.append(f"temperature {t:.3f} (fitted on the validation split): ECE "
                     f"{100 * after['ece']:.2f}%, NLL {after['nll']:.4f}, "
                     f"Brier {after['brier']:.4f}")  # fmt: skip
    top = ", ".join(f"{c['true']} -> {c['predicted']} ({c['count']})"
                    for c in report["top_confusions"][:3])  # fmt: skip
    lines.append(f"top confusions: {top or 'none'}")
    return "\n".join(lines)


def write_gradcam(
    path: Path, t: Trained, images: Split, result: EvalResult, n: int, layer: str
) -> None:
    """gradcam.png: the first n images with the Grad-CAM maps of the predicted and of the
    true class, from `layer`."""
    x = images.images[:n]
    labels = images.labels[:n]
    probs = result.probabilities[:n]
    preds = probs.argmax(1)
    normalized = t.normalize(x.to(t.device)).float()
    model = t.model.float()
    maps_pred = gradcam(model, normalized, preds.to(t.device), layer)
    maps_true = gradcam(model, normalized, labels.to(t.device), layer)
    gradcam_figure(x, maps_pred, maps_true, labels.tolist(), preds.tolist(),
                   probs.max(1).values.tolist(), t.classes, path,
                   f"Grad-CAM at layer {layer}: predicted and true class")  # fmt: skip
