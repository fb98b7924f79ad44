"""cifarlab tune: a search whose trials are run folders, pruned ones stopped early, resumable
after a kill, its outputs (trials.csv, tune.json, best.yaml, report), its bad input."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from cifarlab.errors import CifarlabError
from cifarlab.runs.folder import RunDir
from cifarlab.tune.loop import JOURNAL, STUDY, TuneSettings
from cifarlab.tune.search import run_tune
from cifarlab.tune.space import SearchSpace, parse_param
from tests.conftest import cli, write_cifar

TINY = {"epochs": 3, "limit": 100, "eval_limit": 50, "batch_size": 20}
SEARCH = ["lr=log:0.0001:0.3", "momentum=uniform:0.0:0.9"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune-data")
    write_cifar(root, n_train=200, n_test=100, learnable=True)
    return root


@pytest.fixture(scope="module")
def search(data_dir, tmp_path_factory) -> tuple[dict, Path]:
    """Ten trials of TPE with the median pruner (pruning from the sixth trial on)."""
    out = tmp_path_factory.mktemp("tune") / "search"
    flags = {**TINY, "data_dir": str(data_dir), "tensorboard": None}
    return run_tune(flags, SEARCH, TuneSettings(trials=10), out, progress=False)


def trials_csv(folder: Path) -> list[dict]:
    with open(folder / "trials.csv") as f:
        return list(csv.DictReader(f))


def load_study(folder: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / JOURNAL))
    )
    return optuna.load_study(study_name=STUDY, storage=storage)


@pytest.mark.slow
def test_trials_are_run_folders_and_pruned_ones_stop_early(search):
    result, folder = search
    rows = trials_csv(folder)
    ended = [r for r in rows if r["state"] in ("complete", "pruned")]
    assert len(ended) == 10 == result["n_complete"] + result["n_pruned"]
    assert result["n_pruned"] >= 1, "the median pruner stopped no trial"
    for r in rows:
        run = RunDir(folder / r["run"])
        lines = len(run.metrics()) if (run.path / "metrics.jsonl").exists() else 0
        diverged = run.summary()["status"] == "failed"  # pruned at the epoch of its NaN
        assert int(r["epochs"]) == lines + diverged
        if r["state"] == "complete":
            assert lines == 3 and run.summary()["status"] == "finished"
            assert float(r["value"]) == run.metrics()[-1]["val_acc"]
        elif r["state"] == "pruned" and not diverged:
            assert lines < 3 and run.summary()["status"] == "pruned"
            assert "test_acc" not in run.summary()  # the test split is not looked at
    assert {r["run"].split("/")[1].split("-")[0] for r in rows} == {r["number"] for r in rows}


@pytest.mark.slow
def test_tune_json_best_yaml_and_report(search, tmp_path, monkeypatch):
    result, folder = search
    written = json.loads((folder / "tune.json").read_text())
    assert written == json.loads(json.dumps(result))
    best = written["best"]
    complete = [r for r in trials_csv(folder) if r["state"] == "complete"]
    assert best["value"] == max(float(r["value"]) for r in complete)
    assert written["settings"]["params"] == {"lr": "log:0.0001:0.3", "momentum": "uniform:0.0:0.9"}
    config = yaml.safe_load((folder / "best.yaml").read_text())
    assert config["lr"] == best["params"]["lr"] and config["epochs"] == 3
    report = (folder / "report.md").read_text()
    for figure in ("history.png", "importances.png", "parallel.png", "slice-lr.png", "curves.png"):
        assert figure in report and (folder / "figures" / figure).exists()
    assert "Warning: parameter importances" in report  # fewer than 10 complete trials
    assert (
        cli(
            monkeypatch,
            "train",
            "--config",
            folder / "best.yaml",
            "--epochs",
            "1",
            "--out",
            tmp_path / "again",
            "--quiet",
        )
        == 0
    )
    assert RunDir(tmp_path / "again").summary()["status"] == "finished"


@pytest.mark.slow
def test_rerun_continues_to_more_trials_and_refuses_other_settings(search, data_dir):
    _, folder = search
    flags = {**TINY, "data_dir": str(data_dir), "tensorboard": None}
    # the search is a module fixture: continue a copy of it
    copy = folder.parent / "continued"
    import shutil

    shutil.copytree(folder, copy)
    result, _ = run_tune(flags, SEARCH, TuneSettings(trials=12), copy, progress=False)
    assert result["n_complete"] + result["n_pruned"] == 12
    numbers = [int(r["number"]) for r in trials_csv(copy)]
    assert len(numbers) == len(set(numbers))
    with pytest.raises(CifarlabError, match="other settings .*--metric"):
        run_tune(flags, SEARCH, TuneSettings(trials=12, metric="val_loss"), copy, progress=False)


@pytest.mark.slow
def test_grid_sampler_covers_the_grid_once(data_dir, tmp_path, capsys):
    flags = {**TINY, "epochs": 1, "data_dir": str(data_dir), "tensorboard": None}
    params = ["lr=choice:0.01,0.05", "momentum=choice:0.0,0.5"]
    settings = TuneSettings(trials=9, sampler="grid", pruner="none")
    result, folder = run_tune(flags, params, settings, tmp_path / "grid", progress=False)
    assert "the grid has 4 points" in capsys.readouterr().out
    got = {(float(r["lr"]), float(r["momentum"])) for r in trials_csv(folder)}
    assert got == {(0.01, 0.0), (0.01, 0.5), (0.05, 0.0), (0.05, 0.5)}
    assert result["n_complete"] == 4


def test_a_diverged_trial_counts_as_pruned_with_no_value(data_dir, tmp_path, capsys):
    """A NaN loss is no reason to stop a search: the trial ends pruned at that epoch with
    Optuna's worst value (NaN), so TPE learns to avoid it; its folder says it failed."""
    flags = {**TINY, "epochs": 2, "data_dir": str(data_dir), "tensorboard": None}
    settings = TuneSettings(trials=6, sampler="grid", pruner="none")
    params = ["lr=choice:0.01,1000.0,3000.0,10000.0,30000.0,100000.0"]
    result, folder = run_tune(flags, params, settings, tmp_path / "nan", progress=True)
    rows = {float(r["lr"]): r for r in trials_csv(folder)}
    assert rows[0.01]["state"] == "complete" and rows[0.01]["value"]
    for lr in (1000.0, 3000.0, 10000.0, 30000.0, 100000.0):  # more than MAX_FAILURES
        assert rows[lr]["state"] == "pruned" and rows[lr]["value"] == ""
        summary = RunDir(folder / rows[lr]["run"]).summary()
        assert summary["status"] == "failed" and "NaN" in summary["error"]
    assert (result["n_complete"], result["n_pruned"], result["n_diverged"]) == (1, 5, 5)
    assert result["best"]["params"] == {"lr": 0.01}
    out = capsys.readouterr().out
    assert "diverged at epoch 1 (NaN loss): counted as pruned" in out
    assert "1 trials complete, 5 pruned (5 of them diverged" in (folder / "report.md").read_text()


