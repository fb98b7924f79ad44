"""The `cifarlab` command line. Each command is a thin layer over a library function."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

import click

from cifarlab import __version__
from cifarlab.config import FIELD_NAMES, FIELDS, choices, flag, kind, parse_list
from cifarlab.errors import CifarlabError

# ------------------------------------------------------- options made from TrainConfig


def field_option(name: str, *, as_list: bool = False, **overrides: Any) -> Callable:
    """The click option of TrainConfig's field `name`: its flag, type and help come from
    the field. as_list: a comma-separated list of values (sweeps), parsed later."""
    help_text = FIELDS[name].metadata["help"]
    base, _ = kind(name)
    if as_list:
        kw: dict[str, Any] = {"type": str, "metavar": "VALUE[,VALUE...]"}
    elif choices(name):
        kw = {"type": click.Choice(choices(name))}
    elif name == "data_dir":
        kw = {"type": click.Path(file_okay=False)}
    else:
        kw = {"type": base}
    decls = [flag(name)]
    if base is bool and not as_list:
        decls = [f"{flag(name)}/--no-{flag(name)[2:]}"]
        kw = {}
    return click.option(*decls, **{"default": None, "help": help_text, **kw, **overrides})


def train_options(f: Callable) -> Callable:
    """Every train option, one value each."""
    for name in reversed(FIELD_NAMES):
        f = field_option(name)(f)
    return f


DATA_FIELDS = ("dataset", "data_dir", "labels", "image_size", "test_fraction", "skip_bad_images")


def data_options(f: Callable) -> Callable:
    """The options that say which data to read (--dataset, --data-dir, ...)."""
    for name in reversed(DATA_FIELDS):
        f = field_option(name)(f)
    return f


def data_args(options: dict[str, Any]) -> dict[str, Any]:
    """load_dataset's arguments from the data options given (the rest at their defaults)."""
    from cifarlab.config import TrainConfig

    given = {k: v for k, v in options.items() if k in DATA_FIELDS and v is not None}
    return TrainConfig(**given).dataset_args()


def sweepable(name: str) -> bool:
    """Options that change what a run computes can take several values in a sweep."""
    return FIELDS[name].metadata["identity"]


def sweep_options(f: Callable) -> Callable:
    """Every train option; those that change what a run computes take comma lists."""
    for name in reversed(FIELD_NAMES):
        f = field_option(name, as_list=sweepable(name))(f)
    return f


# ------------------------------------------ tracking and executor options (not TrainConfig)
# They say where results go and where runs compute, not what a run computes: runs keep
# their cache keys. Each decorator hands the command one object instead of its options.

TRACKING_OPTIONS = [
    click.option("--no-tensorboard", is_flag=True,
                 help="No TensorBoard event files (default: each run writes them into tb/)."),
    click.option("--mlflow", "mlflow_uri", metavar="URI", envvar="MLFLOW_TRACKING_URI",
                 help="Log runs to this MLflow tracking server (default: $MLFLOW_TRACKING_URI; "
                 "without either, no MLflow). Needs cifarlab[mlflow]."),
    click.option("--mlflow-checkpoint", is_flag=True,
                 help="Also upload each run's checkpoint.pt to MLflow."),
    click.option("--mlflow-required", is_flag=True,
                 help="Stop with an error when MLflow is down or refuses (default: one "
                 "warning line, and training goes on without MLflow)."),
]  # fmt: skip


def tracking_options(f: Callable) -> Callable:
    """The tracking options; the command gets `tracking` (cifarlab.tracking.Tracking)."""

    @functools.wraps(f)
    def command(*args: Any, **kw: Any) -> Any:
        from cifarlab.tracking import Tracking

        uri = (kw.pop("mlflow_uri") or "").strip() or None
        checkpoint, required = kw.pop("mlflow_checkpoint"), kw.pop("mlflow_required")
        if uri is None and (checkpoint or required):
            raise CifarlabError(
                "--mlflow-checkpoint and --mlflow-required need --mlflow URI "
                "(or MLFLOW_TRACKING_URI)"
            )
        tracking = Tracking(not kw.pop("no_tensorboard"), uri, checkpoint, required)
        return f(*args, tracking=tracking, **kw)

    for option in reversed(TRACKING_OPTIONS):
        command = option(command)
    return command


