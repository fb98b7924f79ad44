"""The checks of a study spec's parts (spec.py reads a spec with them): known keys, seeds,
steps that name a model, the failure analysis and the search. Each error names where in
the spec the bad value is and what it takes instead."""

from __future__ import annotations

from typing import Any

from cifarlab.config.options import FIELD_NAMES
from cifarlab.config.parse import parse_seeds
from cifarlab.data.corruptions import parse_corruptions, parse_severities
from cifarlab.errors import CifarlabError
from cifarlab.tune.algorithms import PRUNERS, SAMPLERS
from cifarlab.tune.space import METRICS, SearchSpace

TUNE_DEFAULTS = {"sampler": "tpe", "pruner": "median", "metric": "val_acc"}  # as in `tune`
TUNE_KEYS = ("params", "overrides", "trials", "sampler", "pruner", "metric", "confirm_seeds")


def spec_error(where: str, what: str) -> CifarlabError:
    return CifarlabError(f"study spec {where}: {what}")


def check_known(d: dict, keys: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(d) - set(keys))
    if unknown:
        raise spec_error(where, f"unknown key(s) {', '.join(unknown)}; known: {', '.join(keys)}")


def check_seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, list) and all(isinstance(s, int) and s >= 0 for s in value):
        return value
    if isinstance(value, str | int):
        return parse_seeds(str(value))
    raise spec_error(
        where, f"seeds must be a list of whole numbers or a range like 5-9, not {value!r}"
    )


def named_step(d: Any, names: list[str], where: str, key: str, extra: tuple = ()) -> dict | None:
    if d is None:
        return None
    if not isinstance(d, dict) or d.get("model") not in names:
        raise spec_error(where, f"{key} needs `model:` one of {', '.join(names)}")
    check_known(d, ("model", *extra), f"{where} ({key})")
    if "epochs" in extra and not (isinstance(d.get("epochs"), int) and d["epochs"] >= 1):
        raise spec_error(where, f"{key} needs `epochs:` a whole number of at least 1")
    seeds = d.get("seeds", 1)
    if "seeds" in extra and not (
        isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1
    ):
        raise spec_error(where, f"{key}'s `seeds:` must be a whole number of at least 1")
    return dict(d)


def check_failures(d: Any, names: list[str], where: str) -> dict[str, Any] | None:
    """The failure_analysis mapping, checked: model, robustness, corruptions, severities."""
    fa = named_step(
        d, names, where, "failure_analysis", ("robustness", "corruptions", "severities")
    )
    if fa is None:
        return None
    robust = fa.get("robustness") or list(names)
    if not isinstance(robust, list) or not set(robust) <= set(names):
        raise spec_error(
            where, f"failure_analysis robustness must list models of the spec: {names}"
        )
    corruptions = fa.get("corruptions", ["gaussian_noise", "fog"])
    text = corruptions if isinstance(corruptions, str) else ",".join(map(str, corruptions))
    severities = fa.get("severities", [1, 3, 5])
    levels = severities if isinstance(severities, str) else ",".join(map(str, severities))
    try:
        return {
            "model": fa["model"],
            "robustness": robust,
            "corruptions": parse_corruptions(text),
            "severities": parse_severities(levels),
        }
    except CifarlabError as e:
        raise spec_error(where, f"failure_analysis: {e}") from None


def check_tune(d: Any, names: list[str], where: str) -> dict[str, Any] | None:
    """The tune mapping, checked and completed with `cifarlab tune`'s defaults."""
    t = named_step(d, names, where, "tune", TUNE_KEYS)
    if t is None:
        return None
    params = t.get("params")
    if isinstance(params, dict):
        params = [f"{k}={v}" for k, v in params.items()]
    if not isinstance(params, list) or not params:
        raise spec_error(where, "tune needs `params:`, train options and specs (lr: log:0.001:0.1)")
    overrides = t.get("overrides") or {}
    if not isinstance(overrides, dict) or not set(overrides) <= set(FIELD_NAMES):
        raise spec_error(
            where, f"tune's overrides must be a mapping of train options: {overrides!r}"
        )
    try:
        SearchSpace.parse([str(p) for p in params])
    except CifarlabError as e:
        raise spec_error(where, f"tune: {e}") from None
    for key, allowed in (("sampler", SAMPLERS), ("pruner", PRUNERS), ("metric", METRICS)):
        if t.setdefault(key, TUNE_DEFAULTS[key]) not in allowed:
            raise spec_error(where, f"tune's {key} must be one of {', '.join(allowed)}")
    for key, least in (("trials", 1), ("confirm_seeds", 0)):
        n = t.get(key, least)
        if not isinstance(n, int) or isinstance(n, bool) or n < least:
            raise spec_error(where, f"tune's {key} must be a whole number of at least {least}")
    return {
        "model": t["model"],
        "params": [str(p) for p in params],
        "overrides": overrides,
        "trials": t.get("trials", 20),
        "sampler": t["sampler"],
        "pruner": t["pruner"],
        "metric": t["metric"],
        "confirm_seeds": t.get("confirm_seeds", 0),
    }
