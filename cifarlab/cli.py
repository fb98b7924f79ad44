"""The `cifarlab` command line. Each command is a thin layer over a library function."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from typing import Any

import click

from cifarlab import analysis, inference
from cifarlab import export as exporting
from cifarlab._version import __version__
from cifarlab.checkpoint import load_checkpoint, resolve_checkpoint_path
from cifarlab.cli_options import (
    data_args,
    data_options,
    executor_options,
    export_options,
    field_option,
    jobs_option,
    model_option,
    study_options,
    sweep_options,
    tracking_options,
    train_options,
    train_run_options,
)
from cifarlab.config import recipe
from cifarlab.data import DATASETS
from cifarlab.distributed import mark_every_rank
from cifarlab.errors import CifarlabError
from cifarlab.experiments import run_seeds, run_sweep
from cifarlab.model_registry import describe_models
from cifarlab.spec import read_spec
from cifarlab.study import choose_spec, run_study
from cifarlab.train_loop import train_from_options


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cifarlab")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Train and study CNN image classifiers on CIFAR-10, reproducibly and fast.

    Every command writes a run folder (--out, default under runs/) with its
    config, metrics, figures and summary.
    """
    if ctx.invoked_subcommand != "train" and _torchrun_rank() is not None:
        raise mark_every_rank(
            CifarlabError(
                f"torchrun runs `cifarlab train` only; run `cifarlab {ctx.invoked_subcommand}` "
                "as one process"
            )
        )


@cli.command()
@data_options
@click.option("--out", type=click.Path(), default=None, help="Run folder (default runs/analyze-*).")
def analyze(out: str | None, **options: Any) -> None:
    """Dataset analysis: sizes, classes, format, per-channel statistics and figures.

    Writes analysis.json, sample images per class (train and test) and the class
    distributions as PNG, and prints a summary table.
    """
    result, run_dir, t_load = analysis.analyze_command(data_args(options), out)
    click.echo(analysis.format_table(result))
    click.echo(f"\n  loaded in {t_load:.2f} s, statistics in {result['seconds_statistics']:.2f} s")
    click.echo(f"  wrote {run_dir}/analysis.json and {len(analysis.FIGURES)} figures")


@cli.command()
@train_options
@train_run_options
@tracking_options
def train(config_file, out, resume, quiet, backend, dist_timeout, tracking, **flags) -> None:
    """Train a model and write its run folder.

    The run folder gets config.json, metrics.jsonl (one line per epoch),
    checkpoint.pt (at the end of every epoch), curves.png, confusion_matrix.png,
    summary.json and TensorBoard events in tb/ (and an MLflow run with --mlflow).
    Defaults come from the model's recipe (see README); a --config file
    overrides them and flags override the file. Started by torchrun, it trains
    with DistributedDataParallel (--batch-size is then the global batch).
    """
    train_from_options(flags, config_file=config_file, out=out, resume=resume,
                       progress=not quiet, backend=backend, dist_timeout=dist_timeout,
                       tracking=tracking)  # fmt: skip


@cli.command()
@sweep_options
@click.option("--out", type=click.Path(), default=None, help="Folder (default runs/sweep-*).")
@jobs_option
@executor_options
@tracking_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sweep(out, jobs, quiet, executor_args, tracking, **options) -> None:
    """Train one model over several values of one or more options, as a grid.

    Give any train option a comma-separated list, e.g. `--lr 0.01,0.03,0.05`;
    several lists make a grid. Each combination is its own run folder (under
    OUT/runs, reused if already trained). Writes sweep.json (final and best
    validation accuracy, test accuracy, loss stability) and sweep.png
    (validation accuracy and loss per epoch for every value).
    """
    result, run_dir = run_sweep(options, out, jobs=jobs, progress=not quiet,
                                executor=executor_args, tracking=tracking)  # fmt: skip
    names = result["options"]
    header = names + ["final val", "best val", "test acc", "val loss rises"]
    click.echo("\n" + "  ".join(f"{h:>12}" for h in header))
    for row in result["rows"]:
        cells = [str(row[n]) for n in names] + [
            f"{100 * row['final_val_acc']:.2f}%", f"{100 * row['best_val_acc']:.2f}%",
            f"{100 * row['test_acc']:.2f}%", str(row["val_loss_rises"]),
        ]  # fmt: skip
        click.echo("  ".join(f"{c:>12}" for c in cells))
    click.echo(f"\nwrote {run_dir}/sweep.json and sweep.png")


