"""The model registry: every model name, built-in or from outside the package, is found here.

    build_model("base", num_classes=10, in_channels=3, image_size=32)   # a built-in
    build_model("nets/mine.py:build")          # a function in a file
    build_model("mypackage.nets:build")        # a function in an importable module
    build_model("mine")                        # an installed entry point of the group
                                               # `cifarlab.models` ("module:function")
    build_model("timm:resnet18")               # a timm model (cifarlab.models.timm_models)

A builder receives the data's number of classes, channels and image size (those of its
parameters it names). `register(name, description)` adds one in this process (the Python
API's `cifarlab.register_model`). A run records the reference and a hash of the code (the
file, or the module's file). Code named only in a checkpoint or run folder is never
imported: `evaluate`, `predict` and `export` of a plugin model take `--model` again (an
installed entry point or a timm model needs nothing), and a reference that differs from the
recorded one is an error. A plugin builder's docstring (its first paragraph) is its
description. timm:NAME is a timm model (cifarlab.models.timm_models; it records timm's version).
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab.errors import CifarlabError
from cifarlab.files import file_digest
from cifarlab.models import builtin as models
from cifarlab.models.timm_models import check_timm_name, is_timm, timm_builder, timm_version
from cifarlab.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[..., nn.Module]


REGISTRY: Registry[ModelSpec] = Registry(
    "model",
    hint=", or give timm:NAME, path/to/file.py:function or package.module:function "
    "(`cifarlab models`)",
    items=(
        (spec.name, spec)
        for spec in (
            ModelSpec(
                "base",
                "the study's base CNN: Conv(3->32) Conv(32->64) ReLU MaxPool, Conv(64->128) "
                "Conv(128->128) ReLU MaxPool, Linear(3200->10) at 32x32 (2048 at 28x28); 3x3 "
                "kernels, padding 0; PyTorch's default initialization",
                models.base_cnn,
            ),
            ModelSpec(
                "improved",
                "the study's improved CNN: 3x3 convs with padding 1, BatchNorm and GELU after "
                "each, blocks 3->64->128, 128->256->256, 256->512, MaxPool + Dropout(0.2) after "
                "each block, Linear(8192->1024) GELU Dropout Linear(1024->10) at 32x32; Kaiming "
                "initialization",
                models.improved_cnn,
            ),
            # the same network under another name, for its own recipe (recipes.RECIPES)
            ModelSpec(
                "improved-plus",
                "the improved CNN's network, with a longer modern recipe: 35 epochs, label "
                "smoothing, random erasing, one-cycle SGD (meant to pass 90% on the full data)",
                models.improved_cnn,
            ),
            ModelSpec(
                "fast",
                "airbench94-style: a frozen 2x2 patch-whitening conv, three conv-pool-BN-GELU-"
                "conv-BN-GELU blocks of widths 64/256/256, a scaled linear head",
                models.fast_cnn,
            ),
            # the same network under another name, for its own recipe (recipes.RECIPES)
            ModelSpec(
                "fast-muon",
                "the fast model's network, with its own recipe: Muon for the conv filters, 8 "
                "epochs at batch 2000 (airbench94_muon's, translated)",
                models.fast_cnn,
            ),
            ModelSpec(
                "fast-cpu",
                "the fast model's network, with fast-muon's recipe for two CPU cores: "
                "micro-batches of 500, test-time augmentation only for the unsure images",
                models.fast_cnn,
            ),
            ModelSpec(
                "resnet18",
                "ResNet-18, CIFAR variant: 3x3 stride-1 stem (64 channels), no max-pool, four "
                "stages of two basic blocks (64-128-256-512, stride 2 at stages 2-4, 1x1 conv "
                "shortcuts), global average pool, linear head; Kaiming initialization",
                models.resnet18,
            ),
        )
    ),
)


def register(name: str, description: str) -> Callable:
    """Decorator: register a builder under `name` in this process."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        REGISTRY.register(name, ModelSpec(name, description, fn))
        return fn

    return wrap


def call_builder(build: Callable[..., nn.Module], **args: int) -> nn.Module:
    """Call a model builder with those of `args` it takes (all of them with **kwargs)."""
    params = inspect.signature(build).parameters.values()
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        names = {p.name for p in params}
        args = {k: v for k, v in args.items() if k in names}
    return build(**args)


