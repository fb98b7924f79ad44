"""What each `--sampler` and `--pruner` name stands for, registered once: the sampler that
proposes a trial's values, and the pruner that stops a poor trial after an epoch, as Optuna's
pruner in a local search and as Ray Tune's scheduler under --executor ray.

The names the command line offers are config.choices.TUNE_SAMPLERS / TUNE_PRUNERS (read
without loading Optuna); these registries hold one entry for each of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from cifarlab.registry import Registry

if TYPE_CHECKING:
    from cifarlab.tune.space import SearchSpace


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, less its study.stop() when the grid is done (allowed only in
    study.optimize): the search counts its trials itself, never more than the grid."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        pass


@dataclass(frozen=True)
class Sampler:
    """One --sampler: make(space, seed, parallel) -> Optuna's sampler. parallel: trials
    run at once (TPE then lies constantly about the running ones, so as not to propose
    their values again)."""

    make: Callable[[SearchSpace, int, bool], optuna.samplers.BaseSampler]


@dataclass(frozen=True)
class Pruner:
    """One --pruner, each epoch a step: optuna(epochs) for a local search, ray(epochs) for
    Ray Tune (its scheduler, imported only there)."""

    optuna: Callable[[int], optuna.pruners.BasePruner]
    ray: Callable[[int], Any]


SAMPLERS: Registry[Sampler] = Registry("sampler")
PRUNERS: Registry[Pruner] = Registry("pruner")

SAMPLERS.register(
    "tpe",
    Sampler(
        lambda _, seed, parallel: optuna.samplers.TPESampler(seed=seed, constant_liar=parallel)
    ),
)
SAMPLERS.register("random", Sampler(lambda _, seed, __: optuna.samplers.RandomSampler(seed=seed)))
SAMPLERS.register("grid", Sampler(lambda space, seed, _: GridSampler(space.grid(), seed=seed)))


def _schedulers() -> Any:
    from ray.tune import schedulers  # lazy: the optional extra

    return schedulers


# median: no pruning before 5 trials have finished; a Tune trial never yields its CPUs
# to others (as Optuna's median pruner, it only stops, never pauses).
PRUNERS.register(
    "median",
    Pruner(
        optuna=lambda _: optuna.pruners.MedianPruner(n_startup_trials=5),
        ray=lambda _: _schedulers().MedianStoppingRule(
            time_attr="epoch", grace_period=1, min_samples_required=5, min_time_slice=math.inf
        ),
    ),
)
# asha and hyperband: no pruning below one epoch of resource; Hyperband pauses Tune trials
# at its rungs, and they resume from their last checkpoint.
PRUNERS.register(
    "asha",
    Pruner(
        optuna=lambda _: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
        ray=lambda epochs: _schedulers().ASHAScheduler(
            time_attr="epoch", max_t=max(epochs, 2), grace_period=1
        ),
    ),
)
PRUNERS.register(
    "hyperband",
    Pruner(
        optuna=lambda epochs: optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(epochs, 2)
        ),
        ray=lambda epochs: _schedulers().HyperBandScheduler(
            time_attr="epoch", max_t=max(epochs, 2)
        ),
    ),
)
PRUNERS.register(
    "none",
    Pruner(
        optuna=lambda _: optuna.pruners.NopPruner(), ray=lambda _: _schedulers().FIFOScheduler()
    ),
)
