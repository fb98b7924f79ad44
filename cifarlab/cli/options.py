"""The command line's options, made once and shared by the commands (the options of one
command each are in cli/command_options.py).

Train options come from TrainConfig's fields (cifarlab.config.options): flag, type, choices and
help. Tracking and executor options say where results go and where runs compute, not what
a run computes: each decorator hands the command one value instead of its options.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from cifarlab.config.choices import EXECUTORS
from cifarlab.config.options import FIELD_NAMES, OPTIONS, TrainConfig, flag
from cifarlab.errors import CifarlabError

# ------------------------------------------------------- options made from TrainConfig


def field_option(name: str, *, as_list: bool = False, **overrides: Any) -> Callable:
    """The click option of TrainConfig's field `name`: its flag, type and help come from
    the field. as_list: a comma-separated list of values (sweeps), parsed later."""
    spec = OPTIONS[name]
    base = spec.base
    if as_list:
        metavar = "B1,B2[;B1,B2...]" if spec.pair else "VALUE[,VALUE...]"
        kw: dict[str, Any] = {"type": str, "metavar": metavar}
    elif spec.pair:
        kw = {"type": str, "metavar": "B1,B2"}
    elif spec.choices:
        kw = {"type": click.Choice(spec.choices)}
    elif name == "data_dir":
        kw = {"type": click.Path(file_okay=False)}
    else:
        kw = {"type": base}
    decls = [flag(name)]
    if base is bool and not as_list:
        decls = [f"{flag(name)}/--no-{flag(name)[2:]}"]
        kw = {}
    return click.option(*decls, **{"default": None, "help": spec.help, **kw, **overrides})


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
    given = {k: v for k, v in options.items() if k in DATA_FIELDS and v is not None}
    return TrainConfig(**given).dataset_args()


def sweepable(name: str) -> bool:
    """Options that change what a run computes can take several values in a sweep."""
    return OPTIONS[name].identity


def sweep_options(f: Callable) -> Callable:
    """Every train option; those that change what a run computes take comma lists. A
    boolean one is also a flag: `--nesterov` (true), `--no-nesterov` (false), or a list to
    sweep: `--nesterov true,false`."""
    booleans = [n for n in FIELD_NAMES if sweepable(n) and OPTIONS[n].base is bool]

    @functools.wraps(f)
    def command(*args: Any, **kw: Any) -> Any:
        for name in booleans:
            if kw.pop(f"no_{name}"):
                if kw[name] is not None:
                    raise CifarlabError(f"give {flag(name)} or --no-{flag(name)[2:]}, not both")
                kw[name] = "false"
        return f(*args, **kw)

    for name in reversed(FIELD_NAMES):
        if name in booleans:
            off = f"{flag(name)} false; {flag(name)} alone: true; {flag(name)} true,false: both."
            command = click.option(f"--no-{flag(name)[2:]}", f"no_{name}", is_flag=True, help=off)(
                command
            )
            command = field_option(
                name, as_list=True, is_flag=False, flag_value="true", metavar="[true,false]"
            )(command)
        else:
            command = field_option(name, as_list=sweepable(name))(command)
    return command


# ------------------------------------------ tracking and executor options (not TrainConfig)
# They say where results go and where runs compute, not what a run computes: runs keep
# their cache keys. Each decorator hands the command one object instead of its options.

TRACKING_OPTIONS = [
    click.option(
        "--no-tensorboard",
        is_flag=True,
        help="No TensorBoard event files (default: each run writes them into tb/).",
    ),
    click.option(
        "--mlflow",
        "mlflow_uri",
        metavar="URI",
        envvar="MLFLOW_TRACKING_URI",
        help="Log runs to this MLflow tracking server (default: $MLFLOW_TRACKING_URI; "
        "without either, no MLflow). Needs cifarlab[mlflow].",
    ),
    click.option(
        "--mlflow-checkpoint", is_flag=True, help="Also upload each run's checkpoint.pt to MLflow."
    ),
    click.option(
        "--mlflow-required",
        is_flag=True,
        help="Stop with an error when MLflow is down or refuses (default: one "
        "warning line, and training goes on without MLflow).",
    ),
]


def tracking_options(f: Callable) -> Callable:
    """The tracking options; the command gets `tracking` (cifarlab.runs.tracking.Tracking)."""

    @functools.wraps(f)
    def command(*args: Any, **kw: Any) -> Any:
        from cifarlab.runs.tracking import Tracking

        uri = (kw.pop("mlflow_uri") or "").strip() or None
        checkpoint, required = kw.pop("mlflow_checkpoint"), kw.pop("mlflow_required")
        if uri is None and (checkpoint or required):
            raise CifarlabError(
                "--mlflow-checkpoint and --mlflow-required need --mlflow URI "
                "(or MLFLOW_TRACKING_URI)"
            )
        tracking = Tracking(not kw.pop("no_tensorboard"), uri, checkpoint, required)
        tracking.check_installed()  # before the command writes anything
        return f(*args, tracking=tracking, **kw)

    for option in reversed(TRACKING_OPTIONS):
        command = option(command)
    return command


EXECUTOR_OPTIONS = [
    click.option(
        "--executor",
        type=click.Choice(EXECUTORS),
        default="local",
        show_default=True,
        help="Where the runs train: here, or as Ray tasks (cifarlab[ray]), one GPU "
        "each on a cluster with GPUs, else --ray-cpus-per-run CPUs.",
    ),
    click.option(
        "--ray-address",
        metavar="ADDRESS",
        default=None,
        help="With --executor ray: the cluster to use (auto on one of its nodes, "
        "ray://HEAD:10001 from outside; default: $RAY_ADDRESS, else start a local "
        "Ray).",
    ),
    click.option(
        "--ray-cpus-per-run",
        type=click.IntRange(1),
        default=None,
        help="With --executor ray on CPUs: CPUs (and torch threads) per run "
        "(default: this machine's torch threads).",
    ),
]


def executor_options(f: Callable) -> Callable:
    """--executor, --ray-address, --ray-cpus-per-run; the command gets `executor`, one
    cifarlab.experiments.executors.ExecutorSettings (checked as it is made)."""

    @functools.wraps(f)
    def command(*args: Any, **kw: Any) -> Any:
        from cifarlab.experiments.placement import ExecutorSettings  # lazy: imports torch

        name, address, cpus = (kw.pop(n) for n in ("executor", "ray_address", "ray_cpus_per_run"))
        return f(*args, executor=ExecutorSettings(name, address, cpus), **kw)

    for option in reversed(EXECUTOR_OPTIONS):
        command = option(command)
    return command


jobs_option = click.option(
    "--jobs",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Runs at once, each in a worker process that loads the data once: on a CPU they "
    "share its threads, on GPUs worker k uses GPU k mod their number (several may share one).",
)


model_option = click.option(
    "--model",
    "model_ref",
    default=None,
    help="The run's model again, when its code is outside cifarlab (path/to/file.py:function "
    "or package.module:function): code named only in a checkpoint is never imported.",
)


def stacked(*options: Callable) -> Callable:
    """One decorator of several click options, in the order given."""

    def apply(f: Callable) -> Callable:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


def config_option(help_text: str) -> Callable:
    """--config FILE (the command gets `config_file`)."""
    return click.option(
        "--config", "config_file", type=click.Path(dir_okay=False), default=None, help=help_text
    )
