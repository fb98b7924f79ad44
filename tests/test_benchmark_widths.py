"""benchmarks/time_to_94.py --widths: the fast network at other block widths, same recipe."""

import importlib.util
from pathlib import Path

import pytest
from torch import nn

from cifarlab.config.options import resolve
from cifarlab.config.recipes import RECIPES
from cifarlab.models.registry import REGISTRY, build_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_94.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("time_to_94", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def registry_kept():
    known, recipes = set(REGISTRY), dict(RECIPES)
    yield
    for name in set(REGISTRY) - known:  # no model registered here is left for other tests
        REGISTRY.pop(name)
    RECIPES.clear()
    RECIPES.update(recipes)


def test_widths_build_the_fast_network_at_those_widths(bench, registry_kept):
    name = bench.with_widths("fast-cpu", "32,48,80")
    assert name == "fast-cpu-w32-48-80"
    convs = [m for m in build_model(name).modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [24, 32, 32, 48, 48, 80, 80]
    default = [
        m.out_channels for m in build_model("fast-cpu").modules() if isinstance(m, nn.Conv2d)
    ]
    assert default == [24, 64, 64, 256, 256, 256, 256]


def test_widths_train_with_the_recipe_of_the_model(bench, registry_kept):
    """The narrower network's recipe is the model's, as resolve gives it: the options not
    given keep its values (8 epochs, not the default 4), and a shorter run scales its
    warm-up as the model's would (fast: 2.3 of 10 epochs)."""
    flags = dict(epochs=None, limit=None, eval_limit=None, device="auto", precision="auto")
    narrow = resolve(None, {**flags, "model": bench.with_widths("fast-cpu", "64,192,192")})
    usual = resolve(None, {**flags, "model": "fast-cpu"})
    assert narrow.epochs == usual.epochs == RECIPES["fast-cpu"]["epochs"]
    assert narrow.replace(model="fast-cpu") == usual
    shorter = {**flags, "epochs": 5, "lr": 0.5}
    narrow = resolve(None, {**shorter, "model": bench.with_widths("fast", "64,192,192")})
    usual = resolve(None, {**shorter, "model": "fast"})
    assert (narrow.epochs, narrow.lr) == (5, 0.5)
    assert narrow.warmup_epochs == usual.warmup_epochs != RECIPES["fast"]["warmup_epochs"]
    assert narrow.replace(model="fast") == usual


@pytest.mark.parametrize(
    ("model", "widths", "message"),
    [
        ("base", "64,192,192", "--widths needs one of fast, fast-muon, fast-cpu, not base"),
        ("fast", "64,192", "three whole numbers"),
        ("fast", "64,x,192", "three whole numbers"),
        ("fast", "64,0,192", "three whole numbers"),
    ],
)
def test_widths_refuses_what_it_cannot_build(bench, registry_kept, model, widths, message):
    with pytest.raises(SystemExit, match=message):
        bench.with_widths(model, widths)