EXECUTOR_OPTIONS = [
    click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
                 show_default=True,
                 help="Where the runs train: here, or as Ray tasks (cifarlab[ray]), one GPU "
                 "each on a cluster with GPUs, else --ray-cpus-per-run CPUs."),
    click.option("--ray-address", metavar="ADDRESS", default=None,
                 help="With --executor ray: the cluster to use (auto on one of its nodes, "
                 "ray://HEAD:10001 from outside; default: $RAY_ADDRESS, else start a local "
                 "Ray)."),
    click.option("--ray-cpus-per-run", type=click.IntRange(1), default=None,
                 help="With --executor ray on CPUs: CPUs (and torch threads) per run "
                 "(default: this machine's torch threads)."),
]  # fmt: skip


def executor_options(f: Callable) -> Callable:
    """--executor, --ray-address, --ray-cpus-per-run; the command gets `executor_args`
    (keyword arguments of cifarlab.executors.make_executor, less jobs/data/progress)."""

    @functools.wraps(f)
    def command(*args: Any, **kw: Any) -> Any:
        names = ("executor", "ray_address", "ray_cpus_per_run")
        executor_args = {n: kw.pop(n) for n in names}
        executor_args["name"] = executor_args.pop("executor")
        return f(*args, executor_args=executor_args, **kw)

    for option in reversed(EXECUTOR_OPTIONS):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cifarlab")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Train and study CNN image classifiers on CIFAR-10, reproducibly and fast.

    Every command writes a run folder (--out, default under runs/) with its
    config, metrics, figures and summary.
    """
    if ctx.invoked_subcommand != "train" and _torchrun_rank() is not None:
        from cifarlab.distributed import mark_every_rank

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
    from cifarlab import analysis
    from cifarlab.data import load_dataset
    from cifarlab.runs import new_run_dir

    t0 = time.perf_counter()
    data = load_dataset(**data_args(options))  # first: bad data leaves no empty run folder
    t_load = time.perf_counter() - t0
    run_dir = new_run_dir(out, "analyze")
    result = analysis.write_analysis(data, run_dir)
    click.echo(analysis.format_table(result))
    click.echo(f"\n  loaded in {t_load:.2f} s, statistics in {result['seconds_statistics']:.2f} s")
    click.echo(f"  wrote {run_dir}/analysis.json and {len(analysis.FIGURES)} figures")


@cli.command()
@train_options
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
@click.option(
    "--backend",
    type=click.Choice(["auto", "gloo", "nccl"]),
    default="auto",
    show_default=True,
    help="Under torchrun: the process group's backend (auto: nccl on CUDA, gloo on CPUs).",
)
@click.option(
    "--dist-timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Under torchrun: seconds a process waits for the others before giving up.",
)
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
    from cifarlab.config import read_config_file, resolve
    from cifarlab.distributed import same_on_every_rank
    from cifarlab.runs import new_run_dir
    from cifarlab.training import train as run_training

    with same_on_every_rank():
        if resume is not None:
            cfg, run_dir = _resumed_config(resume, flags, config_file or out)
        else:
            file_values = read_config_file(config_file) if config_file else None
            cfg = resolve(file_values, flags)
            run_dir = new_run_dir(out, "train", create=False)
        tracking.check_required()  # --mlflow-required: a server that is down stops us here
    run_training(
        cfg,
        run_dir,
        resume=resume is not None,
        progress=not quiet,
        backend=backend,
        dist_timeout=dist_timeout,
        tracking=tracking,
    )


def _resumed_config(resume: str, flags: dict[str, Any], other: Any) -> tuple[Any, Any]:
    """The config of the run to resume (its config.json; --data-dir may point elsewhere)."""
    from cifarlab.config import from_dict
    from cifarlab.runs import RunDir

    given = sorted(k for k, v in flags.items() if v is not None and k != "data_dir")
    if given or other:
        extra = ", ".join(flag(k) for k in given) or "--config/--out"
        raise CifarlabError(f"--resume takes its options from {resume}/config.json; drop {extra}")
    run = RunDir(resume)
    values = run.config()
    if flags.get("data_dir"):
        values["data_dir"] = flags["data_dir"]
    try:
        return from_dict(values), run.path
    except CifarlabError as e:
        raise CifarlabError(f"{run.path}/config.json: {e}") from None


jobs_option = click.option(
    "--jobs",
    type=int,
    default=1,
    show_default=True,
    help="Runs at once, each in a worker process that loads the data once: on a CPU they "
    "share its threads, on GPUs worker k uses GPU k mod their number (several may share one).",
)


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
    from cifarlab.executors import make_executor
    from cifarlab.experiments import Runner, configs_for, expand_grid, load_data
    from cifarlab.experiments import sweep as run_sweep
    from cifarlab.runs import new_run_dir
    from cifarlab.tracking import experiment_run

    given = {k: v for k, v in options.items() if v is not None}
    lists = {k: parse_list(k, v) for k, v in given.items() if sweepable(k)}
    fixed = {k: v for k, v in given.items() if not sweepable(k)}
    fixed.update({k: v[0] for k, v in lists.items() if len(v) == 1})
    grid = {k: v for k, v in lists.items() if len(v) > 1}
    if not grid:
        raise CifarlabError("nothing to sweep: give an option several values, e.g. --lr 0.01,0.03")
    configs = configs_for(fixed, expand_grid(grid))  # reject bad values before any work
    data = load_data(configs)  # first: bad data leaves no empty run folder
    executor = make_executor(jobs=jobs, data=data, progress=not quiet, **executor_args)
    run_dir = new_run_dir(out, "sweep")
    params = {**fixed, **{k: ",".join(map(str, v)) for k, v in grid.items()}}
    with closing(executor), experiment_run(tracking, run_dir, "sweep", params) as tracking:
        runner = Runner(data, jobs, not quiet, executor=executor, tracking=tracking)
        result = run_sweep(fixed, grid, run_dir, runner=runner)
    names = list(grid)
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
    writes seeds.json and seeds.png (each seed's result and the mean).
    """
    from cifarlab.executors import make_executor
    from cifarlab.experiments import Runner, configs_for, load_data, parse_seeds, seed_study
    from cifarlab.runs import new_run_dir
    from cifarlab.tracking import experiment_run

    seed_list = parse_seeds(seed_text)
    if flags.get("seed") is not None:
        raise CifarlabError("use --seeds, not --seed, with `cifarlab seeds`")
    fixed = {k: v for k, v in flags.items() if v is not None}
    configs = configs_for(fixed, [{"seed": s} for s in seed_list])  # bad values: before work
    data = load_data(configs)  # first: bad data leaves no empty folder
    executor = make_executor(jobs=jobs, data=data, progress=not quiet, **executor_args)
    run_dir = new_run_dir(out, "seeds")
    params = {**fixed, "seeds": seed_text}
    with closing(executor), experiment_run(tracking, run_dir, "seeds", params) as tracking:
        runner = Runner(data, jobs, not quiet, executor=executor, tracking=tracking)
        result = seed_study(fixed, seed_list, run_dir, runner=runner)
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
    click.echo(f"wrote {run_dir}/seeds.json and seeds.png")