def test_a_repeated_configuration_reuses_the_first_trials_run(data_dir, tmp_path):
    flags = {**TINY, "epochs": 1, "data_dir": str(data_dir), "tensorboard": None}
    params = ["lr=choice:0.01,0.05"]
    settings = TuneSettings(trials=4, sampler="random", pruner="none")
    _, folder = run_tune(flags, params, settings, tmp_path / "s", progress=False)
    trials = load_study(folder).get_trials()
    reused = [t for t in trials if "reused" in t.user_attrs]
    assert len(reused) == 2  # four trials, two configurations
    for t in reused:
        first = RunDir(folder / "trials" / t.user_attrs["reused"])
        again = RunDir(folder / t.user_attrs["run"])
        assert again.metrics() == first.metrics()
        assert not (again.path / ".lock").exists()


@pytest.mark.parametrize(
    "spec, message",
    [
        ("lr", "expected NAME=SPEC"),
        ("lrr=log:0.01:0.1", "'lrr' is not a train option"),
        ("lr=normal:0:1", "'normal' is not a kind of range"),
        ("lr=log:0.1", "log needs LOW:HIGH"),
        ("lr=log:0.1:0.01", "LOW must be below HIGH"),
        ("lr=log:0:0.1", "--lr must be greater than 0"),
        ("momentum=log:-1:0.5", "momentum"),
        ("augment=uniform:0:1", "--augment takes choice:A,B"),
        ("augment=choice:flip,spin", "spin"),
        ("batch_size=uniform:16:64", "--batch-size takes int:LOW:HIGH or choice"),
        ("eval_batch_size=int:100:900", "not a train option that can be swept"),
    ],
)
def test_bad_param_specs_are_one_line(spec, message):
    with pytest.raises(CifarlabError, match=message) as e:
        SearchSpace.parse([spec])
    assert "\n" not in str(e.value)


