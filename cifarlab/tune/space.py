"""The search space of `cifarlab tune`: `--param NAME=SPEC`, one per searched train option.

    log:LOW:HIGH      a float drawn on a log scale (lr, weight-decay)
    uniform:LOW:HIGH  a float drawn uniformly (momentum)
    int:LOW:HIGH      a whole number, LOW..HIGH inclusive (epochs, batch-size)
    choice:A,B,...    one of the values (augment=choice:none,flip-crop; nesterov=choice:true,false)

NAME is any option that changes what a run computes (`cifarlab train --help`); every bound
and choice is checked as a value of that option before any work. The space becomes Optuna's
distributions (sampled by TPE or at random) or, for the grid sampler, a grid of values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cifarlab.config.choices import TUNE_METRICS
from cifarlab.config.options import OPTIONS, TrainConfig, flag
from cifarlab.config.parse import option_name, parse_list, parse_value
from cifarlab.errors import CifarlabError

if TYPE_CHECKING:
    import optuna.distributions as od

METRICS = TUNE_METRICS  # tune --metric: its direction

KINDS = ("log", "uniform", "int", "choice")
SPEC_HELP = "log:LOW:HIGH, uniform:LOW:HIGH, int:LOW:HIGH or choice:A,B,..."


@dataclass(frozen=True)
class Param:
    """One searched option: its field name, kind, and bounds (low, high) or choices."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] = ()

    @property
    def spec(self) -> str:
        """As written on the command line: 'log:0.001:0.1'."""
        if self.kind == "choice":
            return "choice:" + ",".join(_text(c) for c in self.choices)
        return f"{self.kind}:{self.low}:{self.high}"

    def distribution(self) -> od.BaseDistribution:
        import optuna.distributions as od  # lazy: the command line reads this module's names

        if self.kind == "choice":
            return od.CategoricalDistribution(self.choices)
        if self.kind == "int":
            return od.IntDistribution(int(self.low), int(self.high))
        return od.FloatDistribution(float(self.low), float(self.high), log=self.kind == "log")

    def grid(self) -> list[Any]:
        """The values of this parameter in a grid search: its choices or its whole numbers."""
        if self.kind == "choice":
            return list(self.choices)
        if self.kind == "int":
            return list(range(int(self.low), int(self.high) + 1))
        raise CifarlabError(
            f"--sampler grid needs choice:... or int:... parameters; {flag(self.name)} is "
            f"{self.spec} (give it as choice:A,B,... or use --sampler tpe or random)"
        )


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _check(text: str, name: str, value: Any) -> None:
    """A value the option takes (a choice it has, --lr above 0, ...): else one line."""
    try:
        TrainConfig(**{name: value})
    except CifarlabError as e:
        raise CifarlabError(f"--param {text!r}: {e}") from None


def parse_param(text: str) -> Param:
    """'lr=log:1e-3:0.1' -> Param('lr', 'log', 0.001, 0.1); a wrong name or spec is one line."""
    name_text, sep, spec = text.partition("=")
    if not sep or not spec.strip():
        raise CifarlabError(f"--param {text!r}: expected NAME=SPEC with SPEC one of {SPEC_HELP}")
    name = option_name(name_text, sweepable=True)
    what, _, rest = spec.strip().partition(":")
    if what not in KINDS:
        raise CifarlabError(f"--param {text!r}: {what!r} is not a kind of range ({SPEC_HELP})")
    if what == "choice":
        values = tuple(parse_list(name, rest))
        if OPTIONS[name].base in (int, float, str):  # switches are checked with the others' values
            for value in values:
                _check(text, name, value)
        return Param(name, "choice", choices=values)
    bounds = rest.split(":")
    if len(bounds) != 2:
        raise CifarlabError(f"--param {text!r}: {what} needs LOW:HIGH, e.g. {what}:1:8")
    base = OPTIONS[name].base
    allowed = {int: ("int",), float: ("log", "uniform", "int")}.get(base, ())
    if what not in allowed:
        takes = f"{' or '.join(f'{k}:LOW:HIGH' for k in allowed)} or " if allowed else ""
        raise CifarlabError(f"--param {text!r}: {flag(name)} takes {takes}choice:A,B,...")
    low, high = (parse_value(name, b) for b in bounds)
    if what == "int":
        low, high = int(low), int(high)
    for bound in (low, high):
        _check(text, name, bound)
    if not low < high:
        raise CifarlabError(f"--param {text!r}: LOW must be below HIGH")
    if what == "log" and low <= 0:
        raise CifarlabError(f"--param {text!r}: a log range needs LOW above 0")
    return Param(name, what, low, high)


@dataclass(frozen=True)
class SearchSpace:
    """The searched parameters, in the order given."""

    params: tuple[Param, ...]

    @classmethod
    def parse(cls, texts: list[str] | tuple[str, ...]) -> SearchSpace:
        if not texts:
            raise CifarlabError(
                "nothing to search: give at least one --param NAME=SPEC, e.g. "
                "--param lr=log:0.001:0.1"
            )
        params = tuple(parse_param(t) for t in texts)
        names = [p.name for p in params]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise CifarlabError(f"--param names {', '.join(map(flag, twice))} more than once")
        return cls(params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def distributions(self) -> dict[str, od.BaseDistribution]:
        return {p.name: p.distribution() for p in self.params}

    def grid(self) -> dict[str, list[Any]]:
        return {p.name: p.grid() for p in self.params}

    def grid_size(self) -> int:
        size = 1
        for values in self.grid().values():
            size *= len(values)
        return size

    def specs(self) -> dict[str, str]:
        """{name: spec}, as given: stored with the search, shown in its report."""
        return {p.name: p.spec for p in self.params}

    def check_fixed(self, flags: dict[str, Any]) -> None:
        """An option both searched and fixed is a mistake: one line."""
        both = [n for n in self.names if flags.get(n) is not None]
        if both:
            raise CifarlabError(
                f"{', '.join(map(flag, both))} is searched (--param) and fixed at once; "
                "drop one of the two"
            )
