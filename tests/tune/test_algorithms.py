"""Each --sampler and --pruner name has one entry in tune.algorithms, and it makes what it
says: the sampler and Optuna pruner of a local search, the Ray Tune scheduler."""

import optuna
import pytest

from cifarlab.config.choices import TUNE_PRUNERS, TUNE_SAMPLERS
from cifarlab.errors import CifarlabError
from cifarlab.tune.algorithms import PRUNERS, SAMPLERS, GridSampler
from cifarlab.tune.loop import TuneSettings, make_pruner, make_sampler
from cifarlab.tune.space import SearchSpace

SPACE = SearchSpace.parse(["lr=choice:0.1,0.2", "epochs=int:1:2"])


def test_every_offered_name_is_registered_once():
    assert tuple(SAMPLERS) == TUNE_SAMPLERS
    assert tuple(PRUNERS) == TUNE_PRUNERS


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("tpe", optuna.samplers.TPESampler),
        ("random", optuna.samplers.RandomSampler),
        ("grid", GridSampler),
    ],
)
def test_sampler_names_make_their_sampler(name, kind):
    sampler = make_sampler(TuneSettings(sampler=name, jobs=2), SPACE, worker=0)
    assert type(sampler) is kind


def test_tpe_lies_about_running_trials_only_when_trials_run_at_once():
    alone = make_sampler(TuneSettings(jobs=1), SPACE, worker=0)
    together = make_sampler(TuneSettings(jobs=3), SPACE, worker=0)
    assert alone._constant_liar is False and together._constant_liar is True


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("median", optuna.pruners.MedianPruner),
        ("asha", optuna.pruners.SuccessiveHalvingPruner),
        ("hyperband", optuna.pruners.HyperbandPruner),
        ("none", optuna.pruners.NopPruner),
    ],
)
def test_pruner_names_make_their_optuna_pruner(name, kind):
    assert type(make_pruner(TuneSettings(pruner=name), epochs=4)) is kind


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("median", "MedianStoppingRule"),
        ("asha", "AsyncHyperBandScheduler"),  # ASHAScheduler is its alias
        ("hyperband", "HyperBandScheduler"),
        ("none", "FIFOScheduler"),
    ],
)
def test_pruner_names_make_their_ray_scheduler(name, kind):
    pytest.importorskip("ray.tune")
    assert type(PRUNERS[name].ray(4)).__name__ == kind


def test_an_unknown_name_is_refused_with_the_closest_one():
    with pytest.raises(CifarlabError, match=r"unknown sampler 'tpx' \(did you mean 'tpe'\?\)"):
        TuneSettings(sampler="tpx")
    with pytest.raises(CifarlabError, match="unknown pruner 'ash'.*choose one of: median, asha"):
        TuneSettings(pruner="ash")
