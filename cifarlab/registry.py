"""Named things of one kind (models, datasets): registered once, found by name, and an
unknown name answered in one line that names the closest one and every choice.

    DATASETS = Registry("dataset", hint=" (`cifarlab datasets` lists them)")
    DATASETS.register("cifar10", spec)
    DATASETS.find("cifar1O")   # CifarlabError: unknown dataset 'cifar1O' (did you mean
                               # 'cifar10'?); choose one of: cifar10, ...

A Registry is a dict (name -> thing), so code that only reads it treats it as one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeVar

from cifarlab.errors import CifarlabError

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'lr'?)' for the closest of `choices`, or '' where none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str], hint: str = "") -> str:
    """The one-line message for a name that is none of `choices`."""
    choices = list(choices)
    return (
        f"unknown {kind} {name!r}{did_you_mean(name, choices)}; "
        f"choose one of: {', '.join(choices)}{hint}"
    )


class Registry(dict[str, T]):
    """Things of one kind by name; `kind` and `hint` word the error for an unknown name."""

    def __init__(self, kind: str, items: Iterable[tuple[str, T]] = (), hint: str = "") -> None:
        super().__init__(items)
        self.kind = kind
        self.hint = hint

    def register(self, name: str, item: T) -> T:
        """Add (or replace) `name`; returns the item, so this can end a decorator."""
        self[name] = item
        return item

    def find(self, name: str, more: Iterable[str] = ()) -> T:
        """The thing registered as `name`, else a CifarlabError naming the choices (these
        and `more`: names found elsewhere, e.g. installed entry points)."""
        if name in self:
            return self[name]
        raise CifarlabError(unknown(self.kind, name, [*self, *more], self.hint))
