"""The shape of a run: options made from TrainConfig's fields, one normalization on every
path, a Trainer without files, quiet logs, integer epoch axes, --deterministic."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

import click
import pytest
import torch

from cifarlab.cli.main import cli, main
from cifarlab.config.options import FIELDS, TrainConfig, from_dict, resolve
from cifarlab.config.parse import parse_assignments
from cifarlab.data import Split, load_cifar10, make_splits
from cifarlab.errors import CifarlabError
from cifarlab.evaluate import export
from cifarlab.evaluate import trained as inference
from cifarlab.report import figures as plots
from cifarlab.training.hardware import set_deterministic
from cifarlab.training.loop import train
from cifarlab.training.trainer import Trainer
from tests.conftest import copy_run

ROOT = Path(__file__).resolve().parents[1]


def small(data_dir, **kw) -> TrainConfig:
    values = dict(
        model="base",
        epochs=1,
        batch_size=10,
        lr=0.01,
        limit=30,
        eval_limit=20,
        data_dir=str(data_dir),
        device="cpu",
        precision="fp32",
    )
    return resolve(None, {**values, **kw})


def test_every_option_is_a_cli_option_with_its_help():
    for command in ("train", "sweep", "seeds"):
        params = {p.name: p for p in cli.commands[command].params if isinstance(p, click.Option)}
        for name, f in FIELDS.items():
            if command == "seeds" and name == "seed":
                continue
            assert name in params, f"{command} lacks --{name}"
            assert params[name].help == f.metadata["help"], (command, name)
    sweep = {p.name: p for p in cli.commands["sweep"].params}
    assert sweep["lr"].type == click.STRING  # a list to parse
    assert sweep["eval_batch_size"].type == click.INT  # not swept: one value
    train_params = {p.name: p for p in cli.commands["train"].params}
    assert train_params["lookahead"].secondary_opts == ["--no-lookahead"]
    assert list(train_params["augment"].type.choices) == list(FIELDS["augment"].type.__args__)


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


def run_config(run: Path) -> TrainConfig:
    return from_dict(json.loads((run / "config.json").read_text()))


def test_one_normalization_for_training_evaluation_prediction_and_export(base_run, tmp_path):
    """What the model sees of the same uint8 images is identical (bit for bit) when the
    Trainer evaluates and trains, when `evaluate` and `predict` run a checkpoint, and the
    exported model with raw uint8 input computes the same logits."""
    run = base_run
    cfg = run_config(run).replace(precision="fp32")
    data = load_cifar10(cfg.data_dir)
    splits = make_splits(data, **cfg.split_args())
    images = splits.test.images
    seen: dict[str, list[torch.Tensor]] = {}

    def watch(model: torch.nn.Module, key: str) -> None:
        hook = lambda m, args: seen.setdefault(key, []).append(args[0].detach().clone())  # noqa: E731
        model.register_forward_pre_hook(hook)

    trainer = Trainer(cfg, splits)
    watch(trainer.model, "trainer")
    trainer.evaluate("test")
    t = inference.load_trained(run, "cpu", "fp32")
    watch(t.model, "evaluate")
    inference.evaluate_trained(t, data, "test")
    evaluate_input = torch.cat(seen["evaluate"])
    watch(t.model, "predict")
    inference.predict_tensor(t, images)
    for key in ("trainer", "predict"):
        assert torch.equal(torch.cat(seen[key]), evaluate_input), key
    # the training batches: the training images (shuffled) normalized as predict would
    trainer = Trainer(cfg.replace(batch_size=len(splits.train)), splits)
    watch(trainer.model, "train")
    trainer.train_epoch()
    expected = t.normalize(splits.train.images)
    for row in seen["train"][0]:
        assert any(torch.equal(row, ref) for ref in expected)
    out = tmp_path / "raw.onnx"
    export.export_trained(t.ckpt, "onnx", out, "raw")
    exported = export.run_exported(out.read_bytes(), "onnx", images)
    with torch.no_grad():
        expected = t.model(evaluate_input.contiguous())
    assert torch.allclose(exported, expected, atol=1e-4)


def test_the_trainer_writes_nothing(learnable_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = small(learnable_dir, epochs=2)
    trainer = Trainer(cfg, make_splits(load_cifar10(learnable_dir), **cfg.split_args()))
    rows = [trainer.train_epoch() for _ in range(2)]
    assert [r["epoch"] for r in rows] == [1, 2] and trainer.epoch == 2
    state = trainer.state_dict()
    assert state["epoch"] == 2 and state["model"]["name"] == "base"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # nothing new
    again = Trainer(cfg, trainer.splits)
    again.load_state_dict(state)
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v)
    with pytest.raises(CifarlabError, match="another config"):
        Trainer(cfg.replace(lr=0.5), trainer.splits).load_state_dict(state)


def test_no_progress_bars_in_logs(learnable_dir, tmp_path, capsys, monkeypatch):
    """Output that is not a terminal gets the one line per epoch, no bar refreshes; a
    terminal gets the bar."""
    train(small(learnable_dir), tmp_path / "a", progress=True)
    out = capsys.readouterr()
    assert "\r" not in out.err and "\r" not in out.out
    assert out.out.count("epoch   1/1") == 1
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    train(small(learnable_dir), tmp_path / "b", progress=True)
    assert "\r" in capsys.readouterr().err


def test_epoch_axes_have_whole_numbers_only(monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
    rows = [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_acc": 0.1 * e,
            "val_loss": 1 / e,
            "val_acc": 0.1 * e,
        }
        for e in (1, 2, 3)
    ]
    plots.training_curves(rows, tmp_path / "c.png")
    plots.sweep_curves([rows], ["lr=0.1"], tmp_path / "s.png", "sweep")
    plots.epoch_study(rows, {"best_epoch": 2, "gap_epoch": None}, tmp_path / "e.png")
    for fig in figures:
        fig.canvas.draw()
        for ax in fig.axes:
            ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
            assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_deterministic_is_recorded_and_used(base_run, tmp_path, monkeypatch):
    """--deterministic turns torch's deterministic algorithms (and cuDNN's) on while the run
    trains, and records it; a run without it turns them off again. On the CPU its numbers
    are those of the same run without it."""
    states = []
    real = Trainer.train_epoch

    def watch(self):
        states.append(
            (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic)
        )
        if not self.cfg.deterministic:
            raise KeyboardInterrupt  # seen: no need to train it
        return real(self)

    monkeypatch.setattr(Trainer, "train_epoch", watch)
    cfg = run_config(base_run)  # trained without --deterministic
    try:
        a = train(cfg.replace(deterministic=True), tmp_path / "a", progress=False)
        assert states == [(True, True)] * cfg.epochs
        assert json.loads((tmp_path / "a" / "config.json").read_text())["deterministic"] is True
        with pytest.raises(KeyboardInterrupt):
            train(cfg, tmp_path / "b", progress=False)
        assert states[-1] == (False, False)
    finally:
        set_deterministic(False)
    assert json.loads((base_run / "config.json").read_text())["deterministic"] is False
    b = json.loads((base_run / "summary.json").read_text())
    assert (a["test_loss"], a["test_acc"]) == (b["test_loss"], b["test_acc"])


def test_split_shards_cover_the_split():
    split = Split(torch.zeros(7, 3, 32, 32, dtype=torch.uint8), torch.arange(7))
    parts = [split.shard(r, 3).labels.tolist() for r in range(3)]
    assert sum(parts, []) == list(range(7)) and [len(p) for p in parts] == [2, 2, 3]
    assert split.first(3).labels.tolist() == [0, 1, 2] and split.first(None) is split


def test_python_version_is_required_consistently():
    """config.py reads TOML with tomllib (Python 3.11+): the package says so, and ruff
    checks for that version."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["requires-python"] == ">=3.11"
    assert meta["tool"]["ruff"]["target-version"] == "py311"


