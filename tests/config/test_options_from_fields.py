"""Every train option comes from TrainConfig's fields: its flag, type, choices, help and checks."""

from __future__ import annotations

import dataclasses

import click
import pytest

from cifarlab.cli.main import cli
from cifarlab.config.options import OPTIONS, TrainConfig, resolve
from cifarlab.config.parse import parse_assignments
from cifarlab.errors import CifarlabError


def test_every_option_is_a_cli_option_with_its_help():
    for command in ("train", "sweep", "seeds"):
        params = {p.name: p for p in cli.commands[command].params if isinstance(p, click.Option)}
        for name, spec in OPTIONS.items():
            if command == "seeds" and name == "seed":
                continue
            assert name in params, f"{command} lacks --{name}"
            assert params[name].help == spec.help, (command, name)
    sweep = {p.name: p for p in cli.commands["sweep"].params}
    assert sweep["lr"].type == click.STRING  # a list to parse
    assert sweep["eval_batch_size"].type == click.INT  # not swept: one value
    train_params = {p.name: p for p in cli.commands["train"].params}
    assert train_params["lookahead"].secondary_opts == ["--no-lookahead"]
    assert list(train_params["augment"].type.choices) == list(OPTIONS["augment"].choices)


def test_options_are_checked_from_their_fields():
    assert parse_assignments(["lr=0.1", "lookahead=false", "val-size=none"]) == {
        "lr": 0.1,
        "lookahead": False,
        "val_size": None,
    }
    with pytest.raises(CifarlabError, match="--momentum must be in \\[0, 1\\), not 1.0"):
        TrainConfig(momentum=1.0)
    with pytest.raises(CifarlabError, match="--lr must be greater than 0, not nan"):
        TrainConfig(lr=float("nan"))
    with pytest.raises(CifarlabError, match="--schedule must be one of constant, cosine"):
        TrainConfig(schedule="step")
    with pytest.raises(CifarlabError, match="must be a whole number"):
        TrainConfig(epochs=2.5)
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)
    with pytest.raises(CifarlabError, match="is not a train option"):
        parse_assignments(["learning_rate=0.1"])


def test_a_misspelt_option_gets_did_you_mean_not_the_whole_list(tmp_path):
    """Issue 26, defect 10: in a config file, in --param and in --by."""
    from cifarlab.config.parse import option_name, read_config_file
    from cifarlab.experiments.compare import group_runs

    (tmp_path / "c.yaml").write_text("batch_szie: 64\n")
    with pytest.raises(CifarlabError, match=r"batch_szie \(did you mean 'batch_size'\?\)$"):
        read_config_file(tmp_path / "c.yaml")
    with pytest.raises(CifarlabError, match=r"'learning_rate' is not a train option \(did you"):
        option_name("learning_rate")
    with pytest.raises(CifarlabError, match=r"--by lrr: not a train option: lrr \(did you mean"):
        group_runs([], by=["lrr"])
    with pytest.raises(CifarlabError, match="zzz; known: model, dataset"):
        resolve(None, {"zzz": 1})  # nothing close: the list


def test_each_option_reads_its_field_once():
    """OPTIONS describes every field: type, None allowed, choices, pair, bounds, identity."""
    assert tuple(OPTIONS) == tuple(f.name for f in dataclasses.fields(TrainConfig))
    val_size, betas, compile_, momentum = (
        OPTIONS[n] for n in ("val_size", "betas", "compile", "momentum")
    )
    assert (val_size.base, val_size.optional) == (int, True)
    assert betas.pair and betas.base is str and not OPTIONS["lr"].pair
    assert compile_.identity is False and compile_.choices[0] == "none"
    assert (momentum.at_least, momentum.below) == (0, 1)
    assert OPTIONS["lookahead"].base is bool and OPTIONS["lookahead"].default is False
    assert val_size.coerce(None) is None
    with pytest.raises(CifarlabError, match="option lr needs a value"):
        OPTIONS["lr"].coerce(None)
