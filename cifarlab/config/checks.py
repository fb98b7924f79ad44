"""One train option as its TrainConfig field declares it (an `Option`: type, choices, bounds,
help, whether it says what a run computes) and its checks: each value against its option,
then the combinations of a whole config (`validate`, called by TrainConfig.__post_init__).
cifarlab.config.options reads each field once into OPTIONS; the command line, the config
files, the sweeps and the search read an option's description there.
"""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass
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
    """The option's flag: batch_size -> --batch-size."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Option:
    """One train option: its name, default and help; base type (bool, int, float or str) and
    whether None is allowed; choices (its Literal type) and bounds; pair: two numbers in
    [0, 1) written B1,B2 (--betas); identity: it says what a run computes (False: where or
    how fast; left out of the run's cache key, not sweepable)."""

    name: str
    default: Any
    help: str
    base: type
    optional: bool = False
    choices: tuple[str, ...] = ()
    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    pair: bool = False
    identity: bool = True

    @classmethod
    def of(cls, f: dataclasses.Field) -> Option:
        """The option a TrainConfig field declares (see cifarlab.config.options.option)."""
        t, optional = f.type, False
        if get_origin(t) is types.UnionType:
            t = next(a for a in get_args(t) if a is not type(None))
            optional = True
        choices = get_args(t) if get_origin(t) is Literal else ()
        meta = f.metadata
        return cls(
            name=f.name,
            default=f.default,
            help=meta["help"],
            base=str if choices else t,
            optional=optional,
            choices=choices,
            at_least=meta["at_least"],
            above=meta["above"],
            below=meta["below"],
            pair=meta.get("pair", False),
            identity=meta["identity"],
        )

    @property
    def flag(self) -> str:
        return flag(self.name)

    def coerce(self, value: Any) -> Any:
        """Check a value against the option's type (whole numbers for ints, numbers for
        floats, true/false for switches); ints become floats where a float is expected, a
        pair (--betas) takes its canonical text."""
        name, base = self.name, self.base
        if value is None:
            if self.optional:
                return None
            raise CifarlabError(f"option {name} needs a value")
        if self.pair:
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

    def check(self, value: Any) -> None:
        """A value's choices and bounds."""
        if value is None:
            return
        if self.choices and value not in self.choices:
            raise CifarlabError(f"{self.flag} must be one of {', '.join(self.choices)}")
        lo, above, below = self.at_least, self.above, self.below
        if below is not None and lo is not None and not lo <= value < below:
            raise CifarlabError(f"{self.flag} must be in [{lo:g}, {below:g}), not {value}")
        if below is not None and above is not None and not above < value < below:
            raise CifarlabError(f"{self.flag} must be between {above:g} and {below:g}, not {value}")
        if above is not None and not value > above:
            raise CifarlabError(f"{self.flag} must be greater than {above:g}, not {value}")
        if lo is not None and not value >= lo:
            raise CifarlabError(f"{self.flag} must be at least {lo:g}, not {value}")


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


def for_optimizers(name: str) -> str:
    """'--optimizer sgd or muon': the optimizers option `name` is for."""
    return "--optimizer " + " or ".join(OPTIMIZER_OPTIONS[name])


def validate(cfg: Any, options: dict[str, Option]) -> None:
    """Reject impossible settings of a TrainConfig (its `options`): each option alone, then
    the combinations."""
    # lazy: the command line reads the fields for --help, which must not wait for torch
    from cifarlab.data import dataset_spec
    from cifarlab.models.registry import check_name

    for name, spec in options.items():
        spec.check(getattr(cfg, name))
    check_name(cfg.model)
    if dataset_spec(cfg.dataset).evaluation_only:
        raise CifarlabError(
            f"--dataset {cfg.dataset} is for evaluation only (`cifarlab evaluate RUN --dataset "
            f"{cfg.dataset} --data-dir DIR`); train on cifar10"
        )
    for name in ("labels", "image_size", "test_fraction"):
        only = DATASET_DETAILS[name]
        if getattr(cfg, name) != options[name].default and cfg.dataset != only:
            raise CifarlabError(f"{flag(name)} is for --dataset {only}, not {cfg.dataset}")
    for name, optimizers in OPTIMIZER_OPTIONS.items():
        if cfg.optimizer not in optimizers and getattr(cfg, name) != options[name].default:
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
    if cfg.train_crop_share > 1:
        raise CifarlabError(
            f"--train-crop-share is a share of the epochs, not {cfg.train_crop_share}"
        )
    if cfg.prune_until > 1:
        raise CifarlabError(f"--prune-until is a share of the epochs, not {cfg.prune_until}")
    if cfg.random_erasing > 1:
        raise CifarlabError(f"--random-erasing is a probability, not {cfg.random_erasing}")
    if cfg.early_stop and cfg.val_from == "none":
        raise CifarlabError(
            "--early-stop watches the validation accuracy: give a validation split "
            "(--val-from test or train), or drop --early-stop"
        )
