"""A package's names, imported on first use (PEP 562): `import cifarlab.tune` costs nothing
until a name of it is read, so the command line starts without torch, Optuna or Ray.

    __getattr__, __dir__ = exports(__name__, {"run_tune": "search", "register_model": "x:register"})

Each name maps to the module of the package that holds it (`module:attribute` where the
attribute has another name there).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def exports(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level __getattr__ and __dir__ of `package`, offering `names`."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = names[name].partition(":")
        value = getattr(importlib.import_module(f"{package}.{module}"), attribute or name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__