@cli.command()
@click.option(
    "--seeds",
    "seed_text",
    default="5-9",
    show_default=True,
    help="A range like 5-9 or a list like 1,2,3.",
)
@train_options
@click.option("--out", type=click.Path(), default=None, help="Folder (default runs/seeds-*).")
@jobs_option
@executor_options
@tracking_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def seeds(seed_text, out, jobs, quiet, executor_args, tracking, **flags) -> None:
    """Train one configuration under several seeds and report the spread.

    Prints each seed's test accuracy and loss, the mean, sample standard
    deviation, min, max, range and the 95% confidence interval of the mean;
    writes seeds.json and, for several seeds, seeds.png (each seed's result and the mean).
    """
    result, run_dir = run_seeds(seed_text, flags, out, jobs=jobs, progress=not quiet,
                                executor=executor_args, tracking=tracking)  # fmt: skip
    click.echo(f"\n{'seed':>6}{'test acc':>11}{'test loss':>11}")
    for row in result["rows"]:
        click.echo(f"{row['seed']:>6}{100 * row['test_acc']:>10.2f}%{row['test_loss']:>11.4f}")
    st = result["test_acc"]
    std = f"{100 * st['std']:.2f}" if st["std"] is not None else "-"
    click.echo(f"\nmean {100 * st['mean']:.2f}% +- {std} (sample std), "
               f"min {100 * st['min']:.2f}%, max {100 * st['max']:.2f}%, "
               f"range {100 * st['range']:.2f} points")  # fmt: skip
    if st["ci95_low"] is not None:
        click.echo(f"95% confidence interval of the mean: {100 * st['ci95_low']:.2f}% .. "
                   f"{100 * st['ci95_high']:.2f}%")  # fmt: skip
    figure = " and seeds.png" if len(result["rows"]) > 1 else ""
    click.echo(f"wrote {run_dir}/seeds.json{figure}")


@cli.command()
@data_options
@study_options
@jobs_option
@field_option("device", default="auto", show_default=True)
@field_option("precision", default="auto", show_default=True)
@field_option("compile", default="none", show_default=True)
@executor_options
@tracking_options
@click.option("--quiet", is_flag=True, help="No progress bars within runs.")
def study(
    out,
    spec_file,
    print_spec,
    quick,
    jobs,
    device,
    precision,
    compile,
    executor_args,
    tracking,
    quiet,
    **options,
) -> None:
    """Run every step of a study and write report.md and report.html.

    By default the original study: dataset analysis, base CNN, learning-rate
    sweeps for both models, epoch study, improved CNN, seed sensitivity (seeds
    5-9), on CIFAR-10 (or another --dataset). With --spec, your own. Each run is
    cached by its config under OUT/runs: running the study again reuses
    finished runs and resumes an interrupted one.
    """
    spec = read_spec(spec_file) if spec_file else None
    given = {k: v for k, v in options.items() if v is not None}
    if print_spec:
        shown = choose_spec(spec, quick, {k: v for k, v in given.items() if k != "data_dir"})
        click.echo(shown.to_yaml(), nl=False)
        return
    run_study(out, spec=spec, data_options=given, quick=quick, jobs=jobs, device=device,
              precision=precision, compile=compile, progress=not quiet,
              executor=executor_args, tracking=tracking)  # fmt: skip


@cli.command()
def datasets() -> None:
    """List the datasets cifarlab reads, with what each expects in --data-dir."""
    for name, spec in DATASETS.items():
        download = (
            "downloaded when no --data-dir is given" if spec.download else "--data-dir needed"
        )
        click.echo(f"{name:<15}{spec.description}")
        for line in textwrap.wrap(f"--data-dir: {spec.expected}; {download}", 84):
            click.echo(" " * 15 + line)


@cli.command()
@click.argument("references", nargs=-1, metavar="[MODEL]...")
def models(references: tuple[str, ...]) -> None:
    """List the models with their parameter counts, descriptions and default recipes; with
    MODEL arguments (names or references like nets/mine.py:small), describe those.

    Your own models: --model path/to/file.py:function or package.module:function, or
    installed packages' entry points (group `cifarlab.models`), listed here too. Their
    description is the first paragraph of the function's docstring.
    """

    def wrapped(text: str) -> str:
        lines = textwrap.wrap(text, 100 - 24) or [""]
        return "\n".join([lines[0], *(" " * 24 + line for line in lines[1:])])

    described = describe_models(list(references))  # errors before any output
    click.echo(f"{'model':<10}{'parameters':>12}  description (CIFAR-10 shapes)")
    for name, n, description in described:
        if len(name) > 10:  # a reference: on a line of its own
            click.echo(name)
        click.echo(f"{name if len(name) <= 10 else '':<10}{n:>12,}  {wrapped(description)}")
        r = {k: v for k, v in recipe(name).items() if k != "model"}
        if r:
            text = "recipe: " + ", ".join(f"{k}={v}" for k, v in r.items())
            click.echo(" " * 24 + wrapped(text))
    if not references:
        click.echo("\nyour own: --model path/to/file.py:function or "
                   "--model package.module:function")  # fmt: skip


