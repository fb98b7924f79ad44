"""Error messages, figures and text the user reads: YAML/TOML error places, sweep flags,
study figures, model descriptions, the reproducing command, MLflow and TensorBoard lines."""

from __future__ import annotations

from conftest import cli

# --- 1. YAML and TOML errors say where --------------------------------------------------------


def test_study_spec_yaml_error_names_line_and_column(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "x.yaml"
    spec.write_text("title: t\nmodels: [base,\n  seeds: 1: 2\n")
    assert cli(monkeypatch, "study", "--spec", spec, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(spec) in err
    assert "line 3, column 11: expected ',' or ']'" in err
    assert "(while parsing a flow sequence from line 2)" in err


def test_config_file_yaml_error_names_line_and_column(tmp_path, monkeypatch, capsys):
    conf = tmp_path / "c.yaml"
    conf.write_text("lr: 0.1\n  epochs: 2\n")
    assert cli(monkeypatch, "train", "--config", conf, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(conf) in err and "line 2, column 9: mapping values are not allowed" in err


def test_config_file_toml_error_names_line_and_column(tmp_path, monkeypatch, capsys):
    conf = tmp_path / "c.toml"
    conf.write_text("lr = 0.1\nepochs = \n")
    assert cli(monkeypatch, "train", "--config", conf, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert str(conf) in err and "line 2, column 10: Invalid value" in err
