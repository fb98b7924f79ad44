"""The `cifarlab` command line. Each command is a thin layer over a library function.

Each command (here, in cli/experiments.py and cli/trained.py) imports the library it
calls inside its function, when it runs, not when the module loads: so `cifarlab --help`,
`--version` and a mistyped option answer in a tenth of a second instead of the two seconds
torch, matplotlib and TensorBoard take to import.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from cifarlab._version import __version__
from cifarlab.cli.audit import audit
from cifarlab.cli.catalog import CATALOG
from cifarlab.cli.command_options import train_run_options
from cifarlab.cli.experiments import EXPERIMENTS
from cifarlab.cli.options import (
    data_args,
    data_options,
    tracking_options,
    train_options,
)
from cifarlab.cli.trained import COMMANDS
from cifarlab.errors import CifarlabError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cifarlab")
@click.option(
    "--figure-format",
    "figure_format",
    metavar="FORMAT[,FORMAT]",
    default="png",
    show_default=True,
    help="Figures in these formats too: png, svg, pdf (e.g. "
    "svg,pdf for a paper: beside each PNG). Before the command: cifarlab "
    "--figure-format svg study ...",
)
@click.pass_context
def cli(ctx: click.Context, figure_format: str) -> None:
    """Train and study CNN image classifiers on CIFAR-10, reproducibly and fast.

    The commands that train or analyse write a run folder (--out, default under
    runs/) with its config, metrics, figures and summary.
    """
    from cifarlab.report.style import set_formats  # imports no matplotlib

    set_formats(figure_format)
    if ctx.invoked_subcommand != "train" and _torchrun_rank() is not None:
        from cifarlab.training.distributed import mark_every_rank

        raise mark_every_rank(
            CifarlabError(
                f"torchrun runs `cifarlab train` only; run `cifarlab {ctx.invoked_subcommand}` "
                "as one process"
            )
        )


@cli.command()
@data_options
@click.option(
    "--out", type=click.Path(), default=None, help="Run folder (default runs/analyze-<time>)."
)
def analyze(out: str | None, **options: Any) -> None:
    """Dataset analysis: sizes, classes, format, per-channel statistics and figures.

    Writes analysis.json, sample images per class (train and test) and the class
    distributions as PNG, and prints a summary table.
    """
    from cifarlab.study import analysis

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
    Defaults come from the model's recipe (`cifarlab models`); a --config file
    overrides them and flags override the file. Started by torchrun, it trains
    with DistributedDataParallel (--batch-size is then the global batch).
    """
    from cifarlab.training.loop import train_from_options

    train_from_options(
        flags,
        config_file=config_file,
        out=out,
        resume=resume,
        progress=not quiet,
        backend=backend,
        dist_timeout=dist_timeout,
        tracking=tracking,
    )


# datasets, models; sweep, seeds, study, tune, compare; evaluate, predict, explain, export
for command in (*CATALOG, *EXPERIMENTS, *COMMANDS, audit):
    cli.add_command(command)


def _torchrun_rank() -> int | None:
    """This process's rank when torchrun started several, else None (no torch import)."""
    try:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            return int(os.environ.get("RANK", "0"))
    except ValueError:
        pass
    return None


INTERRUPTED = (
    "interrupted; every finished epoch is saved: `cifarlab train --resume RUN` continues a "
    "run, and the same sweep, seeds, study or tune command again continues where it stopped"
)


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
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(INTERRUPTED, err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
