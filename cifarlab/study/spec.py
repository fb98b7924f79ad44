"""Study specs: what `cifarlab study` runs, as data (a YAML file or the built-in original).

    title: CNN image classification on CIFAR-10
    dataset: cifar10               # or {dataset: cifar100, labels: coarse}
    seeds: [5, 6, 7, 8, 9]         # the first is every model's seed outside the seed study
    models:
      - name: base                 # a short name: step keys, file names
        model: base                # a model name, path/to/file.py:function or module:function
        title: base CNN            # what the report calls it (default: the name)
        overrides: {}              # train options on top of the model's recipe
        lrs: [0.01, 0.03, 0.05]    # its learning-rate sweep (none: leave it out)
        lr_seeds: 3                # seeds per lr (default 1): the first 3 of `seeds`
      - ...
    epoch_study: {model: base, epochs: 10, seeds: 3}   # or leave it out (seeds: default 1)
    seed_study: {model: base}                # or leave it out
    failure_analysis:                        # or leave it out
      model: improved                        # its mistakes, calibration, Grad-CAM maps
      robustness: [base, improved]           # models measured under corruptions (default all)
      corruptions: [gaussian_noise, fog]     # CIFAR-10-C's names, or all
      severities: [1, 3, 5]
    tune:                                    # a search (cifarlab tune), or leave it out
      model: base
      params: {lr: "log:0.003:0.3", momentum: "uniform:0.0:0.95"}
      overrides: {epochs: 3, limit: 10000}   # fixed options of the trials, on the model's
      trials: 20                             # and sampler, pruner, metric as in `tune`
      confirm_seeds: 3                       # the best config and the model's, fresh seeds

Seeds per configuration in the learning-rate and epoch steps (`lr_seeds`, the epoch
study's `seeds`; `cifarlab study --seeds-per-config N` sets both) let the report say
whether one setting beats another beyond the seed-to-seed spread (cifarlab.experiments.compare).

`cifarlab study --print-spec` writes the original study in this form; with no --spec,
that is what runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cifarlab.config.options import FIELD_NAMES
from cifarlab.config.parse import syntax_error
from cifarlab.errors import CifarlabError
from cifarlab.study.spec_checks import TUNE_DEFAULTS as TUNE_DEFAULTS
from cifarlab.study.spec_checks import TUNE_KEYS as TUNE_KEYS
from cifarlab.study.spec_checks import (
    check_failures,
    check_known,
    check_seeds,
    check_tune,
    named_step,
    spec_error,
)

DATA_KEYS = ("dataset", "labels", "image_size", "test_fraction")
RESERVED = ("analysis", "epochs", "seeds", "failures", "tune")  # step names a model cannot take


@dataclass
class ModelPlan:
    """One model of a study: its main run (at the first seed) and its lr sweep."""

    name: str
    model: str
    title: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)
    lrs: list[float] = field(default_factory=list)
    lr_seeds: int = 1

    def label(self) -> str:
        return self.title or self.name


@dataclass
class StudySpec:
    """A study: dataset, models with their recipes and lr sweeps, seeds, epoch study."""

    title: str
    models: list[ModelPlan]
    seeds: list[int]
    dataset: dict[str, Any] = field(default_factory=lambda: {"dataset": "cifar10"})
    epoch_study: dict[str, Any] | None = None  # {"model": name, "epochs": n}
    seed_study: dict[str, Any] | None = None  # {"model": name}
    failure_analysis: dict[str, Any] | None = None  # see the module's docstring
    tune: dict[str, Any] | None = None  # see the module's docstring

    def plan(self, name: str) -> ModelPlan:
        return next(m for m in self.models if m.name == name)

    def first_seeds(self, n: int) -> list[int]:
        """The first n of the study's seeds (continued past the last where it has fewer)."""
        seeds = list(self.seeds[:n])
        while len(seeds) < n:
            seeds.append(max(seeds) + 1)
        return seeds

    def with_seeds_per_config(self, n: int | None) -> StudySpec:
        """The same study with n seeds per configuration in its lr and epoch steps."""
        if n is None:
            return self
        if n < 1:
            raise CifarlabError(f"--seeds-per-config must be at least 1, not {n}")
        new = copy.deepcopy(self)
        for m in new.models:
            m.lr_seeds = n
        if new.epoch_study:
            new.epoch_study["seeds"] = n
        return new

    @property
    def audit_model(self) -> str:
        """The model whose main run the data audit uses: the failure analysis's, else the
        last model (the original study's improved CNN)."""
        return (self.failure_analysis or {}).get("model") or self.models[-1].name

    def steps(self) -> dict[str, str]:
        """The study's steps in order, key -> title: the analysis, the first model's run,
        every lr sweep, the epoch study, the other models' runs, the seed study."""
        first, *others = self.models
        steps = {"analysis": "dataset analysis", first.name: first.label()}
        steps.update(
            {f"lr_{m.name}": f"learning-rate sweep, {m.label()}" for m in self.models if m.lrs}
        )
        if self.epoch_study:
            steps["epochs"] = "epoch study"
        steps.update({m.name: m.label() for m in others})
        if self.seed_study:
            steps["seeds"] = "seed sensitivity"
        if self.tune:
            steps["tune"] = f"hyperparameter search, {self.plan(self.tune['model']).label()}"
        steps["audit"] = f"data audit, {self.plan(self.audit_model).label()}"
        if self.failure_analysis:
            steps["failures"] = (
                f"where the {self.plan(self.failure_analysis['model']).label()} fails"
            )
        return steps

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = [
            {k: v for k, v in m.items() if v not in ("", {}, []) and (k, v) != ("lr_seeds", 1)}
            for m in d["models"]
        ]
        if d["epoch_study"] and d["epoch_study"].get("seeds") == 1:
            d["epoch_study"] = {k: v for k, v in d["epoch_study"].items() if k != "seeds"}
        if list(d["dataset"]) == ["dataset"]:
            d["dataset"] = d["dataset"]["dataset"]
        return {k: v for k, v in d.items() if v is not None}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:12]

    def with_dataset(self, options: dict[str, Any]) -> StudySpec:
        """The same study on other data (dataset options given on the command line)."""
        if not options:
            return self
        new = copy.deepcopy(self)
        if options.get("dataset", new.dataset["dataset"]) != new.dataset["dataset"]:
            new.dataset = {"dataset": options["dataset"]}
        new.dataset.update(options)
        return new


