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
                         the predicted and the true class (cifarlab.evaluate.explain)
    robustness.json      with --corruptions: accuracy under each corruption and severity
    robustness.png       (cifarlab.evaluate.robustness), and the mean and drop from clean
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cifarlab.data import Dataset, Split, dataset_spec, load_dataset
from cifarlab.data.corruptions import parse_corruptions, parse_severities
from cifarlab.errors import CifarlabError
from cifarlab.evaluate.calibration import (
    apply_temperature,
    calibration,
    fit_temperature,
    most_confident_mistakes,
    top_confusions,
)
from cifarlab.evaluate.explain import gradcam, gradcam_figure, last_conv_layer
from cifarlab.evaluate.robustness import robustness, robustness_official
from cifarlab.evaluate.trained import (
    Trained,
    checkpoint_config,
    evaluate_trained,
    evaluation_split,
    format_report,
    load_trained,
    run_dataset_args,
)
from cifarlab.files import write_json
from cifarlab.report import figures as plots
from cifarlab.report import image_figures
from cifarlab.report.format import duration, percent
from cifarlab.runs.folder import make_dir, new_run_dir, save_predictions
from cifarlab.training.evaluation import EvalResult


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
    corruptions: str | None = None,
    severities: str = "1-5",
) -> tuple[dict[str, Any], Path]:
    """`cifarlab evaluate`: evaluate a run folder's (or checkpoint file's) model on a split
    of its data and write the files above into `out`. The report and the folder. Bad input
    (including --temperature on a run without a validation split) fails before anything
    is written. corruptions ('all' or names) and severities ('1-5', '1,3,5'): robustness.json
    and robustness.png on the split's images corrupted; with --dataset cifar10-c, on the
    official files instead (and nothing else is evaluated)."""
    names = parse_corruptions(corruptions) if corruptions else None
    levels = parse_severities(severities)
    t = load_trained(run_or_checkpoint, device, precision, model)
    data_args = _data_args(t, data_options or {})
    if data_args["name"] == "cifar10-c":
        return _official_robustness(t, run_or_checkpoint, out, data_args, names, levels, batch_size)
    split = _split_for(data_args["name"], split, temperature)
    if out is None and Path(run_or_checkpoint).is_dir():
        shift = dataset_spec(data_args["name"]).evaluation_only
        out = Path(run_or_checkpoint) / f"evaluate-{data_args['name'] if shift else split}"
    out_dir = new_run_dir(out, "evaluate", create=False)
    data = load_dataset(**data_args)
    chosen_layer = last_conv_layer(t.model, layer)[0] if gradcam or layer else None
    report, result = evaluate_trained(t, data, split, batch_size)
    val = _validation(t, data, batch_size) if temperature else None
    images = evaluation_split(t.ckpt, data, split)
    report["top_confusions"] = top_confusions(report["confusion_matrix"], t.classes)
    if gradcam:
        report["gradcam_layer"] = chosen_layer
    make_dir(out_dir)  # only now: bad input leaves no empty folder
    for old in OPTIONAL:  # a reused folder keeps no figure of an earlier call's options
        (out_dir / old).unlink(missing_ok=True)
    _write_all(out_dir, t, report, result, images, val, mistakes, gradcam, chosen_layer)
    if names:
        source = f"generated from the {data.name} test images"
        r = robustness(t, images, names, levels, batch_size=report["batch_size"], source=source)
        report["robustness"] = write_robustness(out_dir, r, report["model"])
    return report, out_dir


def _split_for(dataset: str, split: str, temperature: bool) -> str:
    """The split to evaluate (a shift set's whole test set), checked with --temperature,
    which is fitted on the run's own validation split."""
    if dataset_spec(dataset).evaluation_only:
        if temperature:
            raise CifarlabError(
                f"--temperature is fitted on the run's own validation split, "
                f"not on --dataset {dataset}; leave it out"
            )
        return "full-test"  # a shift set is a test set as a whole
    if temperature and split == "val":
        raise CifarlabError(
            "--temperature is fitted on the validation split: evaluate the "
            "test split with it (--split test)"
        )
    return split


# what only some calls write: removed from a reused output folder first
OPTIONAL = ("mistakes.png", "gradcam.png", "robustness.json", "robustness.png")