@cli.command()
@data_options
@click.option(
    "--out",
    type=click.Path(),
    default="runs/study",
    show_default=True,
    help="Study folder; running again reuses its finished runs.",
)
@click.option(
    "--spec",
    "spec_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Your study as a YAML file (dataset, models and their recipes, lrs, seeds, epoch "
    "study); `--print-spec` shows the form. Default: the original study.",
)
@click.option(
    "--print-spec",
    is_flag=True,
    help="Print the study that would run (the original, or --spec) as YAML, and stop.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="The original study on a small subset with few epochs (a smoke test).",
)
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
    from cifarlab.executors import LocalExecutor, make_executor
    from cifarlab.spec import read_spec
    from cifarlab.study import choose_spec, run_study

    spec = read_spec(spec_file) if spec_file else None
    given = {k: v for k, v in options.items() if v is not None}
    if print_spec:
        shown = choose_spec(spec, quick, {k: v for k, v in given.items() if k != "data_dir"})
        click.echo(shown.to_yaml(), nl=False)
        return
    executor = make_executor(jobs=jobs, progress=not quiet, **executor_args)
    with closing(executor):  # the study makes the local executor itself, with its data
        local = isinstance(executor, LocalExecutor)
        run_study(out, spec=spec, data_options=given, quick=quick, jobs=jobs, device=device,
                  precision=precision, compile=compile, progress=not quiet,
                  executor=None if local else executor, tracking=tracking)  # fmt: skip


