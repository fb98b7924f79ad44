"""The `cifarlab` command line. Each command is a thin layer over a library function."""

from __future__ import annotations

import sys
import time

import click

from cifarlab import __version__
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
