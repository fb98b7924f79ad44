"""How the values of TrainConfig's fields (cifarlab.config.options) are typed and checked: each
value against its field (type, choices, bounds), then the combinations of a whole config.
Everything here reads the dataclass fields it is given, so it sits below cifarlab.config.options
(which calls it from TrainConfig.__post_init__ and re-exports what others use).
"""

from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Literal, get_args, get_origin

from cifarlab.errors import CifarlabError

# Options that only some datasets take, and the dataset that takes each.
DATASET_DETAILS = {
    "labels": "cifar100",
    "image_size": "imagefolder",
    "test_fraction": "imagefolder",
    "skip_bad_images": "imagefolder",
}
# Options of some optimizers only, and those optimizers: any other value than the default
# with another optimizer is an error (a recipe's value is dropped, see config.resolve).
OPTIMIZER_OPTIONS = {
    "momentum": ("sgd", "muon"),
    "nesterov": ("sgd", "muon"),
    "muon_lr": ("muon",),
    "muon_momentum": ("muon",),
    "betas": ("adam", "adamw"),
}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_choices(f: dataclasses.Field) -> tuple[str, ...]:
    """The allowed values of a choice field (its Literal type); () for other fields."""
    return get_args(f.type) if get_origin(f.type) is Literal else ()


def field_kind(f: dataclasses.Field) -> tuple[type, bool]:
    """(base type, whether None is allowed) of a field: bool, int, float or str."""
    t = f.type
    optional = False
    if get_origin(t) is types.UnionType:
        t = next(a for a in get_args(t) if a is not type(None))
        optional = True
    return (str if get_origin(t) is Literal else t), optional


def pair_text(name: str, value: Any) -> str:
    """A pair of numbers in [0, 1), as --betas takes it ('0.9,0.999', or a list of two
    numbers from a config file), in one canonical spelling: '0.9,0.999'."""
    parts = value.split(",") if isinstance(value, str) else value
    bad = CifarlabError(
        f"{flag(name)} must be two numbers in [0, 1) separated by a comma, like 0.9,0.999; "
        f"not {value!r}"
    )
    if not isinstance(parts, list | tuple) or len(parts) != 2:
        raise bad
    try:
        numbers = [p if isinstance(p, int | float) else float(p) for p in parts]
    except (TypeError, ValueError):
        raise bad from None
    if any(isinstance(n, bool) or not math.isfinite(n) or not 0 <= n < 1 for n in numbers):
        raise bad
    return ",".join(repr(float(n)) for n in numbers)


def pair_values(text: str) -> tuple[float, float]:
    """'0.9,0.999' -> (0.9, 0.999)."""
    a, b = (float(p) for p in text.split(","))
    return a, b


def coerce_value(f: dataclasses.Field, value: Any) -> Any:
    """Check a value against its field's type (whole numbers for ints, numbers for floats,
    true/false for switches); ints become floats where a float is expected, a pair field
    (--betas) takes its canonical text."""
    base, optional = field_kind(f)
    name = f.name
    if value is None:
        if optional:
            return None
        raise CifarlabError(f"option {name} needs a value")
    if f.metadata.get("pair"):
        return pair_text(name, value)
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CifarlabError(f"option {name} must be a whole number, not {value!r}")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CifarlabError(f"option {name} must be a number, not {value!r}")
        return float(value)
    if base is bool:
        if not isinstance(value, bool):
            raise CifarlabError(f"option {name} must be true or false, not {value!r}")
        return value
    if not isinstance(value, str):
        raise CifarlabError(f"option {name} must be a string, not {value!r}")
    return value


def check_field(f: dataclasses.Field, value: Any) -> None:
    """A value's choices and bounds, from the field's type and metadata."""
    if value is None:
        return
    name = f.name
    allowed = field_choices(f)
    if allowed and value not in allowed:
        raise CifarlabError(f"{flag(name)} must be one of {', '.join(allowed)}")
    meta = f.metadata
    lo, above, below = meta["at_least"], meta["above"], meta["below"]
    if below is not None and lo is not None and not lo <= value < below:
        raise CifarlabError(f"{flag(name)} must be in [{lo:g}, {below:g}), not {value}")
    if below is not None and above is not None and not above < value < below:
        raise CifarlabError(f"{flag(name)} must be between {above:g} and {below:g}, not {value}")
    if above is not None and not value > above:
        raise CifarlabError(f"{flag(name)} must be greater than {above:g}, not {value}")
    if lo is not None and not value >= lo:
        raise CifarlabError(f"{flag(name)} must be at least {lo:g}, not {value}")


def for_optimizers(name: str) -> str:
    """'--optimizer sgd or muon': the optimizers option `name` is for."""
    return "--optimizer " + " or ".join(OPTIMIZER_OPTIONS[name])


def validate(cfg: Any) -> None:
    """Reject impossible settings of a TrainConfig: each option alone, then the combinations."""
    # lazy: the command line reads the fields for --help, which must not wait for torch
    from cifarlab.data import dataset_spec
    from cifarlab.models.registry import check_name

    by_name = {f.name: f for f in dataclasses.fields(cfg)}
    for f in by_name.values():
        check_field(f, getattr(cfg, f.name))
    check_name(cfg.model)
    if dataset_spec(cfg.dataset).evaluation_only:
        raise CifarlabError(
            f"--dataset {cfg.dataset} is for evaluation only (`cifarlab evaluate RUN --dataset "
            f"{cfg.dataset} --data-dir DIR`); train on cifar10"
        )
    for name in ("labels", "image_size", "test_fraction"):
        only = DATASET_DETAILS[name]
        if getattr(cfg, name) != by_name[name].default and cfg.dataset != only:
            raise CifarlabError(f"{flag(name)} is for --dataset {only}, not {cfg.dataset}")
    for name, optimizers in OPTIMIZER_OPTIONS.items():
        if cfg.optimizer not in optimizers and getattr(cfg, name) != by_name[name].default:
            hint = " (Adam's momentum: --betas)" if name in ("momentum", "nesterov") else ""
            raise CifarlabError(f"{flag(name)} is for {for_optimizers(name)}{hint}")
    if cfg.nesterov and cfg.momentum == 0:
        raise CifarlabError("--nesterov needs a momentum above 0")
    if cfg.warmup_epochs > cfg.epochs:
        raise CifarlabError(f"--warmup-epochs must be between 0 and --epochs ({cfg.epochs})")
    if cfg.alt_flip and not cfg.augment.startswith("flip"):
        raise CifarlabError(f"--alt-flip needs an --augment with flips, not {cfg.augment!r}")
    if cfg.optimizer == "muon" and cfg.precision == "fp16":
        raise CifarlabError("--optimizer muon runs in bf16 or fp32, not fp16 (no loss scaling)")
    if cfg.val_from == "none" and cfg.val_size is not None:
        raise CifarlabError("--val-size needs a validation split; drop it with --val-from none")
    if cfg.random_erasing > 1:
        raise CifarlabError(f"--random-erasing is a probability, not {cfg.random_erasing}")
    if cfg.early_stop and cfg.val_from == "none":
        raise CifarlabError(
            "--early-stop watches the validation accuracy: give a validation split "
            "(--val-from test or train), or drop --early-stop"
        )