@cli.command()
def datasets() -> None:
    """List the datasets cifarlab reads, with what each expects in --data-dir."""
    import textwrap

    from cifarlab.data import DATASETS, dataset_spec

    dataset_spec("cifar10")  # registers the built-in readers
    for name, spec in DATASETS.items():
        download = (
            "downloaded when no --data-dir is given" if spec.download else "--data-dir needed"
        )
        click.echo(f"{name:<15}{spec.description}")
        for line in textwrap.wrap(f"--data-dir: {spec.expected}; {download}", 84):
            click.echo(" " * 15 + line)


@cli.command()
def models() -> None:
    """List the models with their parameter counts, descriptions and default recipes.

    Your own models: --model path/to/file.py:function or package.module:function, or
    installed packages' entry points (group `cifarlab.models`), listed here too.
    """
    import textwrap

    from cifarlab.config import recipe
    from cifarlab.models import build_model, count_parameters
    from cifarlab.plugins import all_names, find_model

    def wrapped(text: str) -> str:
        lines = textwrap.wrap(text, 100 - 24) or [""]
        return "\n".join([lines[0], *(" " * 24 + line for line in lines[1:])])

    click.echo(f"{'model':<10}{'parameters':>12}  description (CIFAR-10 shapes)")
    for name in all_names():
        spec = find_model(name)
        n = count_parameters(build_model(name))
        click.echo(f"{name:<10}{n:>12,}  {wrapped(spec.description)}")
        r = {k: v for k, v in recipe(name).items() if k != "model"}
        if r:
            text = "recipe: " + ", ".join(f"{k}={v}" for k, v in r.items())
            click.echo(" " * 24 + wrapped(text))
    click.echo("\nyour own: --model path/to/file.py:function or --model package.module:function")


# ------------------------------------------------------------- evaluate, predict, export


model_option = click.option(
    "--model",
    "model_ref",
    default=None,
    help="The run's model again, when its code is outside cifarlab (path/to/file.py:function "
    "or package.module:function): code named only in a checkpoint is never imported.",
)


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
    from pathlib import Path

    from cifarlab import inference, plots
    from cifarlab.data import load_dataset
    from cifarlab.files import write_json
    from cifarlab.runs import make_dir, new_run_dir

    t = inference.load_trained(run_or_checkpoint, device, precision, model_ref)
    if out is None and Path(run_or_checkpoint).is_dir():
        out = Path(run_or_checkpoint) / f"evaluate-{split}"
    out_dir = new_run_dir(out, "evaluate", create=False)
    given = {k: v for k, v in options.items() if v is not None}
    data = load_dataset(**inference.run_dataset_args(t.ckpt, given))
    report, _ = inference.evaluate_trained(t, data, split, batch_size)
    make_dir(out_dir)
    write_json(out_dir / "evaluation.json", report)
    title = f"{report['model']}, {split} split: accuracy {100 * report['accuracy']:.2f}%"
    png = out_dir / "confusion_matrix.png"
    plots.confusion_heatmap(report["confusion_matrix"], t.classes, png, title)
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
    import json

    from cifarlab import inference

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
@click.option(
    "--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True
)
@click.option(
    "--input",
    "input_kind",
    type=click.Choice(["normalized", "raw"]),
    default="normalized",
    show_default=True,
    help="normalized: float32 NCHW, normalized with the checkpoint's mean/std. "
    "raw: uint8 NCHW in 0..255, the normalization inside the exported model.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="File to write (default next to the checkpoint: model[-raw].onnx or "
    "model[-raw].torchscript.pt).",
)
def export(run_or_checkpoint, model_ref, fmt, input_kind, out) -> None:
    """Export a trained model to ONNX or TorchScript, with a dynamic batch size.

    The exported model is checked before it is written: it runs (onnxruntime or
    torch.jit.load) on a random batch and its logits must be within 1e-4 of PyTorch's.
    Class names, mean and std are stored in the file's metadata.
    """
    from cifarlab import inference
    from cifarlab.checkpoint import load_checkpoint, resolve_checkpoint_path

    path = resolve_checkpoint_path(run_or_checkpoint)
    ckpt = load_checkpoint(path)
    out = out or inference.default_export_path(path, fmt, input_kind)
    r = inference.export_trained(ckpt, fmt, out, input_kind, model_ref)
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
