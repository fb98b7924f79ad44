"""cifarlab: train and study CNN image classifiers, reproducibly and fast.

The Python API (the command line is built on the same pieces)::

    import cifarlab

    data = cifarlab.load_dataset("cifar10", "~/data")          # or mnist, imagefolder, ...
    cfg = cifarlab.TrainConfig.for_model("base", epochs=2)     # a model's recipe + options
    summary = cifarlab.train(cfg, "runs/base", data=data)      # a run folder; its summary
    cifarlab.run_study("runs/study", spec="study.yaml")        # a whole study and report

Models: `cifarlab.register_model(name, description)` decorates a builder
`(num_classes, in_channels, image_size) -> nn.Module`; `cifarlab.build_model(name, ...)`.
Trained models: `load_trained`, `evaluate_trained`, `predict_files`, `export_trained`.
Is one configuration better than another: `cifarlab.compare(paths, by=..., metric=...)`.
A search: `cifarlab.run_tune(flags, ["lr=log:0.001:0.1"], cifarlab.TuneSettings(trials=20))`.
Names are imported on first use, so `import cifarlab` stays quick.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from cifarlab._version import __version__


def _exports(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level __getattr__ and __dir__ of `package` (this one and every
    subpackage's __init__), offering `names` (name -> its module in the package, or
    module:attribute where the attribute has another name there), each imported on first use
    (PEP 562): `import cifarlab.tune` costs nothing until a name of it is read."""
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


_EXPORTS = {
    "TrainConfig": "config.options",
    "resolve": "config.options",
    "train": "training.loop",
    "Trainer": "training.trainer",
    "Dataset": "data",
    "load_dataset": "data",
    "make_splits": "data",
    "Normalize": "data",
    "build_model": "models.registry",
    "register_model": "models.registry:register",
    "StudySpec": "study.spec",
    "ModelPlan": "study.spec",
    "read_spec": "study.spec",
    "run_study": "study.run",
    "compare": "experiments.compare",
    "run_tune": "tune.search",
    "TuneSettings": "tune.loop",
    "load_trained": "evaluate.trained",
    "evaluate_trained": "evaluate.trained",
    "predict_files": "evaluate.trained",
    "export_trained": "evaluate.export",
    "CifarlabError": "errors",
}

__all__ = ["__version__", *_EXPORTS]
__getattr__, __dir__ = _exports(__name__, _EXPORTS)
