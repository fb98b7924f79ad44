"""The commands on trained models: evaluate, predict, explain, export (cifarlab.cli.main adds
them to the `cifarlab` group). Like every command, each imports the library it calls when
it runs (see cifarlab.cli.main)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cifarlab.cli.command_options import evaluate_options, export_options
from cifarlab.cli.options import (
    data_options,
    field_option,
    model_option,
)
from cifarlab.config.choices import CHECKPOINTS, SPLITS
from cifarlab.errors import CifarlabError
from cifarlab.report.format import percent

DEVICE_HELP = "Where the model runs; auto picks CUDA when available."

checkpoint_option = click.option(
    "--checkpoint",
    "which",
    type=click.Choice(CHECKPOINTS),
    default="last",
    show_default=True,
    help="last: the run's checkpoint.pt (its last epoch); best: its best.pt, the best "
    "epoch's weights of a run trained with --early-stop.",
)


def chosen_checkpoint(run_or_checkpoint: str, which: str) -> str | Path:
    """What RUN_OR_CHECKPOINT names (--checkpoint last), or the run's best.pt (best)."""
    if which == "last":
        return run_or_checkpoint
    from cifarlab.runs.checkpoint import best_checkpoint_path

    return best_checkpoint_path(run_or_checkpoint)


def best_evaluation_folder(run_or_checkpoint: str, split: str, dataset: str | None) -> Path:
    """evaluate --checkpoint best's default output folder: RUN/evaluate-SPLIT-best (of a
    shift set: RUN/evaluate-DATASET-best), beside the last checkpoint's."""
    from cifarlab.data import dataset_spec

    shifted = dataset is not None and dataset_spec(dataset).evaluation_only
    return Path(run_or_checkpoint) / f"evaluate-{dataset if shifted else split}-best"


@click.command()
@click.argument("run_or_checkpoint", type=click.Path())
@data_options
@model_option
@click.option(
    "--split",
    type=click.Choice(SPLITS),
    default="test",
    show_default=True,
    help="test/val: the run's own test or validation split, rebuilt from its config "
    "(test reproduces summary.json's test_acc); full-test: all 10,000 test images.",
)
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Output folder (default RUN/evaluate-SPLIT for a run folder, else runs/evaluate-<time>).",
)
@field_option("device", default="auto", show_default=True, help=DEVICE_HELP)
@field_option("precision", help="Default: the precision the run used (so its numbers repeat).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the run's.")
@checkpoint_option
@evaluate_options
def evaluate(
    run_or_checkpoint,
    model_ref,
    split,
    out,
    device,
    precision,
    batch_size,
    which,
    temperature,
    mistakes,
    gradcam,
    layer,
    corruptions,
    severities,
    **options,
) -> None:
    """Evaluate a trained model: accuracy, per-class metrics, confusions, calibration.

    RUN_OR_CHECKPOINT is a run folder (its checkpoint.pt, or with --checkpoint best its
    best.pt) or a checkpoint file.
    Writes evaluation.json (fractions, with the top confusions), confusion_matrix.png,
    predictions.npz (per image: label, probabilities, index), calibration.json and
    reliability.png (ECE over 15 bins, NLL, Brier), mistakes.png (the most confident
    mistakes), and prints a table (percentages).
    """
    from cifarlab.evaluate import report as evaluation_report

    given = {k: v for k, v in options.items() if v is not None}
    source = chosen_checkpoint(run_or_checkpoint, which)
    if which == "best" and out is None and Path(run_or_checkpoint).is_dir():
        out = best_evaluation_folder(run_or_checkpoint, split, given.get("dataset"))
    report, out_dir = evaluation_report.evaluate_run(
        source,
        split=split,
        out=out,
        device=device,
        precision=precision,
        batch_size=batch_size,
        model=model_ref,
        data_options=given,
        temperature=temperature,
        mistakes=mistakes,
        gradcam=gradcam,
        layer=layer,
        corruptions=corruptions,
        severities=severities,
    )
    click.echo(evaluation_report.format_evaluation(report))
    click.echo(f"\n  wrote {out_dir}/: {', '.join(sorted(p.name for p in out_dir.iterdir()))}")