def build_model(
    name: str, num_classes: int = 10, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    """The model `name` (a registered name, an installed entry point, or a plugin
    reference path/file.py:function or package.module:function) for data of this shape."""
    args = dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    spec = find_model(name)
    model = call_builder(spec.build, **args)
    if not isinstance(model, nn.Module):
        raise CifarlabError(
            f"model {name!r} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def check_outputs(model: nn.Module, name: str, num_classes: int, shape: tuple[int, ...]) -> None:
    """Run the model once on a dummy batch of two images of `shape` (C, H, W), in eval
    mode (no state changes): it must give one logit per class for each image."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape, device=device))
    except Exception as e:
        why = str(e).splitlines()[0] if str(e) else ""
        raise CifarlabError(
            f"model {name!r} fails on a batch of shape {(2, *shape)}: {type(e).__name__}: {why}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise CifarlabError(
            f"model {name!r} gives outputs of shape {got} for 2 images of shape {shape}; "
            f"expected (2, {num_classes}): one logit per class"
        )


# ------------------------------------------------------- models from outside the package

GROUP = "cifarlab.models"


def entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed entry points of the group cifarlab.models, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def is_reference(name: str) -> bool:
    """Whether `name` has the form path/file.py:function or package.module:function
    (timm:NAME, which has that form too, is a timm model, never a reference)."""
    where, sep, function = name.rpartition(":")
    return bool(sep and where and function.isidentifier()) and not is_timm(name)


def kind_of(name: str) -> str:
    """'builtin' (registered in this process), 'timm', 'entry point', 'file' or 'module'."""
    if name in REGISTRY:
        return "builtin"
    if is_timm(name):
        return "timm"
    if not is_reference(name) and name in entry_points():
        return "entry point"
    if is_reference(name):
        where = name.rpartition(":")[0]
        return "file" if where.endswith(".py") or "/" in where or "\\" in where else "module"
    return "unknown"


def check_name(name: str) -> None:
    """Reject a model name that is none of the five kinds (cheap: imports nothing). A
    Python file without :function gets the functions it defines (read, not imported)."""
    kind = kind_of(name)
    if kind == "timm":
        check_timm_name(name)
    if kind != "unknown":
        return
    if name.endswith(".py"):
        if not Path(name).is_file():
            raise CifarlabError(
                f"model file {name} does not exist (a model from a file: path/to/file.py:function)"
            )
        defined = builders_in(Path(name))
        example = f", e.g. {name}:{defined[0]}" if defined else " (path/to/file.py:function)"
        raise CifarlabError(
            f"{name} is a file: name the function too{example}; "
            f"it defines: {', '.join(defined) or 'no functions'}"
        )
    REGISTRY.find(name, more=(n for n in entry_points() if n not in REGISTRY))


def builders_in(path: Path) -> list[str]:
    """The public functions a Python file defines at its top level (parsed, not run)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError) as e:
        raise CifarlabError(f"model file {path} cannot be read as Python: {e}") from None
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")
    ]


def all_names() -> list[str]:
    return [*REGISTRY, *(n for n in entry_points() if n not in REGISTRY)]


def _describe(obj: Any, fallback: str) -> str:
    """A builder's description: the first paragraph of its docstring, on one line."""
    doc = inspect.cleandoc(getattr(obj, "__doc__", None) or "").strip()
    return " ".join(doc.split("\n\n")[0].split()) if doc else fallback


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
    if kind == "timm":
        check_timm_name(name)
        build = timm_builder(name)
        return ModelSpec(name, build.__doc__, build)
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
    if kind == "timm":
        out["timm_version"] = timm_version()
    path = None
    if kind == "file":
        path = Path(name.rpartition(":")[0]).resolve()
    elif kind in ("module", "entry point"):
        target = entry_points()[name].value if kind == "entry point" else name
        spec = importlib.util.find_spec(target.partition(":")[0].strip())
        path = Path(spec.origin) if spec and spec.origin else None
    if path is not None and path.is_file():
        out["path"] = str(path)
        out["sha256"] = file_digest(path)
    return out


def allow_checkpoint_model(recorded: str, given: str | None, source: dict | None) -> str:
    """The model reference to rebuild a checkpoint's model with. A built-in, timm or
    installed model needs nothing; code outside cifarlab must be named again by the user
    (`given`, their --model), equal to the recorded reference. Warns when the file changed."""
    if given is not None and given != recorded:
        raise CifarlabError(
            f"--model {given} is not this run's model {recorded}; pass --model {recorded}"
        )
    if kind_of(recorded) in ("builtin", "timm", "entry point"):
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


def describe_models(names: list[str] | None = None) -> list[tuple[str, int, str]]:
    """(name, parameters at CIFAR-10's shapes, description) of the models `names` (names or
    references; default: every registered and installed model), for `cifarlab models`."""
    return [
        (name, models.count_parameters(build_model(name)), find_model(name).description)
        for name in (names or all_names())
    ]
