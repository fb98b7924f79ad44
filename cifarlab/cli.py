"""The `cifarlab` command line. Each command is a thin layer over a library function."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from cifarlab import __version__
from cifarlab.config import AUGMENTS, DEVICES, PRECISIONS, SCHEDULES, VAL_FROM
from cifarlab.errors import CifarlabError

DATA_DIR_HELP = (
    "CIFAR-10 folder (cifar-10-batches-py or its parent). "
    "Default: $CIFARLAB_DATA, else ~/.cache/cifarlab, downloading there if missing."
)


def data_dir_option(f):
    return click.option(
        "--data-dir", type=click.Path(file_okay=False), default=None, help=DATA_DIR_HELP
    )(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cifarlab")
def cli() -> None:
    """Train and study CNN image classifiers on CIFAR-10, reproducibly and fast.

    Every command writes a run folder (--out, default under runs/) with its
    config, metrics, figures and summary.
    """


@cli.command()
@data_dir_option
@click.option("--out", type=click.Path(), default=None, help="Run folder (default runs/analyze-*).")
def analyze(data_dir: str | None, out: str | None) -> None:
    """Dataset analysis: sizes, classes, format, per-channel statistics and figures.

    Writes analysis.json, sample images per class (train and test) and the class
    distributions as PNG, and prints a summary table.
    """
    from cifarlab import analysis, plots
    from cifarlab.data import load_cifar10
    from cifarlab.runs import new_run_dir, write_json

    run_dir = new_run_dir(out, "analyze")
    t0 = time.perf_counter()
    data = load_cifar10(data_dir)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = analysis.analyze(data)
    t_stats = time.perf_counter() - t0
    result["seconds"] = {"load": round(t_load, 3), "statistics": round(t_stats, 3)}
    write_json(run_dir / "analysis.json", result)
    figures = {
        "samples_train.png": lambda p: plots.sample_grid(
            data.train.images, data.train.labels, data.classes, "Sample images: train", p
        ),
        "samples_test.png": lambda p: plots.sample_grid(
            data.test.images, data.test.labels, data.classes, "Sample images: test", p
        ),
        "class_distribution_train.png": lambda p: plots.class_distribution(
            result["train_class_counts"], data.classes, "Class distribution: train", p
        ),
        "class_distribution_test.png": lambda p: plots.class_distribution(
            result["test_class_counts"], data.classes, "Class distribution: test", p
        ),
    }
    for name, draw in figures.items():
        draw(run_dir / name)
    click.echo(analysis.format_table(result))
    click.echo(f"\n  loaded in {t_load:.2f} s, statistics in {t_stats:.2f} s")
    click.echo(f"  wrote {run_dir}/analysis.json and {len(figures)} figures")


# Train options: (flag name, click type, help). Shared by train, sweep and seeds.
TRAIN_OPTIONS: list[tuple[str, Any, str]] = [
    ("model", str, "Model name (see `cifarlab models`); its recipe sets the defaults."),
    ("epochs", int, "Passes over the training set."),
    ("lr", float, "Peak learning rate of SGD."),
    ("batch-size", int, "Images per optimizer step."),
    ("momentum", float, "SGD momentum."),
    ("nesterov", bool, "Nesterov momentum."),
    ("weight-decay", float, "L2 weight decay."),
    ("schedule", click.Choice(SCHEDULES), "Learning-rate schedule per step."),
    ("warmup-epochs", float, "Linear warm-up length, in epochs."),
    ("label-smoothing", float, "Label smoothing of the cross-entropy loss."),
    ("augment", click.Choice(AUGMENTS), "Training augmentation: none or flip-crop."),
    ("seed", int, "Seed of weights, data order, augmentation and dropout."),
    ("split-seed", int, "Seed of the validation split (kept fixed across seeds)."),
    ("val-from", click.Choice(VAL_FROM), "Validation from half the test set, or from train."),
    ("val-size", int, "Validation images (default: half the test set, or 5000 of train)."),
    ("limit", int, "Use only the first N training images (quick runs)."),
    ("eval-limit", int, "Use at most N validation and N test images (quick runs)."),
    ("device", click.Choice(DEVICES), "auto picks CUDA when available."),
    ("precision", click.Choice(PRECISIONS), "auto: bf16 where the hardware has it, else fp32."),
    ("eval-batch-size", int, "Images per evaluation batch."),
]


def train_options(f):
    for name, kind, help_text in reversed(TRAIN_OPTIONS):
        if kind is bool:
            f = click.option(f"--{name}/--no-{name}", default=None, help=help_text)(f)
        else:
            f = click.option(f"--{name}", type=kind, default=None, help=help_text)(f)
    return f


@cli.command()
@train_options
@data_dir_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="YAML or TOML file of train options; flags override it.",
)
@click.option("--out", type=click.Path(), default=None, help="Run folder (default runs/train-*).")
@click.option(
    "--resume",
    type=click.Path(file_okay=False),
    default=None,
    help="Continue the interrupted run in this folder, with its own config.",
)
@click.option("--quiet", is_flag=True, help="No progress bar (the per-epoch lines remain).")
def train(config_file, out, resume, quiet, **flags) -> None:
    """Train a model and write its run folder.

    The run folder gets config.json, metrics.jsonl (one line per epoch),
    checkpoint.pt (at the end of every epoch), curves.png and summary.json.
    Defaults come from the model's recipe (see README); a --config file
    overrides them and flags override the file.
    """
    from pathlib import Path

    from cifarlab.config import TrainConfig, read_config_file, resolve
    from cifarlab.runs import new_run_dir, read_json
    from cifarlab.train import train as run_training

    if resume is not None:
        given = sorted(k for k, v in flags.items() if v is not None and k != "data_dir")
        if given or config_file or out:
            extra = ", ".join("--" + k.replace("_", "-") for k in given) or "--config/--out"
            raise CifarlabError(
                f"--resume takes its options from {resume}/config.json; drop {extra}"
            )
        run_dir = Path(resume)
        values = read_json(run_dir / "config.json")
        if flags.get("data_dir"):
            values["data_dir"] = flags["data_dir"]
        try:
            cfg = TrainConfig(**values)
        except TypeError:
            raise CifarlabError(f"{run_dir}/config.json is not a cifarlab train config") from None
        run_training(cfg, run_dir, resume=True, progress=not quiet)
        return
    file_values = read_config_file(config_file) if config_file else None
    cfg = resolve(file_values, {k: v for k, v in flags.items()})
    run_dir = new_run_dir(out, "train", create=False)
    run_training(cfg, run_dir, progress=not quiet)


@cli.command()
def models() -> None:
    """List the models with their parameter counts and default recipes."""
    from cifarlab.config import recipe
    from cifarlab.models import REGISTRY, build_model, count_parameters

    click.echo(f"{'model':<10}{'parameters':>12}  description")
    for name, spec in REGISTRY.items():
        n = count_parameters(build_model(name))
        click.echo(f"{name:<10}{n:>12,}  {spec.description}")
        r = {k: v for k, v in recipe(name).items() if k != "model"}
        click.echo(f"{'':<24}recipe: " + ", ".join(f"{k}={v}" for k, v in r.items()))


def main() -> None:
    """Entry point: user errors become one line on stderr, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except CifarlabError as e:
        click.echo(f"error: {e}", err=True)
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