def css_rules(page: str) -> list[tuple[str, dict[str, str]]]:
    """The (selector, declarations) of the page's <style> element, in order."""
    style = re.search(r"<style>(.*?)</style>", page, re.S)
    assert style, "the page has no <style>"
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^}]*)\}", style.group(1)):
        pairs = (d.split(":", 1) for d in body.split(";") if ":" in d)
        decls = {k.strip(): v.strip() for k, v in pairs}
        rules += [(sel.strip(), decls) for sel in selectors.split(",")]
    return rules


def computed(rules, path: list[str], prop: str) -> str | None:
    """The value of an inherited CSS property for the element at `path` (its tag and its
    ancestors' tags, outermost first), from type and descendant selectors."""

    def matches(selector: str, here: list[str]) -> bool:
        *ancestors, last = selector.split()
        if last != here[-1]:
            return False
        rest = iter(reversed(here[:-1]))
        return all(any(tag == a for tag in rest) for a in reversed(ancestors))

    for depth in range(len(path), 0, -1):  # the element, then what it inherits
        values = [d[prop] for sel, d in rules if prop in d and matches(sel, path[:depth])]
        if values:
            return values[-1]
    return None


def test_report_wraps_long_commands(tmp_path):
    """The commands a study report gives (code blocks, and run folders in table cells) wrap
    in the HTML page instead of running off it: the page's CSS makes the elements holding
    them wrap at spaces and, for long words such as paths, anywhere."""
    from html.parser import HTMLParser

    from cifarlab.report.document import Report

    command = "cifarlab train " + " ".join(f"--option-{i} value-{i}" for i in range(30))
    folder = "runs/" + "x" * 150
    doc = Report("Report")
    doc.code(command + "\n" + command)
    doc.table(["run", "test accuracy"], [[f"`{folder}`", "72.48%"]])
    doc.write(tmp_path)
    page = (tmp_path / "report.html").read_text()

    class Where(HTMLParser):
        """The tags around each piece of text."""

        def __init__(self):
            super().__init__()
            self.open, self.found = [], {}

        def handle_starttag(self, tag, attrs):
            self.open.append(tag)

        def handle_endtag(self, tag):
            while self.open and self.open.pop() != tag:
                pass

        def handle_data(self, data):
            self.found.setdefault(data.strip(), list(self.open))

    where = Where()
    where.feed(page)
    rules = css_rules(page)
    pre = where.found[command + "\n" + command]
    assert computed(rules, pre, "white-space") in ("pre-wrap", "break-spaces"), pre
    assert computed(rules, pre, "overflow-wrap") in ("anywhere", "break-word"), pre
    cell = where.found[folder]
    assert cell[-2:] == ["td", "code"]
    assert computed(rules, cell, "overflow-wrap") in ("anywhere", "break-word"), cell
    assert computed(rules, ["html", "body", "p"], "overflow-wrap") is None  # the rest: as usual


def test_resume_from_cli_rejects_other_options(base_run, tmp_path, monkeypatch, capsys):
    out = copy_run(base_run, tmp_path / "run")
    monkeypatch.setattr("sys.argv", ["cifarlab", "train", "--resume", str(out), "--out", "x"])
    with pytest.raises(SystemExit):
        main()
    assert "drop --config/--out" in capsys.readouterr().err