@click.command()
@click.argument("run_or_checkpoint", type=click.Path())
@click.argument("images", metavar="IMAGE_OR_FOLDER...", nargs=-1, required=True)
@model_option
@click.option("--top-k", type=click.IntRange(1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, not a table.")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@field_option("device", default="auto", show_default=True, help=DEVICE_HELP)
@field_option("precision", help="Default: the precision the run used.")
@checkpoint_option
def predict(
    run_or_checkpoint, images, model_ref, top_k, as_json, batch_size, device, precision, which
) -> None:
    """Predict the class of image files, with the top-k probabilities.

    Folders are walked recursively, in sorted order; hidden files are skipped. Each image
    is turned upright by its EXIF orientation, composited on white where it has
    transparency, converted to RGB (grey for 1-channel models) and resized to exactly
    the model's input size, e.g. 32x32 (Pillow's antialiased
    bilinear filter; the aspect ratio is not kept). A file that cannot be read gets one
    line on stderr and the others go on; the exit status is 1 if any file failed.
    """
    from cifarlab.evaluate import trained as inference

    t = inference.load_trained(
        chosen_checkpoint(run_or_checkpoint, which), device, precision, model_ref
    )
    files, errors = inference.find_images(images)
    for message in errors:
        click.echo(f"error: {message}", err=True)
    if not files and not errors:
        raise CifarlabError(f"no files in {', '.join(images)}")
    if not as_json and files:
        click.echo(inference.prediction_header(min(top_k, len(t.classes))))
    failed = len(errors)
    for p in inference.predict_files(t, files, top_k, batch_size):
        if isinstance(p, inference.Failure):
            failed += 1
            click.echo(f"error: {p.error}", err=True)
        elif as_json:
            click.echo(json.dumps(p.to_dict()))
        else:
            click.echo(inference.format_prediction(p))
    if failed:
        sys.exit(1)


@click.command()
@click.argument("run_or_checkpoint", type=click.Path())
@click.argument("images", metavar="IMAGE_OR_FOLDER...", nargs=-1, required=True)
@model_option
@click.option(
    "--layer",
    default=None,
    help="The conv layer to explain, by its module name (default: the last one that trains).",
)
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Output folder (default RUN/explain-<time> for a run folder, else runs/explain-<time>).",
)
@field_option("device", default="auto", show_default=True, help=DEVICE_HELP)
@field_option("precision", help="Default: the precision the run used (as predict runs it).")
def explain(run_or_checkpoint, images, model_ref, layer, out, device, precision) -> None:
    """Grad-CAM: where in each image the model looks for the class it predicts.

    Images are read and resized as `predict` reads them. Writes gradcam.png (a row per
    image: the image and its Grad-CAM map over it; 50 rows a figure, then gradcam-2.png,
    ...) and prints the predicted class and probability of each file. A file that cannot
    be read gets one line on stderr; the exit status is 1 if any file failed.
    """
    from cifarlab.evaluate import explain as explaining
    from cifarlab.evaluate import trained as inference
    from cifarlab.runs.folder import new_run_dir

    t = inference.load_trained(run_or_checkpoint, device, precision, model_ref)
    explaining.last_conv_layer(t.model, layer)  # a bad --layer before any file is read
    files, errors = inference.find_images(images)
    if not files and not errors:
        raise CifarlabError(f"no files in {', '.join(images)}")
    run = Path(run_or_checkpoint)
    root = str(run) if run.is_dir() else "runs"
    out_dir = new_run_dir(out, "explain", root=root, create=False)  # created by the figure
    rows, failed, figures = explaining.explain_files(
        t.model, t.normalize, files, t.classes, out_dir, layer, t.input_size, t.precision
    )
    for message in errors + failed:
        click.echo(f"error: {message}", err=True)
    for r in rows:
        click.echo(f"{r['class']:<12}{percent(r['probability'], 1):>7}  {r['file']}")
    if figures:
        click.echo(f"\n  wrote {', '.join(map(str, figures))}")
    if errors or failed:
        sys.exit(1)


@click.command()
@click.argument("run_or_checkpoint", type=click.Path())
@model_option
@export_options
@checkpoint_option
def export(run_or_checkpoint, model_ref, fmt, input_kind, out, which) -> None:
    """Export a trained model to ONNX or TorchScript, with a dynamic batch size.

    With --checkpoint best, the run's best.pt (default file: model-best.onnx, ...).
    The exported model is checked before it is written: it runs (onnxruntime or
    torch.jit.load) on a random batch and its logits must be within 1e-4 of PyTorch's.
    Class names, mean and std are stored in the file's metadata.
    """
    from cifarlab.evaluate import export as exporting
    from cifarlab.runs.checkpoint import (
        load_checkpoint,
        resolve_checkpoint_path,
    )

    path = resolve_checkpoint_path(run_or_checkpoint, which)
    out = out or exporting.default_export_path(path, fmt, input_kind)
    exporting.check_destination(out)  # before the conversion, which takes a while
    r = exporting.export_trained(load_checkpoint(path), fmt, out, input_kind, model_ref)
    click.echo(
        f"wrote {r['path']} ({r['format']}, {r['input']} input, {r['bytes'] / 1e6:.2f} MB); "
        f"checked on {r['check_batch']} random images: max abs diff {r['max_abs_diff']:.2e} "
        f"from PyTorch (tolerance 1e-4)"
    )


COMMANDS = (evaluate, predict, explain, export)
