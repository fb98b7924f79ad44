"""The commands over many runs: sweep, seeds, study, tune and compare (cifarlab.cli.main
adds them to the `cifarlab` group). Like every command, each imports the library it calls
when it runs, not when the module loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cifarlab.cli.command_options import study_options, tune_options
from cifarlab.cli.options import (
    data_options,
    executor_options,
    field_option,
    jobs_option,
    sweep_options,
    tracking_options,
    train_options,
)
from cifarlab.config.choices import COMPARE_METRICS, COMPARE_TESTS
from cifarlab.report.format import percent


@click.command()
@sweep_options
@click.option("--out", type=click.Path(), default=None, help="Folder (default runs/sweep-<time>).")
@jobs_option
@executor_options
@tracking_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def sweep(out, jobs, quiet, executor, tracking, **options) -> None:
    """Train one model over several values of one or more options, as a grid.

    Give any train option a comma-separated list, e.g. `--lr 0.01,0.03,0.05`;
    several lists make a grid. Each combination is its own run folder (under
    OUT/runs, reused if already trained). Writes sweep.json (final and best
    validation accuracy, test accuracy, loss stability) and sweep.png
    (validation accuracy and loss per epoch for every value).
    """
    from cifarlab.experiments.sweeps import run_sweep

    result, run_dir = run_sweep(
        options, out, jobs=jobs, progress=not quiet, executor=executor, tracking=tracking
    )
    header = result.options + ["final val", "best val", "test acc", "val loss rises"]
    click.echo("\n" + "  ".join(f"{h:>12}" for h in header))
    for row in result.rows:
        cells = [str(v) for v in row.values.values()] + [
            percent(row.final_val_acc),
            percent(row.best_val_acc),
            percent(row.test_acc),
            str(row.val_loss_rises),
        ]
        click.echo("  ".join(f"{c:>12}" for c in cells))
    click.echo(f"\nwrote {run_dir}/sweep.json and sweep.png")


@click.command()
@click.option(
    "--seeds",
    "seed_text",
    default="5-9",
    show_default=True,
    help="A range like 5-9 or a list like 1,2,3.",
)
@train_options
@click.option("--out", type=click.Path(), default=None, help="Folder (default runs/seeds-<time>).")
@jobs_option
@executor_options
@tracking_options
@click.option("--quiet", is_flag=True, help="No progress bars.")
def seeds(seed_text, out, jobs, quiet, executor, tracking, **flags) -> None:
    """Train one configuration under several seeds and report the spread.

    Prints each seed's test accuracy and loss, the mean, sample standard
    deviation, min, max, range and the 95% confidence interval of the mean;
    writes seeds.json and, for several seeds, seeds.png (each seed's result and the mean).
    """
    from cifarlab.experiments.sweeps import run_seeds

    result, run_dir = run_seeds(
        seed_text,
        flags,
        out,
        jobs=jobs,
        progress=not quiet,
        executor=executor,
        tracking=tracking,
    )
    click.echo(f"\n{'seed':>6}{'test acc':>11}{'test loss':>11}")
    for row in result.rows:
        click.echo(f"{row.seed:>6}{percent(row.test_acc):>11}{row.test_loss:>11.4f}")
    st = result.test_acc
    std = percent(st.std).rstrip("%")
    click.echo(
        f"\nmean {percent(st.mean)} +- {std} (sample std), "
        f"min {percent(st.min)}, max {percent(st.max)}, "
        f"range {percent(st.range).rstrip('%')} points"
    )
    if st.ci95_low is not None:
        click.echo(
            f"95% confidence interval of the mean: {percent(st.ci95_low)} .. "
            f"{percent(st.ci95_high)}"
        )
    figure = " and seeds.png" if len(result.rows) > 1 else ""
    click.echo(f"wrote {run_dir}/seeds.json{figure}")


@click.command()
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
    seeds_per_config,
    jobs,
    device,
    precision,
    compile,
    executor,
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
    from cifarlab.study.run import (
        choose_spec,
        read_spec,
        run_study,
    )

    spec = read_spec(spec_file) if spec_file else None
    given = {k: v for k, v in options.items() if v is not None}
    if print_spec:
        shown = choose_spec(spec, quick, {k: v for k, v in given.items() if k != "data_dir"})
        shown = shown.with_seeds_per_config(seeds_per_config)
        click.echo(shown.to_yaml(), nl=False)
        return
    run_study(
        out,
        spec=spec,
        data_options=given,
        quick=quick,
        jobs=jobs,
        device=device,
        seeds_per_config=seeds_per_config,
        precision=precision,
        compile=compile,
        progress=not quiet,
        executor=executor,
        tracking=tracking,
    )


@click.command()
@tune_options
@train_options
@jobs_option
@executor_options
@tracking_options
@click.option("--quiet", is_flag=True, help="No overall progress bar (trial lines remain).")
def tune(
    params,
    trials,
    sampler,
    pruner,
    metric,
    confirm_seeds,
    config_file,
    out,
    jobs,
    quiet,
    executor,
    tracking,
    **flags,
) -> None:
    """Search train options with Optuna; every trial is a run folder.

    Fix options as in `train`; search others with --param NAME=SPEC. Trials
    train in OUT/trials/<number>-<hash>/ and report their validation metric
    after every epoch; the pruner stops poor ones (their summary.json says
    "status": "pruned"). Writes trials.csv, tune.json, best.yaml (for `train
    --config`) and report.html/md. Running the same command again continues
    the search in OUT until --trials trials have finished. With --executor
    ray, Ray Tune runs the trials (its ASHA, median or Hyperband scheduler
    stopping them) on a local Ray or a cluster, into the same OUT.
    """
    from cifarlab.config.parse import read_config_file
    from cifarlab.tune.loop import TuneSettings
    from cifarlab.tune.search import run_tune

    fixed = {
        **(read_config_file(config_file) if config_file else {}),
        **{k: v for k, v in flags.items() if v is not None},
    }
    settings = TuneSettings(
        trials=trials,
        sampler=sampler,
        pruner=pruner,
        metric=metric,
        seed=fixed.get("seed", 0),
        jobs=jobs,
    )
    result, folder = run_tune(
        fixed,
        list(params),
        settings,
        out,
        confirm_seeds=confirm_seeds,
        progress=not quiet,
        tracking=tracking,
        executor=executor,
    )
    _print_tune(result, metric, folder)


@click.command()
@click.argument("paths", metavar="PATH...", nargs=-1, required=True, type=click.Path())
@click.option(
    "--out", type=click.Path(), default=None, help="Folder (default runs/compare-<time>)."
)
@click.option(
    "--by",
    metavar="FIELD[,FIELD]",
    default=None,
    help="Group runs by these train options (e.g. model) instead of by their whole "
    "configuration without the seed.",
)
@click.option(
    "--metric",
    type=click.Choice(COMPARE_METRICS),
    default="test_acc",
    show_default=True,
)
@click.option(
    "--test",
    type=click.Choice(COMPARE_TESTS),
    default="t",
    show_default=True,
    help="t: a paired t-test when both groups have the same seeds, else Welch's "
    "(McNemar's exact test with one run a side); or a rank or permutation "
    "test.",
)
def compare(paths, out, by, metric, test) -> None:
    """Is one configuration better than another, beyond noise? Statistics over runs.

    Each PATH is a run folder or a folder of runs (a seeds, sweep or study folder). Runs are
    grouped by their configuration without the seed (or --by); each pair of groups gets the
    difference of means with its 95% interval, a test and its p-value (Holm-adjusted over
    all pairs), Hedges' g, P(a > b) and the seeds a t-test would need for 80% power.
    Writes compare.json, compare.md and compare.png.
    """
    from cifarlab.experiments.compare import compare_command, format_comparison

    result, out_dir = compare_command(list(paths), out, by, metric, test)
    click.echo(format_comparison(result), nl=False)
    click.echo(f"\nwrote {out_dir}/compare.json, compare.md and compare.png")


def _print_tune(result: dict[str, Any], metric: str, folder: Path) -> None:
    """The end of `cifarlab tune`: trial counts, the best trial and the confirmation runs."""
    from cifarlab.tune.report import TuneResult

    click.echo("\n" + "\n".join(TuneResult.from_dict(result).lines(metric)))
    click.echo(f"wrote {folder}/trials.csv, tune.json, best.yaml and report.html")


EXPERIMENTS = (sweep, seeds, study, tune, compare)
