"""Error messages, figures and text the user reads: YAML/TOML error places, sweep flags,
study figures, model descriptions, the reproducing command, MLflow and TensorBoard lines."""

from __future__ import annotations

import json
import shlex
import time

import pytest

from tests.conftest import cli, use_quick_plan

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


# --- 2. boolean options of `sweep` are flags ----------------------------------------------------


def test_sweep_boolean_flag_does_not_swallow_next_option(cifar_dir, tmp_path, monkeypatch):
    out = tmp_path / "sw"
    code = cli(
        monkeypatch,
        "sweep",
        "--nesterov",
        "--momentum",
        "0.9",
        "--lr",
        "0.01,0.02",
        "--epochs",
        "1",
        "--limit",
        "20",
        "--eval-limit",
        "10",
        "--batch-size",
        "10",
        "--data-dir",
        cifar_dir,
        "--device",
        "cpu",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0
    configs = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/config.json"))]
    assert len(configs) == 2
    assert all(c["nesterov"] and c["momentum"] == 0.9 for c in configs)
    assert sorted(c["lr"] for c in configs) == [0.01, 0.02]


@pytest.mark.parametrize(
    "args,fixed,grid",
    [
        (["--no-nesterov", "--lr", "0.1,0.2"], {"nesterov": False}, {"lr": [0.1, 0.2]}),
        (["--nesterov", "true,false"], {}, {"nesterov": [True, False]}),
        (["--lr", "0.1,0.2", "--nesterov"], {"nesterov": True}, {"lr": [0.1, 0.2]}),
    ],
)
def test_sweep_boolean_forms(monkeypatch, args, fixed, grid):
    from cifarlab.experiments import sweeps as experiments
    from cifarlab.experiments.sweeps import sweep_grid

    seen = {}

    def options_only(options, *args, **kw):
        seen.update(options)
        raise SystemExit(0)

    monkeypatch.setattr(experiments, "run_sweep", options_only)  # the command imports it as it runs
    assert cli(monkeypatch, "sweep", *args) == 0
    assert sweep_grid(seen) == (fixed, grid)


def test_sweep_boolean_flag_and_its_negation_conflict(monkeypatch, capsys):
    assert cli(monkeypatch, "sweep", "--nesterov", "--no-nesterov", "--lr", "0.1,0.2") == 2
    assert "--nesterov or --no-nesterov, not both" in capsys.readouterr().err


# --- 3. figures -------------------------------------------------------------------------------


def test_seed_figure_holds_the_whole_confidence_band(tmp_path, monkeypatch):
    from cifarlab.experiments import stats
    from cifarlab.report import figures as plots

    limits = []
    real = plots.save_figure

    def save(fig, path):
        limits.append(fig.axes[0].get_ylim())
        return real(fig, path)

    monkeypatch.setattr(plots, "save_figure", save)
    rows = [{"seed": 5, "test_acc": 0.70}, {"seed": 6, "test_acc": 0.72}]
    st = stats.describe(r["test_acc"] for r in rows)
    plots.seed_results(rows, st, tmp_path / "seeds.png")
    (lo, hi) = limits[0]
    assert lo < 100 * st["ci95_low"] - 0.5 and hi > 100 * st["ci95_high"] + 0.5
    assert (tmp_path / "seeds.png").exists()


def test_one_seed_writes_no_seed_figure(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s"
    code = cli(
        monkeypatch,
        "seeds",
        "--seeds",
        "3",
        "--epochs",
        "1",
        "--limit",
        "20",
        "--eval-limit",
        "10",
        "--batch-size",
        "10",
        "--data-dir",
        cifar_dir,
        "--device",
        "cpu",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0
    assert (out / "seeds.json").exists() and not (out / "seeds.png").exists()
    assert "seeds.png" not in capsys.readouterr().out


def test_training_figures_name_the_run_and_its_test_accuracy(cifar_dir, tmp_path, monkeypatch):
    from cifarlab.runs.folder import RunDir

    titles, curves = [], []
    monkeypatch.setattr(RunDir, "write_confusion", lambda self, c, cl, title: titles.append(title))
    monkeypatch.setattr(RunDir, "write_curves", lambda self, m, title: curves.append(title))
    code = cli(
        monkeypatch,
        "train",
        "--epochs",
        "1",
        "--limit",
        "20",
        "--eval-limit",
        "10",
        "--batch-size",
        "10",
        "--data-dir",
        cifar_dir,
        "--device",
        "cpu",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert code == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert curves == ["base, SGD lr 0.03, batch 10, seed 0"]
    assert titles == [
        f"{curves[0]}: test confusion matrix, test accuracy {100 * summary['test_acc']:.2f}%"
    ]


@pytest.mark.slow  # a whole (tiny) study
def test_study_report_numbers_every_figure_in_order(learnable_dir, tmp_path, monkeypatch):
    plan = use_quick_plan(
        monkeypatch,
        base=({"limit": 60, "eval_limit": 20, "epochs": 1, "batch_size": 30}, [0.01, 0.03]),
        improved=({"limit": 20, "eval_limit": 10, "epochs": 1, "batch_size": 10}, [0.03, 0.1]),
    )
    plan.seeds = [5]  # a one-seed seed study: its runs are the main run's
    plan.epoch_study = {"model": "base", "epochs": 2}
    out = tmp_path / "study"
    args = ["study", "--quick", "--data-dir", learnable_dir, "--out", out, "--quiet"]
    assert cli(monkeypatch, *args) == 0
    md = (out / "report.md").read_text()
    captions = [line for line in md.splitlines() if line.startswith("*") and "Figure" in line]
    numbers = [int(c.split("Figure ")[1].split(":")[0]) for c in captions]
    # 4 analysis, 3 of the data audit, base, 2 lr sweeps, epochs, improved
    assert numbers == list(range(1, 13))
    assert [c.split(":")[1].strip() for c in captions[4:7]] == ["Data audit"] * 3
    assert any("Figure 9: base CNN: validation accuracy and loss per lr" in c for c in captions)
    assert captions[10] == (
        "*Figure 11: epoch study, the lowest validation loss marked "
        "(Figure 5 of the published report)*"
    )
    assert captions[0] == "*Figure 1: one sample image per class, training set*"
    assert "seeds.png" not in md and "Test accuracy per seed" not in md
    assert not any((out / f"{name}.png").exists() for name in ("seeds", "base", "improved"))
    assert (out / "seeds.json").exists()


# --- 4. plugin models: their docstring describes them; titles in sentences --------------------

PLUGIN = '''
import torch.nn as nn


def small(num_classes, in_channels):
    """My small CNN: one conv,
    a pool and a linear head.

    Details that are not the description.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(8, num_classes),
    )


def big(num_classes):
    return small(num_classes, 3)


def _helper():
    pass
'''
SMALL_PARAMETERS = 3 * 9 * 8 + 8 + 8 * 10 + 10


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "mine.py").write_text(PLUGIN)
    monkeypatch.chdir(tmp_path)
    return "nets/mine.py"


def test_models_describes_a_plugin_reference(plugin, monkeypatch, capsys):
    assert cli(monkeypatch, "models", f"{plugin}:small") == 0
    out = capsys.readouterr().out
    assert f"{plugin}:small" in out and f"{SMALL_PARAMETERS:,}" in out
    assert "My small CNN: one conv, a pool and a linear head." in out
    assert "Details" not in out and "improved" not in out


@pytest.mark.parametrize("command", [["models"], ["train", "--out", "r", "--model"]])
def test_a_model_file_without_function_lists_its_functions(plugin, monkeypatch, capsys, command):
    assert cli(monkeypatch, *command, plugin) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: nets/mine.py is a file: name the function too, e.g. nets/mine.py:small; "
        "it defines: small, big"
    )


def test_titles_read_as_english_in_sentences():
    from cifarlab.study.wording import the

    assert the("base CNN") == "the base CNN"
    assert the("my small CNN") == "my small CNN"
    assert the("my small CNN", capital=True) == "My small CNN"
    assert the("base CNN", capital=True) == "The base CNN"
    assert the("mine") == "the model mine" and the("mine", capital=True) == "The model mine"


STUDY = """
title: Mine
models:
  - name: small
    model: nets/mine.py:small
    title: my small CNN
    overrides: {limit: 40, eval_limit: 20, epochs: 1, batch_size: 20, lr: 0.05}
    lrs: [0.05, 0.1]
  - name: base
    model: base
    overrides: {limit: 40, eval_limit: 20, epochs: 1, batch_size: 20}
seeds: [0]
epoch_study: {model: small, epochs: 2}
seed_study: {model: small}
"""


@pytest.mark.slow  # a whole (tiny) study
def test_study_report_describes_plugin_by_docstring(plugin, learnable_dir, tmp_path, monkeypatch):
    (tmp_path / "study.yaml").write_text(STUDY)
    args = ["study", "--spec", "study.yaml", "--data-dir", learnable_dir, "--out", "out"]
    assert cli(monkeypatch, *args, "--quiet") == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "My small CNN: one conv, a pool and a linear head (your model nets/mine.py:small)" in md
    assert "the my" not in md.lower()
    assert "my small CNN's run is the lr 0.05 point of its sweep and seed 0" in md
    assert "gain over my small CNN" in md and "My small CNN trained for 2 epochs" in md


# --- 5. summary.json's command reproduces the run, and only names what applies ---------------


@pytest.mark.parametrize(
    "options",
    [
        dict(model="base", data_dir="/my data/cifar", epochs=2, limit=30),
        dict(model="fast-muon", epochs=2, precision="bf16"),
        dict(model="improved", dataset="cifar100", labels="coarse", epochs=2),
        dict(model="base", dataset="imagefolder", data_dir="imgs", image_size=48),
        dict(model="base", dataset="mnist", momentum=0.9, nesterov=True, val_from="none"),
    ],
)
def test_command_runs_back_to_the_same_config(options, monkeypatch):
    import shlex

    from cifarlab.config.options import identity, resolve
    from cifarlab.config.parse import command_for
    from cifarlab.training import loop as train_loop

    cfg = resolve(None, options)
    command = command_for(cfg)
    words = shlex.split(command)
    assert words[:2] == ["cifarlab", "train"]
    given = {}

    def capture(flags, **kw):
        given.update(flags)

    monkeypatch.setattr(train_loop, "train_from_options", capture)
    assert cli(monkeypatch, *words[1:]) == 0
    again = resolve(None, given)
    assert identity(again) == identity(cfg) and again.to_dict() == cfg.to_dict()

    assert ("--data-dir" in words) == (cfg.data_dir is not None)
    assert ("--muon-lr" in words) == (cfg.optimizer == "muon")
    assert ("--labels" in words) == (cfg.dataset == "cifar100")
    assert ("--image-size" in words) == (cfg.dataset == "imagefolder")
    assert ("--skip-bad-images" in words or "--no-skip-bad-images" in words) == (
        cfg.dataset == "imagefolder"
    )
    assert words[words.index("--dataset") + 1] == cfg.dataset


def test_study_report_commands_run_as_printed_and_repeat_the_run(cifar_dir, tmp_path, monkeypatch):
    from cifarlab.study.wording import command as _command

    out = tmp_path / "run"
    code = cli(
        monkeypatch,
        "train",
        "--epochs",
        "1",
        "--limit",
        "20",
        "--eval-limit",
        "10",
        "--batch-size",
        "10",
        "--data-dir",
        cifar_dir,
        "--device",
        "cpu",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert f"--data-dir {cifar_dir} " in summary["command"] and "--muon" not in summary["command"]
    line = _command(str(out))
    assert line.count("--data-dir") == 1 and f"--data-dir {cifar_dir} " in line
    assert line.endswith("--out reproduce/run")  # never into the study's own folder
    # as printed, from where the study ran, it trains the run again, to the same numbers
    monkeypatch.chdir(tmp_path)
    assert cli(monkeypatch, *shlex.split(line)[1:], "--quiet") == 0
    again = json.loads((tmp_path / "reproduce" / "run" / "summary.json").read_text())
    assert again["test_acc"] == summary["test_acc"] and again["test_loss"] == summary["test_loss"]


# --- 6. MLflow: a slow server is announced, not silent --------------------------------------


def test_mlflow_connection_is_announced_and_slow_one_noted(monkeypatch, capsys):
    pytest.importorskip("mlflow")
    from cifarlab.runs import mlflow_log

    uri = "http://127.0.0.1:9"
    monkeypatch.setattr(mlflow_log, "_ANNOUNCED", set())
    monkeypatch.setattr(mlflow_log, "WAIT_NOTE_SECONDS", 0.2)
    calls = []

    def slow_probe(u):
        calls.append(capsys.readouterr().out)  # what was printed before the first attempt
        time.sleep(0.7)
        raise ConnectionError("the server does not answer (starting)")

    monkeypatch.setattr(mlflow_log, "probe", slow_probe)
    session = mlflow_log.Session(uri).connect()
    assert not session.on
    assert calls == [f"connecting to MLflow at {uri} ...\n"]
    captured = capsys.readouterr()
    waiting = [line for line in captured.out.splitlines() if line.startswith("still waiting")]
    assert len(waiting) >= 2 and all(line.endswith(" s) ...") for line in waiting)
    assert waiting[0].startswith(f"still waiting for MLflow at {uri} (")
    assert "going on without MLflow" in captured.err

    mlflow_log.Session(uri).connect()  # the same URI again: announced once per process
    assert "connecting to MLflow" not in capsys.readouterr().out


# --- 7. TensorBoard's lr is the one the epoch trained with ------------------------------------

METRICS_KEYS = [
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "lr",
    "seconds",
    "images_per_second",
]


def tensorboard_scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_lr_is_the_epochs_mean_not_its_end(cifar_dir, tmp_path):
    from cifarlab.config.options import resolve
    from cifarlab.training.loop import train

    cfg = resolve(
        None,
        dict(
            model="base",
            epochs=1,
            batch_size=10,
            lr=0.02,
            limit=20,
            eval_limit=10,
            data_dir=str(cifar_dir),
            device="cpu",
        ),
    )
    assert cfg.schedule == "cosine"
    train(cfg, tmp_path / "run", progress=False)
    (row,) = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert list(row) == METRICS_KEYS + ["lr_mean"]  # the old keys as they were, one added
    assert row["lr"] == 0.0  # the end of a cosine decay, as before
    # 2 steps of a cosine over 2 steps: lr 0.02, then 0.01
    assert row["lr_mean"] == pytest.approx(0.015)
    assert tensorboard_scalars(tmp_path / "run" / "tb", "lr") == [(1, pytest.approx(0.015))]


def test_tensorboard_lr_of_rows_written_before_lr_mean(tmp_path):
    from cifarlab.runs.tracking import TensorBoardLog

    old = {
        "epoch": 1,
        "train_loss": 2.0,
        "train_acc": 0.1,
        "val_loss": None,
        "val_acc": None,
        "lr": 0.03,
        "seconds": 1.0,
        "images_per_second": 10.0,
    }
    log = TensorBoardLog(tmp_path / "tb")
    log.epochs([old, {**old, "epoch": 2, "lr": 0.0, "lr_mean": 0.01}])
    log.close()
    assert tensorboard_scalars(tmp_path / "tb", "lr") == [
        (1, pytest.approx(0.03)),
        (2, pytest.approx(0.01)),
    ]