# ------------------------------------------------------------- evaluate, predict, export


@cli.command()
@click.argument("run_or_checkpoint", type=click.Path())
@data_options
@model_option
@click.option(
    "--split",
    type=click.Choice(["test", "val", "full-test"]),
    default="test",
    show_default=True,
    help="test/val: the run's own test or validation split, rebuilt from its config "
    "(test reproduces summary.json's test_acc); full-test: all 10,000 test images.",
)
@click.option(
    "--out",
    type=click.Path(),
    default=None,
    help="Output folder (default RUN/evaluate-SPLIT for a run folder, else runs/evaluate-*).",
)
@field_option("device", default="auto", show_default=True)
@field_option("precision", help="Default: the precision the run used (so its numbers repeat).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Default: the run's.")
def evaluate(
    run_or_checkpoint, model_ref, split, out, device, precision, batch_size, **options
) -> None:
    """Evaluate a trained model: loss, accuracy, per-class metrics, confusion matrix.

    RUN_OR_CHECKPOINT is a run folder (its checkpoint.pt) or a checkpoint file.
    Writes evaluation.json (fractions) and confusion_matrix.png (a heat map with
    counts) and prints a table (percentages).
    """
    given = {k: v for k, v in options.items() if v is not None}
    report, out_dir = inference.evaluate_run(
        run_or_checkpoint, split=split, out=out, device=device, precision=precision,
        batch_size=batch_size, model=model_ref, data_options=given,
    )  # fmt: skip
    click.echo(inference.format_report(report))
    click.echo(f"\n  wrote {out_dir}/evaluation.json and confusion_matrix.png")


@cli.command()
@click.argument("run_or_checkpoint", type=click.Path())
@click.argument("images", metavar="IMAGE_OR_FOLDER...", nargs=-1, required=True)
@model_option
@click.option("--top-k", type=click.IntRange(1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, not a table.")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@field_option("device", default="auto", show_default=True)
@field_option("precision", help="Default: the precision the run used.")
def predict(
    run_or_checkpoint, images, model_ref, top_k, as_json, batch_size, device, precision
) -> None:
    """Predict the class of image files, with the top-k probabilities.

    Folders are walked recursively, in sorted order; hidden files are skipped. Each image
    is turned upright by its EXIF orientation, composited on white where it has
    transparency, converted to RGB (grey for 1-channel models) and resized to exactly
    the model's input size, e.g. 32x32 (Pillow's antialiased
    bilinear filter; the aspect ratio is not kept). A file that cannot be read gets one
    line on stderr and the others go on; the exit status is 1 if any file failed.
    """
    t = inference.load_trained(run_or_checkpoint, device, precision, model_ref)
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


@cli.command()
@click.argument("run_or_checkpoint", type=click.Path())
@model_option
@export_options
def export(run_or_checkpoint, model_ref, fmt, input_kind, out) -> None:
    """Export a trained model to ONNX or TorchScript, with a dynamic batch size.

    The exported model is checked before it is written: it runs (onnxruntime or
    torch.jit.load) on a random batch and its logits must be within 1e-4 of PyTorch's.
    Class names, mean and std are stored in the file's metadata.
    """
    path = resolve_checkpoint_path(run_or_checkpoint)
    out = out or exporting.default_export_path(path, fmt, input_kind)
    exporting.check_destination(out)  # before the conversion, which takes a while
    r = exporting.export_trained(load_checkpoint(path), fmt, out, input_kind, model_ref)
    click.echo(
        f"wrote {r['path']} ({r['format']}, {r['input']} input, {r['bytes'] / 1e6:.2f} MB); "
        f"checked on {r['check_batch']} random images: max abs diff {r['max_abs_diff']:.2e} "
        f"from PyTorch (tolerance 1e-4)"
    )


def _torchrun_rank() -> int | None:
    """This process's rank when torchrun started several, else None (no torch import)."""
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return int(os.environ.get("RANK", "0"))
    except ValueError:
        pass
    return None


def main() -> None:
    """Entry point: user errors become one line on stderr, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except CifarlabError as e:
        rank = _torchrun_rank() or 0  # under torchrun: errors every rank raises alike print once
        if rank == 0:
            click.echo(f"error: {e}", err=True)
        elif not getattr(e, "every_rank", False):
            click.echo(f"error (rank {rank}): {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
