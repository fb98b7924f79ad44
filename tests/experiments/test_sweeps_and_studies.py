import json
import math
import shutil
import statistics
from pathlib import Path

import pytest
from PIL import Image

from cifarlab.cli.main import main
from cifarlab.config import parse as config_parse
from cifarlab.config.parse import parse_list
from cifarlab.errors import CifarlabError
from cifarlab.experiments import runner as many_runs
from cifarlab.experiments import stats
from cifarlab.experiments import sweeps as X
from cifarlab.runs import folder as run_folder
from cifarlab.study import run as S
from cifarlab.training.trainer import Trainer
from tests.conftest import copy_run, use_quick_plan


def test_parse_list_types_and_errors():
    from cifarlab.config.parse import option_name

    assert parse_list("lr", "0.01,0.03") == [0.01, 0.03]
    assert parse_list("batch_size", "32, 64") == [32, 64]
    assert parse_list("augment", "none,flip-crop") == ["none", "flip-crop"]
    assert parse_list("nesterov", "true,false") == [True, False]
    assert parse_list("limit", "100,none") == [100, None]
    assert option_name("--batch-size") == "batch_size"
    with pytest.raises(CifarlabError, match="not a train option"):
        option_name("learning-rate")
    with pytest.raises(CifarlabError, match="comma-separated list"):
        parse_list("lr", "")
    with pytest.raises(CifarlabError, match="comma-separated list"):
        parse_list("lr", "0.1,,0.2")
    with pytest.raises(CifarlabError, match="is not a whole number"):
        parse_list("epochs", "2,three")
    with pytest.raises(CifarlabError, match="lists a value twice"):
        parse_list("lr", "0.1,0.10")


def test_parse_seeds():
    assert config_parse.parse_seeds("5-9") == [5, 6, 7, 8, 9]
    assert config_parse.parse_seeds("1,3, 8") == [1, 3, 8]
    assert config_parse.parse_seeds("0,5-6") == [0, 5, 6]
    with pytest.raises(CifarlabError, match="range goes down"):
        config_parse.parse_seeds("9-5")
    with pytest.raises(CifarlabError, match="write a range"):
        config_parse.parse_seeds("a-b")
    with pytest.raises(CifarlabError, match="write a range"):
        config_parse.parse_seeds("")
    with pytest.raises(CifarlabError, match="twice"):
        config_parse.parse_seeds("1,1")


def test_expand_grid():
    assert config_parse.expand_grid({"lr": [1, 2], "seed": [0, 1]}) == [
        {"lr": 1, "seed": 0},
        {"lr": 1, "seed": 1},
        {"lr": 2, "seed": 0},
        {"lr": 2, "seed": 1},
    ]
    with pytest.raises(CifarlabError, match="empty list"):
        config_parse.expand_grid({"lr": []})


def test_describe_against_direct_computation():
    xs = [0.7144, 0.7288, 0.7210, 0.7190, 0.7243]
    d = stats.describe(xs)
    assert d["mean"] == pytest.approx(sum(xs) / 5)
    var = sum((x - d["mean"]) ** 2 for x in xs) / 4  # sample variance
    assert d["std"] == pytest.approx(math.sqrt(var))
    assert d["std"] == pytest.approx(statistics.stdev(xs))
    assert d["range"] == pytest.approx(0.7288 - 0.7144)
    half = 2.776445 * math.sqrt(var) / math.sqrt(5)  # t(0.975, 4) = 2.776445 (tables)
    assert d["ci95_low"] == pytest.approx(d["mean"] - half)
    assert d["ci95_high"] == pytest.approx(d["mean"] + half)
    single = stats.describe([0.5])
    assert single["std"] is None and single["ci95_low"] is None


def test_find_overfitting():
    rows = [
        {"epoch": e, "val_loss": v, "train_acc": t, "val_acc": a}
        for e, v, t, a in [
            (1, 1.0, 0.5, 0.55),
            (2, 0.8, 0.65, 0.64),
            (3, 0.7, 0.71, 0.70),
            (4, 0.75, 0.78, 0.71),
            (5, 0.8, 0.84, 0.70),
        ]
    ]
    f = stats.find_overfitting(rows)
    assert f["best_epoch"] == 3
    assert f["val_loss_rises_after"] == [4, 5]
    assert f["gap_epoch"] == 4