ORIGINAL = StudySpec(
    title="CNN image classification on CIFAR-10: the study, reproduced by cifarlab",
    models=[
        ModelPlan("base", "base", "base CNN", lrs=[0.01, 0.03, 0.05]),
        ModelPlan("improved", "improved", "improved CNN", lrs=[0.01, 0.03, 0.05, 0.1]),
    ],
    seeds=[5, 6, 7, 8, 9],
    epoch_study={"model": "base", "epochs": 10},
    seed_study={"model": "base"},
    failure_analysis={
        "model": "improved",
        "robustness": ["base", "improved"],
        "corruptions": ["gaussian_noise", "defocus_blur", "fog", "contrast", "jpeg_compression"],
        "severities": [1, 3, 5],
    },
)
# The same pipeline in about two minutes on a 2-core CPU without bf16 (fp32), with numbers
# that show it working: batches of 16 give both models more steps per image. The improved
# CNN's loss jumps to 10-30 within its first 5 steps even at lr 0.01 and takes a few dozen
# steps to settle: it gets 40, a warm-up over the first epoch, and its sweep's lower lrs
# (at 0.1 it has not settled by then). Measured in docs/tutorials/reproduce.md.
QUICK = StudySpec(
    title=ORIGINAL.title,
    models=[
        ModelPlan(
            "base",
            "base",
            "base CNN",
            {"limit": 512, "eval_limit": 256, "epochs": 2, "batch_size": 16},
            [0.01, 0.03, 0.05],
        ),
        ModelPlan(
            "improved",
            "improved",
            "improved CNN",
            {
                "lr": 0.01,
                "limit": 320,
                "eval_limit": 256,
                "epochs": 2,
                "batch_size": 16,
                "warmup_epochs": 1.0,
            },
            [0.01, 0.03],
        ),
    ],
    seeds=[5, 6, 7],
    epoch_study={"model": "base", "epochs": 3},
    seed_study={"model": "base"},
    failure_analysis={
        "model": "improved",
        "robustness": ["base", "improved"],
        "corruptions": ["gaussian_noise", "fog"],
        "severities": [1, 5],
    },
)


