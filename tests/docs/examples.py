"""What tests/docs/test_*examples.py share. Every example of the manual and README runs as
written, on tiny synthetic data: each
`cifarlab ...` line of a ```bash block, page by page in one working folder (so a page's
later commands find the runs its earlier ones trained), and each ```python block. The data
folders (~/data/...) point at synthetic copies, and training is capped (1 epoch, 40 images,
--quick studies of a few steps); everything else is as printed.

A block that cannot run here (it installs, needs a cluster or a server, is a fragment)
starts with a comment `# not run by the tests: REASON`; the test checks every other line
of a bash block is a cifarlab command, so nothing is left out silently."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import use_quick_plan, write_cifar, write_cifar100, write_idx

ROOT = Path(__file__).parents[2]
PAGES = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts),
]
SKIP = "# not run by the tests:"
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.M | re.S)


def blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(page.read_text())]


def commands(body: str) -> list[str]:
    """A bash block's lines, continuations joined, comments and blank lines left out."""
    lines = body.replace("\\\n", " ").splitlines()
    return [
        line.split(" #")[0].strip()
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


# --------------------------------------------------------------------------- substitutions

CAPS = {"--epochs": "1", "--limit": "40", "--eval-limit": "20", "--trials": "3", "--jobs": "1"}


def capped(args: list[str]) -> list[str]:
    """The command with training capped: 1 epoch of 40 images, 20 to evaluate, 3 trials,
    seed ranges and lists of two, one job; a study made --quick (its plan is tiny in these
    tests)."""
    from cifarlab.cli.main import cli

    out, k = [], 0
    while k < len(args):
        a = args[k]
        if a in CAPS and k + 1 < len(args):
            out += [a, CAPS[a]]
            k += 2
            continue
        if a == "--seeds" and k + 1 < len(args):
            out += [a, "1-2"]
            k += 2
            continue
        if a == "--seed" and k + 1 < len(args) and "," in args[k + 1]:
            out += [a, ",".join(args[k + 1].split(",")[:2])]
            k += 2
            continue
        out.append(a)
        k += 1
    sub = next(i for i, a in enumerate(out) if a in cli.commands)
    params = {p.name for p in cli.commands[out[sub]].params}
    extra = [
        o
        for o in ("--epochs", "--limit", "--eval-limit")
        if o[2:].replace("-", "_") in params and o not in out
    ]
    extra = [x for o in extra for x in (o, CAPS[o])] if "--resume" not in out else []
    if out[sub] == "study" and "--quick" not in out:
        extra.append("--quick")
    return out[: sub + 1] + extra + out[sub + 1 :]


def run_command(line: str, data: Path, monkeypatch) -> None:
    from cifarlab.cli.main import main

    line = line.replace("~/data", str(data))
    redirect = None
    if " > " in line:
        line, redirect = (s.strip() for s in line.split(" > "))
    args = capped(shlex.split(line)[1:])
    monkeypatch.setattr("sys.argv", ["cifarlab", *args])
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured) if redirect else contextlib.nullcontext():
        try:
            main()
        except SystemExit as e:
            assert e.code in (0, None), f"{line}: exit {e.code}"
    if redirect:
        Path(redirect).write_text(captured.getvalue())


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """~/data as the commands name it: cifar10/ (200 images each side), cifar-100-python/
    and mnist/ inside; ~/data/big/ for the Python examples, whose --limit is theirs."""
    root = tmp_path_factory.mktemp("data")
    write_cifar(root / "cifar10", n_train=200, n_test=200)
    write_cifar(root / "big" / "cifar10", n_train=1100, n_test=600)
    write_cifar100(root)
    write_idx(root / "mnist")
    write_idx(root / "big" / "mnist")
    return root


@pytest.fixture
def workdir(tmp_path, monkeypatch, data) -> Path:
    """A fresh working folder holding the files the examples read: my.yaml, photos/,
    cat.jpg, truck.png; CIFARLAB_DATA set for the commands that give no --data-dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CIFARLAB_DATA", str(data / "cifar10"))
    (tmp_path / "my.yaml").write_text("model: base\nepochs: 2\nlr: 0.02\n")
    (tmp_path / "photos").mkdir()
    for k, name in enumerate(["photos/a.png", "photos/b.png", "cat.jpg", "truck.png"]):
        Image.new("RGB", (32 + 8 * k, 32), (40 * k, 100, 200)).save(tmp_path / name)
    plan = use_quick_plan(
        monkeypatch,
        base=({"limit": 40, "eval_limit": 20, "epochs": 1, "batch_size": 20}, [0.03]),
        improved=({"lr": 0.01, "limit": 16, "eval_limit": 8, "epochs": 1, "batch_size": 8}, [0.01]),
    )
    plan.seeds = [5]  # two runs in all: the base CNN's (its lr, epoch and seed studies share
    plan.epoch_study = {"model": "base", "epochs": 1}  # it) and the improved CNN's
    return tmp_path


def run_page(page: Path, data: Path, monkeypatch) -> None:
    """Every example of `page`, in order, in the current folder."""
    for lang, body in blocks(page):
        if body.lstrip().startswith(SKIP):
            continue
        if lang == "bash":
            for line in commands(body):
                run_command(line, data, monkeypatch)
        else:
            from cifarlab.models.registry import REGISTRY

            known = set(REGISTRY)
            code = body.replace("~/data", str(data / "big"))
            try:
                exec(compile(code, f"{page.name} example", "exec"), {"__name__": "__example__"})
            finally:  # a model the example registered is not left for other tests
                for name in set(REGISTRY) - known:
                    REGISTRY.pop(name)
