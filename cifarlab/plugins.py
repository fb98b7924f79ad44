"""Models from outside the package: a Python file, a module, or an installed entry point.

    --model nets/mine.py:build        a function in a file
    --model mypackage.nets:build      a function in an importable module
    --model mine                      an entry point of the group `cifarlab.models`,
                                      installed by a package (name = "module:function")

A run records the reference and a hash of the code (the file, or the module's file).
Code named only in a checkpoint or run folder is never imported: `evaluate`, `predict`
and `export` of a plugin model take `--model` again (an installed entry point needs
nothing), and a reference that differs from the recorded one is an error.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError
from cifarlab.models import REGISTRY, ModelSpec

GROUP = "cifarlab.models"


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed entry points of the group cifarlab.models, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def is_reference(name: str) -> bool:
    """Whether `name` has the form path/file.py:function or package.module:function."""
    where, sep, function = name.rpartition(":")
    return bool(sep and where and function.isidentifier())


def kind_of(name: str) -> str:
    """'builtin' (registered in this process), 'entry point', 'file' or 'module'."""
    if name in REGISTRY:
        return "builtin"
    if not is_reference(name) and name in entry_points():
        return "entry point"
    if is_reference(name):
        where = name.rpartition(":")[0]
        return "file" if where.endswith(".py") or "/" in where or "\\" in where else "module"
    return "unknown"


def check_name(name: str) -> None:
    """Reject a model name that is none of the four kinds (cheap: imports nothing)."""
    if kind_of(name) == "unknown":
        raise CifarlabError(
            f"unknown model {name!r}; choose one of: {', '.join(all_names())}, or give "
            "path/to/file.py:function or package.module:function (`cifarlab models`)"
        )


def all_names() -> list[str]:
    return [*REGISTRY, *(n for n in entry_points() if n not in REGISTRY)]


def _describe(obj: Any, fallback: str) -> str:
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else fallback


def _from_module(module: Any, function: str, where: str) -> Any:
    fn = getattr(module, function, None)
    if fn is None:
        defined = sorted(
            n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
        )
        raise CifarlabError(
            f"{where} has no function {function!r} (it defines: {', '.join(defined) or 'none'})"
        )
    if not callable(fn):
        raise CifarlabError(f"{where}:{function} is a {type(fn).__name__}, not a function")
    return fn


_IMPORTED: dict[tuple[str, int], Any] = {}  # (file, modification time) -> module


def _import_file(path: Path) -> Any:
    """Import a Python file as a module of its own (its folder on sys.path while it runs,
    so that it can import its neighbours); once per version of the file."""
    if not path.is_file():
        raise CifarlabError(f"model file {path} does not exist")
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key in _IMPORTED:
        return _IMPORTED[key]
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"cifarlab_plugin_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise CifarlabError(
            f"model file {path} failed to import: {type(e).__name__}: {e}"
        ) from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    sys.modules[name] = _IMPORTED[key] = module
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise CifarlabError(
            f"no module {e.name!r} for model {name!r}: is it installed, or on PYTHONPATH?"
        ) from None
    except Exception as e:
        raise CifarlabError(f"module {name} failed to import: {type(e).__name__}: {e}") from None


def find_model(name: str) -> ModelSpec:
    """The builder behind a model name or reference (importing its code)."""
    kind = kind_of(name)
    if kind == "builtin":
        return REGISTRY[name]
    if kind == "entry point":
        try:
            fn = entry_points()[name].load()
        except Exception as e:
            raise CifarlabError(
                f"entry point {name!r} failed to load: {type(e).__name__}: {e}"
            ) from None
        return ModelSpec(name, _describe(fn, f"entry point {entry_points()[name].value}"), fn)
    check_name(name)
    where, _, function = name.rpartition(":")
    module = _import_file(Path(where)) if kind == "file" else _import_module(where)
    fn = _from_module(module, function, where)
    return ModelSpec(name, _describe(fn, f"{kind} {where}"), fn)


def source_of(name: str) -> dict[str, Any]:
    """What a run records about its model's code: the reference, its kind, and for code
    outside cifarlab the file and its SHA-256."""
    kind = kind_of(name)
    out: dict[str, Any] = {"reference": name, "kind": kind}
    path = None
    if kind == "file":
        path = Path(name.rpartition(":")[0]).resolve()
    elif kind in ("module", "entry point"):
        target = entry_points()[name].value if kind == "entry point" else name
        spec = importlib.util.find_spec(target.partition(":")[0].strip())
        path = Path(spec.origin) if spec and spec.origin else None
    if path is not None and path.is_file():
        out["path"] = str(path)
        out["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def allow_checkpoint_model(recorded: str, given: str | None, source: dict | None) -> str:
    """The model reference to rebuild a checkpoint's model with. A built-in or installed
    model needs nothing; code outside cifarlab must be named again by the user (`given`,
    their --model), equal to the recorded reference. Warns when the file changed."""
    if given is not None and given != recorded:
        raise CifarlabError(
            f"--model {given} is not this run's model {recorded}; pass --model {recorded}"
        )
    if kind_of(recorded) in ("builtin", "entry point"):
        return recorded
    if given is None:
        raise CifarlabError(
            f"this run's model is {recorded}, code outside cifarlab: pass --model {recorded} "
            "to load it (cifarlab never imports code named only in a checkpoint or run folder)"
        )
    now = source_of(recorded).get("sha256")
    if source and source.get("sha256") and now and now != source["sha256"]:
        print(
            f"warning: {recorded.rpartition(':')[0]} has changed since the run was trained "
            "(its SHA-256 differs); the weights are loaded into the code as it is now",
            file=sys.stderr,
        )
    return recorded
