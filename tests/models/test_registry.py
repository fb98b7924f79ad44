"""cifarlab.registry: the one mechanism behind the model and dataset names."""

import pytest

from cifarlab.data import DATASETS, dataset_spec
from cifarlab.errors import CifarlabError
from cifarlab.models.registry import REGISTRY, check_name
from cifarlab.registry import Registry, did_you_mean, unknown


def test_find_returns_what_was_registered_and_names_the_closest_otherwise():
    colours = Registry("colour", hint=" (see --help)")
    assert colours.register("red", 1) == 1
    colours.register("green", 2)
    assert colours.find("green") == 2
    with pytest.raises(CifarlabError) as e:
        colours.find("gren")
    assert str(e.value) == (
        "unknown colour 'gren' (did you mean 'green'?); choose one of: red, green (see --help)"
    )


def test_no_suggestion_when_nothing_is_close():
    assert did_you_mean("zzz", ["base", "fast"]) == ""
    assert unknown("model", "zzz", ["base"]) == "unknown model 'zzz'; choose one of: base"


def test_names_found_elsewhere_are_offered_too():
    with pytest.raises(CifarlabError, match="choose one of: a, b, plugin$"):
        Registry("thing", items=[("a", 1), ("b", 2)]).find("x", more=["plugin"])


def test_models_and_datasets_are_registries():
    assert isinstance(REGISTRY, Registry) and isinstance(DATASETS, Registry)
    with pytest.raises(CifarlabError, match=r"unknown model 'bsae' \(did you mean 'base'\?\)"):
        check_name("bsae")
    with pytest.raises(CifarlabError, match=r"unknown dataset 'mnsit' \(did you mean 'mnist'\?\)"):
        dataset_spec("mnsit")