def _no_training(monkeypatch):
    monkeypatch.setattr(Trainer, "train_epoch", lambda self: pytest.fail("trained a cached run"))


def test_sweep_table_figure_and_cache(shared_sweep, tmp_path, monkeypatch):
    r = shared_sweep.result  # --lr 0.01,0.02
    assert [row["lr"] for row in r["rows"]] == [0.01, 0.02]
    for key in ("final_val_acc", "best_val_acc", "test_acc", "val_loss_rises"):
        assert all(key in row for row in r["rows"])
    with Image.open(shared_sweep.out / "sweep.png") as im:
        assert im.format == "PNG"
    out = copy_run(shared_sweep.out, tmp_path / "sweep")
    _no_training(monkeypatch)
    runner = many_runs.Runner(progress=False)
    again = X.sweep(shared_sweep.flags, shared_sweep.grid, out, runner=runner)
    assert [Path(row.pop("run_dir")) for row in again["rows"]] == [
        out / Path(row["run_dir"]).relative_to(shared_sweep.out) for row in r["rows"]
    ]
    assert again["rows"] == [{k: v for k, v in row.items() if k != "run_dir"} for row in r["rows"]]


def test_seeds_command(cifar_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s"
    monkeypatch.setattr(
        "sys.argv",
        [
            "cifarlab",
            "seeds",
            "--seeds",
            "1-3",
            "--epochs",
            "1",
            "--limit",
            "20",
            "--eval-limit",
            "10",
            "--batch-size",
            "10",
            "--data-dir",
            str(cifar_dir),
            "--out",
            str(out),
            "--quiet",
        ],
    )
    main()
    printed = capsys.readouterr().out
    assert "mean" in printed and "95% confidence interval" in printed
    r = json.loads((out / "seeds.json").read_text())
    accs = [row["test_acc"] for row in r["rows"]]
    assert [row["seed"] for row in r["rows"]] == [1, 2, 3]
    assert r["test_acc"]["mean"] == pytest.approx(statistics.fmean(accs))
    assert r["test_acc"]["std"] == pytest.approx(statistics.stdev(accs))
    assert (out / "seeds.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["sweep", "--lr", "0.1"], "nothing to sweep"),
        (["sweep", "--lr", "0.1,"], "comma-separated"),
        (["sweep", "--epochs", "1,-2"], "--epochs must be at least 1"),
        (["seeds", "--seeds", "9-5"], "range goes down"),
    ],
)
def test_bad_input_before_training(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setattr("sys.argv", ["cifarlab", *args, "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.fixture
def tiny_quick_plan(monkeypatch):
    return use_quick_plan(
        monkeypatch,
        base=({"limit": 100, "eval_limit": 40, "epochs": 2, "batch_size": 50}, [0.01, 0.03]),
        improved=({"limit": 32, "eval_limit": 16, "epochs": 1, "batch_size": 16}, [0.03, 0.1]),
    )


@pytest.mark.slow
def test_quick_study_end_to_end_and_cache(learnable_dir, tmp_path, monkeypatch, tiny_quick_plan):
    out = tmp_path / "study"
    argv = [
        "cifarlab",
        "study",
        "--quick",
        "--data-dir",
        str(learnable_dir),
        "--out",
        str(out),
        "--quiet",
    ]
    monkeypatch.setattr("sys.argv", argv)
    main()
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for text in (
        "Figure 1",
        "Figure 5",
        "Figure 6",
        "Figure 7",
        "Figure 8",
        "72.48%",
        "82.12%",
        "cifarlab train",
        "wall time",
    ):
        assert text in md and text in html
    assert html.count("data:image/png;base64,") == 4 + 3 + 6  # analysis, audit, the study's
    assert 'src="runs/' not in html and "<img" in html  # self-contained
    for line in md.splitlines():
        if line.startswith("!["):
            assert (out / line.split("](")[1].rstrip(")")).exists()
    study = json.loads((out / "study.json").read_text())
    assert study["status"] == "finished"
    assert [r["seed"] for r in study["results"]["seeds"]["rows"]] == [5, 6]
    # runs shared between steps are trained once: [trained, reused] per step
    assert study["step_runs"] == {
        "analysis": [0, 0],
        "base": [1, 0],
        "lr_base": [1, 1],
        "lr_improved": [2, 0],
        "epochs": [1, 0],
        "improved": [0, 1],
        "seeds": [1, 1],
        "audit": [0, 0],
    }
    assert "| seed sensitivity |" in md and "1 trained, 1 reused |" in md

    _no_training(monkeypatch)  # a second study over a finished folder trains nothing
    monkeypatch.setattr(  # nor audits the same checkpoint again
        "cifarlab.study.data_audit.audit_run", lambda *a, **k: pytest.fail("audited again")
    )
    main()
    again = json.loads((out / "study.json").read_text())
    assert again["results"]["seeds"] == study["results"]["seeds"]
    assert again["step_seconds"] == study["step_seconds"]
    assert again["step_runs"] == study["step_runs"]  # when they ran, not this visit's 0s


def test_study_refuses_another_studys_folder(learnable_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    out.mkdir()
    (out / "study.json").write_text(
        json.dumps({"identity": {"kind": "cifarlab-study", "quick": False, "train_size": 1}})
    )
    monkeypatch.setattr(
        "sys.argv",
        ["cifarlab", "study", "--quick", "--data-dir", str(learnable_dir), "--out", str(out)],
    )
    with pytest.raises(SystemExit):
        main()
    assert "holds another study" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    monkeypatch.setattr(
        "sys.argv",
        ["cifarlab", "study", "--quick", "--data-dir", str(learnable_dir), "--out", str(other)],
    )
    with pytest.raises(SystemExit):
        main()
    assert "holds no study" in capsys.readouterr().err


def test_config_key_is_stable_when_options_are_added():
    from cifarlab.config.options import TrainConfig, from_dict

    cfg = TrainConfig(model="base", lr=0.05, seed=3)
    old_dict = {k: v for k, v in cfg.to_dict().items() if k not in ("lookahead", "tta")}
    assert run_folder.config_key(from_dict(old_dict)) == run_folder.config_key(cfg)
    assert run_folder.config_key(cfg.replace(data_dir="/elsewhere")) == run_folder.config_key(cfg)
    assert run_folder.config_key(cfg.replace(lr=0.03)) != run_folder.config_key(cfg)


def test_cache_refuses_a_folder_holding_another_config(shared_sweep, tmp_path):
    out = copy_run(shared_sweep.out, tmp_path / "sweep")
    run = next((out / "runs").iterdir())
    cfg = json.loads((run / "config.json").read_text())
    cfg["epochs"] = 7  # as if another config had been written there
    (run / "config.json").write_text(json.dumps(cfg))
    runner = many_runs.Runner(progress=False)
    with pytest.raises(CifarlabError, match="holds a run of another config"):
        X.sweep(shared_sweep.flags, shared_sweep.grid, out, runner=runner)


def test_quick_plan_gives_the_improved_cnn_steps_to_settle():
    """The improved CNN's loss jumps within its first steps and needs a few dozen to settle
    (measured on the real data): the quick study gives it 40, with a one-epoch warm-up,
    at lrs where it has settled by then."""
    import math

    configs = S.planned_configs(S.QUICK, {"device": "cpu"})
    improved = [c for c in configs if c.model == "improved"]
    assert {c.lr for c in improved} == {0.01, 0.03}
    for c in improved:
        steps_per_epoch = math.ceil(c.limit / c.batch_size)
        assert steps_per_epoch * c.epochs >= 40
        assert c.warmup_epochs * steps_per_epoch >= 20


def test_a_sweep_never_replaces_another_sweeps_summary(shared_sweep, tmp_path):
    """Issue 26, defect 4: another sweep's folder (or a seed study's) is refused before any
    work; the same sweep's folder is taken (its runs are reused)."""
    from cifarlab.experiments.sweeps import check_sweep_folder, run_sweep

    out = tmp_path / "sweep"
    shutil.copytree(shared_sweep.out, out)
    before = (out / "sweep.json").read_bytes()
    check_sweep_folder(out, shared_sweep.flags, shared_sweep.grid)  # the same sweep: fine
    other = {**shared_sweep.flags, "lr": "0.05,0.1", "momentum": "0.5"}
    with pytest.raises(CifarlabError, match="holds another sweep .*choose another --out"):
        run_sweep(other, out, progress=False)
    assert (out / "sweep.json").read_bytes() == before
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "seeds.json").write_text("{}")
    with pytest.raises(CifarlabError, match="holds a seeds .seeds.json."):
        check_sweep_folder(tmp_path / "seeds", {}, {"lr": [0.1]})