def test_bad_search_input_through_the_cli(monkeypatch, capsys, data_dir, tmp_path):
    def run(*args):
        code = cli(monkeypatch, "tune", "--data-dir", data_dir, "--out", tmp_path / "x", *args)
        return code, capsys.readouterr().err.strip()

    assert run() == (
        2,
        "error: nothing to search: give at least one --param NAME=SPEC, e.g. "
        "--param lr=log:0.001:0.1",
    )
    code, err = run("--param", "lr=log:1:0.1")
    assert code == 2 and err.count("\n") == 0 and "LOW must be below HIGH" in err
    code, err = run("--param", "lr=log:0.01:0.1", "--lr", "0.1")
    assert code == 2 and "--lr is searched (--param) and fixed at once" in err
    code, err = run("--param", "lr=log:0.01:0.1", "--val-from", "none")
    assert code == 2 and "validation split" in err
    code, err = run("--param", "lr=uniform:0.01:0.1", "--sampler", "grid")
    assert code == 2 and "--sampler grid needs choice" in err
    code, err = run("--param", "lr=log:0.01:0.1", "--ray-address", "auto")
    assert code == 2 and "--ray-address and --ray-cpus-per-run need --executor ray" in err
    code, err = run("--param", "lr=log:0.01:0.1", "--executor", "ray", "--jobs", "2")
    assert code == 2 and "--jobs is for --executor local" in err
    assert not (tmp_path / "x").exists()  # bad input leaves no folder


def test_param_spec_round_trips():
    for text in ("lr=log:0.001:0.1", "epochs=int:1:4", "nesterov=choice:true,false"):
        p = parse_param(text)
        assert parse_param(f"{p.name}={p.spec}") == p
    assert parse_param("nesterov=choice:true,false").choices == (True, False)
    assert parse_param("epochs=int:1:4").distribution() == optuna.distributions.IntDistribution(
        1, 4
    )


# ------------------------------------------------------------------- processes (slow)


def _tune_command(data_dir: Path, out: Path, trials: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cifarlab",
        "tune",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--param",
        "lr=log:0.001:0.1",
        "--trials",
        str(trials),
        "--epochs",
        "3",
        "--limit",
        "100",
        "--eval-limit",
        "50",
        "--batch-size",
        "10",
        "--no-tensorboard",
        "--quiet",
        *extra,
    ]


