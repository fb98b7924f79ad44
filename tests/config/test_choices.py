"""Every choice list the command line offers is the library's own (config/choices.py)."""

import click
import pytest

from cifarlab.cli.main import cli
from cifarlab.config import choices
from cifarlab.errors import CifarlabError


def offered(command: str, option: str) -> tuple:
    param = next(p for p in cli.commands[command].params if p.name == option)
    assert isinstance(param.type, click.Choice), f"{command} --{option} is not a choice"
    return tuple(param.type.choices)


@pytest.mark.parametrize(
    ("command", "option", "expected"),
    [
        ("compare", "metric", choices.COMPARE_METRICS),
        ("compare", "test", choices.COMPARE_TESTS),
        ("evaluate", "which", choices.CHECKPOINTS),
        ("predict", "which", choices.CHECKPOINTS),
        ("evaluate", "split", choices.SPLITS),
        ("export", "fmt", choices.EXPORT_FORMATS),
        ("export", "input_kind", choices.EXPORT_INPUTS),
        ("sweep", "executor", choices.EXECUTORS),
        ("train", "backend", ("auto", *choices.BACKENDS)),
        ("tune", "sampler", choices.TUNE_SAMPLERS),
        ("tune", "pruner", choices.TUNE_PRUNERS),
        ("tune", "metric", tuple(choices.TUNE_METRICS)),
    ],
)
def test_command_line_offers_the_library_list(command, option, expected):
    assert offered(command, option) == tuple(expected)


def test_the_library_refuses_what_the_list_lacks():
    from cifarlab.experiments.placement import make_executor

    with pytest.raises(CifarlabError, match="--executor must be one of local, ray, not 'dask'"):
        make_executor("dask")
