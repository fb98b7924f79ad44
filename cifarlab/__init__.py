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
from typing import TYPE_CHECKING, Any

from cifarlab._version import __version__

_EXPORTS = {
    "TrainConfig": ("cifarlab.config", "TrainConfig"),
    "resolve": ("cifarlab.config", "resolve"),
    "train": ("cifarlab.train_loop", "train"),
    "Trainer": ("cifarlab.train_step", "Trainer"),
    "Dataset": ("cifarlab.data", "Dataset"),
    "load_dataset": ("cifarlab.data", "load_dataset"),
    "make_splits": ("cifarlab.data", "make_splits"),
    "Normalize": ("cifarlab.data", "Normalize"),
    "build_model": ("cifarlab.model_registry", "build_model"),
    "register_model": ("cifarlab.model_registry", "register"),
    "StudySpec": ("cifarlab.spec", "StudySpec"),
    "ModelPlan": ("cifarlab.spec", "ModelPlan"),
    "read_spec": ("cifarlab.spec", "read_spec"),
    "run_study": ("cifarlab.study", "run_study"),
    "compare": ("cifarlab.comparison", "compare"),
    "run_tune": ("cifarlab.tune", "run_tune"),
    "TuneSettings": ("cifarlab.tune_loop", "TuneSettings"),
    "load_trained": ("cifarlab.inference", "load_trained"),
    "evaluate_trained": ("cifarlab.inference", "evaluate_trained"),
    "predict_files": ("cifarlab.inference", "predict_files"),
    "export_trained": ("cifarlab.export", "export_trained"),
    "CifarlabError": ("cifarlab.errors", "CifarlabError"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cifarlab' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what type checkers and editors see
    from cifarlab.comparison import compare
    from cifarlab.config import TrainConfig, resolve
    from cifarlab.data import Dataset, Normalize, load_dataset, make_splits
    from cifarlab.errors import CifarlabError
    from cifarlab.export import export_trained
    from cifarlab.inference import evaluate_trained, load_trained, predict_files
    from cifarlab.model_registry import build_model
    from cifarlab.model_registry import register as register_model
    from cifarlab.spec import ModelPlan, StudySpec, read_spec
    from cifarlab.study import run_study
    from cifarlab.train_loop import train
    from cifarlab.train_step import Trainer
    from cifarlab.tune import run_tune
    from cifarlab.tune_loop import TuneSettings