@pytest.mark.slow
def test_a_killed_search_continues_with_no_trial_counted_twice(data_dir, tmp_path):
    out = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen(
        _tune_command(data_dir, out, 3),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it in a trial's second epoch or later
        running = [
            d
            for d in (out / "trials").glob("*-*")
            if (d / "checkpoint.pt").exists() and not (d / "summary.json").exists()
        ]
        if running and len(list((out / "trials").glob("*-*"))) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = running[0]
    result = subprocess.run(
        _tune_command(data_dir, out, 3), env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "were left running by a killed process" in result.stdout
    trials = load_study(out).get_trials()
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.RUNNING not in states
    assert (
        sum(s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for s in states)
        == 3
    )
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert [t.user_attrs["run"] for t in failed] == [f"trials/{killed.name}"]
    retry = [t for t in trials if t.user_attrs.get("retry_of") == failed[0].number]
    assert len(retry) == 1 and retry[0].params == failed[0].params
    assert retry[0].user_attrs["reused"] == killed.name  # resumed from its checkpoint
    rows = trials_csv(out)
    assert len(rows) == len({r["number"] for r in rows}) == len(trials)


@pytest.mark.slow
def test_parallel_trials_finish_exactly_the_trials_asked(data_dir, tmp_path):
    out = tmp_path / "p"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    result = subprocess.run(
        _tune_command(data_dir, out, 3, "--jobs", "2"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    trials = load_study(out).get_trials()
    assert len(trials) == 3 and all(t.state.is_finished() for t in trials)  # an odd count
    assert len({t.user_attrs["run"] for t in trials}) == 3  # over 2 workers: none extra
    assert result.stdout.count("trial ") >= 3


TUNE_SPEC = """
title: A search in a study
seeds: [1]
models:
  - name: base
    model: base
    overrides: {limit: 100, eval_limit: 50, epochs: 1, batch_size: 20, lr: 0.05}
tune:
  model: base
  params: {lr: "log:0.001:0.3"}
  overrides: {epochs: 2}
  trials: 3
  sampler: random
  pruner: none
  confirm_seeds: 2
"""


@pytest.mark.slow
def test_a_study_spec_with_a_tune_step(data_dir, tmp_path, monkeypatch):
    """The spec's search runs as a step into OUT/tune, its searched option taken out of the
    model's fixed ones, and the report has its section; a rerun adds no trial."""
    spec = tmp_path / "study.yaml"
    spec.write_text(TUNE_SPEC)
    out = tmp_path / "study"
    args = ["study", "--spec", spec, "--data-dir", data_dir, "--out", out, "--quiet"]
    assert cli(monkeypatch, *args) == 0
    study = json.loads((out / "study.json").read_text())
    assert list(study["step_seconds"]) == ["analysis", "base", "tune", "audit"]
    result = study["results"]["tune"]
    assert result["n_complete"] == 3 and len(trials_csv(out / "tune")) == 3
    flags = json.loads((out / "tune" / "search.json").read_text())["flags"]
    assert "lr" not in flags and flags["epochs"] == 2 and flags["limit"] == 100
    md = (out / "report.md").read_text()
    assert "Hyperparameter search, base" in md and "Best minus recipe" in md
    assert cli(monkeypatch, *args) == 0
    assert len(trials_csv(out / "tune")) == 3


@pytest.mark.parametrize(
    "tune, message",
    [
        ({"model": "base"}, "tune needs `params:`"),
        ({"model": "other", "params": {"lr": "log:0.01:0.1"}}, "tune needs `model:`"),
        ({"model": "base", "params": {"lr": "log:0:1"}}, "tune: "),
        ({"model": "base", "params": ["lr=log:0.01:0.1"], "sampler": "bayes"}, "sampler must"),
        ({"model": "base", "params": ["lr=log:0.01:0.1"], "trials": 0}, "trials must"),
        ({"model": "base", "params": ["lr=log:0.01:0.1"], "budget": 3}, "unknown key"),
        ({"model": "base", "params": ["lr=log:0.01:0.1"], "overrides": {"lrr": 1}}, "overrides"),
    ],
)
def test_bad_tune_steps_in_a_spec(tune, message):
    from cifarlab.study.spec import spec_from_dict

    spec = {"models": [{"name": "base", "model": "base"}], "tune": tune}
    with pytest.raises(CifarlabError, match=message):
        spec_from_dict(spec)


def test_a_tune_step_round_trips_with_its_defaults():
    from cifarlab.study.spec import spec_from_dict

    spec = spec_from_dict(yaml.safe_load(TUNE_SPEC))
    assert spec.steps()["tune"] == "hyperparameter search, base"
    assert spec_from_dict(spec.to_dict()).to_dict() == spec.to_dict()
    plain = spec_from_dict(
        {
            "models": [{"name": "b", "model": "base"}],
            "tune": {"model": "b", "params": {"lr": "log:0.01:0.1"}},
        }
    )
    assert {k: plain.tune[k] for k in ("trials", "sampler", "pruner", "metric")} == {
        "trials": 20,
        "sampler": "tpe",
        "pruner": "median",
        "metric": "val_acc",
    }