def _write_all(
    out_dir: Path,
    t: Trained,
    report: dict[str, Any],
    result: EvalResult,
    images: Split,
    val: tuple[EvalResult, torch.Tensor] | None,
    mistakes: int,
    gradcam: int,
    layer: str | None,
) -> None:
    """evaluation.json, the confusion matrix, predictions, calibration, mistakes, Grad-CAM."""
    write_json(out_dir / "evaluation.json", report)
    title = f"{report['model']}, {report['split']} split: accuracy {100 * report['accuracy']:.2f}%"
    image_figures.confusion_heatmap(
        report["confusion_matrix"], t.classes, out_dir / "confusion_matrix.png", title
    )
    save_predictions(
        out_dir / "predictions.npz", images.labels, result.probabilities, images.positions
    )
    report["calibration"] = write_calibration(out_dir, result, images.labels, val)
    if mistakes:
        write_mistakes(
            out_dir / "mistakes.png",
            images.images,
            result,
            images.labels,
            t.classes,
            mistakes,
            report["model"],
        )
    if gradcam:
        write_gradcam(out_dir / "gradcam.png", t, images, result, gradcam, layer)


def _data_args(t: Trained, given: dict[str, Any]) -> dict[str, Any]:
    """load_dataset's arguments: the run's own data (run_dataset_args), or a shift set."""
    name = given.get("dataset")
    if name and dataset_spec(name).evaluation_only:
        if not given.get("data_dir"):
            raise CifarlabError(
                f"--dataset {name} needs --data-dir DIR, the folder of its "
                "official files (`cifarlab datasets` says which)"
            )
        return {"name": name, "data_dir": given["data_dir"]}
    return run_dataset_args(t.ckpt, given)


def _official_robustness(
    t: Trained,
    run: str | os.PathLike,
    out: str | os.PathLike | None,
    data_args: dict[str, Any],
    names: list[str] | None,
    levels: list[int],
    batch_size: int | None,
) -> tuple[dict[str, Any], Path]:
    """--dataset cifar10-c: robustness.json over the official files, the clean accuracy
    on the run's own full test set."""
    folder = load_dataset(**data_args).notes["cifar10c_folder"]  # checks the files
    if out is None and Path(run).is_dir():
        out = Path(run) / "evaluate-cifar10-c"
    out_dir = new_run_dir(out, "evaluate", create=False)
    own = load_dataset(**run_dataset_args(t.ckpt, {}))
    report, _ = evaluate_trained(t, own, "full-test", batch_size)
    r = robustness_official(
        t, Path(folder), names, levels, report["accuracy"], report["batch_size"]
    )
    make_dir(out_dir)
    report = {
        "model": report["model"],
        "checkpoint": report["checkpoint"],
        "robustness": write_robustness(out_dir, r, report["model"]),
    }
    return report, out_dir


def write_robustness(out_dir: Path, r: dict[str, Any], model: str) -> dict[str, Any]:
    """robustness.json and robustness.png; the summary for the report."""
    write_json(out_dir / "robustness.json", r)
    plots.robustness_curves(
        {model: r},
        out_dir / "robustness.png",
        f"{model}: accuracy under corruptions ({r['source']})",
    )
    return {k: r[k] for k in ("clean_acc", "mean_corruption_acc", "relative_drop", "seconds")}


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
        cal["temperature"] = {
            "value": t,
            "fitted_on": f"validation split ({len(val_labels)} images)",
            "after": after,
        }
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
    captions = [
        f"true {classes[int(labels[i])]}\npred {classes[int(probs[i].argmax())]} "
        f"{probs[i].max():.2f}"
        for i in picked
    ]
    image_figures.image_grid(
        images[picked], captions, path, f"{model}: the {len(picked)} most confident mistakes"
    )


def format_evaluation(report: dict[str, Any]) -> str:
    """The evaluation for the screen: the table (inference.format_report), calibration and
    the top confusions, the robustness summary."""
    lines = []
    if "per_class" in report:
        lines.append(format_report(report))
        cal = report["calibration"]
        lines.append(
            f"\ncalibration: ECE {percent(cal['ece'])} (15 bins), NLL "
            f"{cal['nll']:.4f}, Brier {cal['brier']:.4f}"
        )
        if "temperature" in cal:
            temperature, after = cal["temperature"]["value"], cal["temperature"]["after"]
            lines.append(
                f"temperature {temperature:.3f} (fitted on the validation split): ECE "
                f"{percent(after['ece'])}, NLL {after['nll']:.4f}, "
                f"Brier {after['brier']:.4f}"
            )
        top = ", ".join(
            f"{c['true']} -> {c['predicted']} ({c['count']})" for c in report["top_confusions"][:3]
        )
        lines.append(f"top confusions: {top or 'none'}")
    if "robustness" in report:
        r = report["robustness"]
        lines.append(
            f"robustness: clean {percent(r['clean_acc'])}, mean under corruptions "
            f"{percent(r['mean_corruption_acc'])} (relative drop "
            f"{percent(r['relative_drop'] or 0, 1)}), "
            f"{duration(r['seconds'])}"
        )
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
    gradcam_figure(
        x,
        maps_pred,
        maps_true,
        labels.tolist(),
        preds.tolist(),
        probs.max(1).values.tolist(),
        t.classes,
        path,
        f"Grad-CAM at layer {layer}: predicted and true class",
    )