def is_original(spec: StudySpec) -> bool:
    """The published study (or its quick form), with any number of seeds per configuration:
    the report then sets the published numbers beside the measured ones."""
    return spec.with_seeds_per_config(1).to_dict() in (ORIGINAL.to_dict(), QUICK.to_dict())


# ------------------------------------------------------------------------ reading specs


def _model_plan(d: Any, where: str) -> ModelPlan:
    if not isinstance(d, dict) or "name" not in d or "model" not in d:
        raise spec_error(where, "each model needs at least `name:` and `model:`")
    check_known(d, ("name", "model", "title", "overrides", "lrs", "lr_seeds"), where)
    lr_seeds = d.get("lr_seeds", 1)
    if not isinstance(lr_seeds, int) or isinstance(lr_seeds, bool) or lr_seeds < 1:
        raise spec_error(where, f"lr_seeds of {d['name']} must be a whole number of at least 1")
    lrs = d.get("lrs") or []
    if not isinstance(lrs, list) or not all(isinstance(x, int | float) and x > 0 for x in lrs):
        raise spec_error(
            where, f"lrs of {d['name']} must be a list of positive numbers, not {lrs!r}"
        )
    overrides = d.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise spec_error(where, f"overrides of {d['name']} must be a mapping of train options")
    unknown = sorted(set(overrides) - set(FIELD_NAMES))
    if unknown:
        raise spec_error(
            where, f"overrides of {d['name']}: unknown train option(s) {', '.join(unknown)}"
        )
    return ModelPlan(
        str(d["name"]),
        str(d["model"]),
        str(d.get("title", "")),
        dict(overrides),
        [float(x) for x in lrs],
        lr_seeds,
    )


def spec_from_dict(d: Any, where: str = "") -> StudySpec:
    """A StudySpec from its mapping form (see the module's docstring), checked."""
    if not isinstance(d, dict):
        raise spec_error(where, "must be a mapping (title, dataset, seeds, models, ...)")
    check_known(
        d,
        (
            "title",
            "dataset",
            "seeds",
            "models",
            "epoch_study",
            "seed_study",
            "failure_analysis",
            "tune",
        ),
        where,
    )
    models = d.get("models")
    if not isinstance(models, list) or not models:
        raise spec_error(where, "needs `models:`, a list of at least one model")
    plans = [_model_plan(m, where) for m in models]
    names = [m.name for m in plans]
    if len(set(names)) != len(names):
        raise spec_error(where, f"model names must differ: {', '.join(names)}")
    for name in names:
        if not name.isidentifier() or name in RESERVED or name.startswith("lr_"):
            raise spec_error(
                where,
                f"model name {name!r} must be a word of letters, digits and _ (not "
                f"{', '.join(RESERVED)}, nor starting with lr_)",
            )
    data = d.get("dataset", "cifar10")
    data = {"dataset": data} if isinstance(data, str) else data
    if not isinstance(data, dict) or "dataset" not in data:
        raise spec_error(where, "dataset must be a name or a mapping with `dataset:`")
    check_known(data, DATA_KEYS, f"{where} (dataset)")
    return StudySpec(
        title=str(d.get("title", "A study by cifarlab")),
        models=plans,
        seeds=check_seeds(d.get("seeds", [0]), where),
        dataset=dict(data),
        epoch_study=named_step(
            d.get("epoch_study"), names, where, "epoch_study", ("epochs", "seeds")
        ),
        seed_study=named_step(d.get("seed_study"), names, where, "seed_study"),
        failure_analysis=check_failures(d.get("failure_analysis"), names, where),
        tune=check_tune(d.get("tune"), names, where),
    )


def read_spec(path: str | Path) -> StudySpec:
    """A study spec from a YAML file."""
    path = Path(path)
    if not path.is_file():
        raise CifarlabError(f"study spec {path} does not exist")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CifarlabError(f"study spec {path} is not valid YAML: {syntax_error(e)}") from None
    return spec_from_dict(d, str(path))
