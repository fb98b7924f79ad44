"""`cifarlab study`: every step of a study, in order, into one folder and report.

The study is a spec (cifarlab.spec): by default the original one (dataset analysis, base
CNN, learning-rate sweeps of both models, epoch study, improved CNN, seed sensitivity), or
the user's own (`--spec study.yaml`). Runs are cached by config under OUT/runs, so running
the study again reuses finished runs and resumes an interrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cifarlab import __version__
from cifarlab.config import TrainConfig
from cifarlab.data import Dataset, Datasets
from cifarlab.engine import Hardware, autocast
from cifarlab.errors import CifarlabError
from cifarlab.experiments import (
    Runner,
    RunsFailed,
    configs_for,
    epoch_study,
    load_data,
    run_dir_for,
    seed_study,
    sweep,
)
from cifarlab.files import read_json, write_json
from cifarlab.models import build_model
from cifarlab.runs import RunDir, make_dir
from cifarlab.spec import ORIGINAL, QUICK, StudySpec, is_original
from cifarlab.tracking import Tracking, experiment_run

if TYPE_CHECKING:
    from cifarlab.executors import Executor

# What the original report published (percentages, as printed there).
PUBLISHED = {
    "mean": [0.4914, 0.4822, 0.4465],
    "std": [0.2470, 0.2435, 0.2616],
    "base_epochs": [(54.81, 66.86), (68.57, 66.96), (72.52, 72.44), (75.00, 72.84)],
    "base_test": 72.48,
    "improved_test": 82.12,
    "seeds": {"mean": 72.15, "std": 0.48, "range": 1.44, "min": 71.44, "max": 72.88},
    "overfit_epoch": 5,
}


def model_flags(spec: StudySpec, name: str, run: dict[str, Any]) -> dict[str, Any]:
    """The train options of a model's runs: its recipe's overrides, the study's dataset and
    first seed, and where and how to run (data_dir, device, precision)."""
    plan = spec.plan(name)
    return {"model": plan.model, "seed": spec.seeds[0], **spec.dataset, **plan.overrides, **run}


def planned_configs(spec: StudySpec, run: dict[str, Any]) -> list[TrainConfig]:
    """Every config the study trains (duplicates are trained once: the cache), checked."""
    variations = [(m.name, {}) for m in spec.models]
    variations += [(m.name, {"lr": lr}) for m in spec.models for lr in m.lrs]
    if spec.epoch_study:
        variations.append((spec.epoch_study["model"], {"epochs": spec.epoch_study["epochs"]}))
    if spec.seed_study:
        variations += [(spec.seed_study["model"], {"seed": s}) for s in spec.seeds]
    return [c for name, v in variations for c in configs_for(model_flags(spec, name, run), [v])]


PROBE_STEPS = 2  # timed training steps of the speed probe (after one untimed)


def probe_images_per_second(cfg: TrainConfig, data: Dataset) -> float:
    """Training images per second of cfg's model on this machine: a few optimizer steps on
    random images shaped like `data` at the run's precision (batch capped at 32 on a CPU).
    The random state of the process is left as it was."""
    hw = Hardware.choose(cfg)
    batch = min(cfg.batch_size, 32 if hw.device.type == "cpu" else 256)
    args = data.model_args()
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.model, **args).to(hw.device, memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        x = torch.randn(batch, *data.image_shape, device=hw.device)
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, args["num_classes"], (batch,), device=hw.device)
        for step in range(PROBE_STEPS + 1):
            if step == 1:
                hw.synchronize()
                t0 = time.perf_counter()
            with autocast(hw.device, hw.precision):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        hw.synchronize()
    return PROBE_STEPS * batch / (time.perf_counter() - t0)


class Progress:
    """Says which step and run is going, and estimates the time left: from the speed of the
    runs finished so far, else from a short speed probe of each model on this machine."""

    def __init__(self, runs_root: Path, configs: list[TrainConfig], data: Datasets) -> None:
        self.t0 = time.perf_counter()
        self.runs = list({run_dir_for(runs_root, c): c for c in configs}.items())
        self.data = data
        self.probed: dict[str, float] = {}
        self.step = ""
        self.trained = 0  # runs of the current step not found finished in the cache
        self.reused = 0  # runs of the current step found finished

    def _seconds_per_image(self, cfg: TrainConfig) -> float:
        rates = []
        for d, c in self.runs:
            summary = RunDir(d).summary() if c.model == cfg.model else None
            if summary and summary.get("status") == "finished":
                rates.append(summary.get("mean_images_per_second") or 0)
        if rates and all(rates):
            return 1.0 / (sum(rates) / len(rates))
        if cfg.model not in self.probed:
            data = self.data.get(cfg.dataset_args())
            self.probed[cfg.model] = probe_images_per_second(cfg, data)
        return 1.0 / self.probed[cfg.model]

    def eta(self) -> float:
        left = 0.0
        for d, c in self.runs:
            if RunDir(d).status() != "finished":
                n = len(self.data.get(c.dataset_args()).train)
                images = min(c.limit or n, n) * c.epochs
                left += images * self._seconds_per_image(c) * 1.1  # + evaluation
        return left

    def on_run(self, index: int, cfg: TrainConfig, status: str) -> None:
        what = {"finished": "cached", "partial": "resuming", "new": "training"}.get(status, status)
        self.trained += status != "finished"
        self.reused += status == "finished"
        elapsed = time.perf_counter() - self.t0
        print(
            f"  [{self.step}] run {index + 1}: {cfg.model} lr={cfg.lr} seed={cfg.seed} "
            f"epochs={cfg.epochs} ({what}) | elapsed {_clock(elapsed)}, "
            f"about {_clock(self.eta())} left",
            flush=True,
        )


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def _check_folder(out: Path, identity: dict) -> None:
    """The folder is new, or holds this same study: never another study's runs."""
    manifest = out / "study.json"
    if manifest.exists():
        old = read_json(manifest).get("identity")
        if old != identity:
            raise CifarlabError(
                f"{out} holds another study ({'quick' if old and old.get('quick') else 'full'}"
                f", data {old.get('train_size') if old else '?'} images); "
                "choose another --out"
            )
    elif out.exists() and any(out.iterdir()):
        raise CifarlabError(f"{out} is not empty and holds no study; choose another --out")


def study_steps(
    spec: StudySpec, data: Dataset, out: Path, run: dict[str, Any], runner: Runner
) -> dict[str, Callable[[], Any]]:
    """Each step of spec.steps() as a function that runs it (runs shared between steps
    are trained once: the runner's cache)."""
    from cifarlab import analysis

    def flags(name: str) -> dict[str, Any]:
        return model_flags(spec, name, run)

    def main_run(name: str) -> Callable[[], Any]:
        return lambda: seed_study(flags(name), spec.seeds[:1], out, name=name, runner=runner)

    def lr_sweep(m: Any) -> Callable[[], Any]:
        return lambda: sweep(flags(m.name), {"lr": m.lrs}, out, name=f"lr-{m.name}", runner=runner)

    def epochs() -> Any:
        e = spec.epoch_study
        return epoch_study(flags(e["model"]), e["epochs"], out, name="epochs", runner=runner)

    def seeds() -> Any:
        name = spec.seed_study["model"]
        return seed_study(flags(name), spec.seeds, out, name="seeds", runner=runner)

    steps: dict[str, Callable[[], Any]] = {}
    for key in spec.steps():
        if key == "analysis":
            steps[key] = lambda: analysis.write_analysis(data, out / "analysis")
        elif key.startswith("lr_"):
            steps[key] = lr_sweep(spec.plan(key[3:]))
        else:
            steps[key] = {"epochs": epochs, "seeds": seeds}.get(key) or main_run(key)
    return steps


def _run_steps(
    spec: StudySpec, steps: dict[str, Callable[[], Any]], bar: Progress, previous: dict
) -> dict:
    """Run the steps in order: each one's result, wall time and [trained, reused] runs.
    A step whose runs were all cached keeps the time and counts of when it ran. A step
    with failed runs is reported (failed_runs: run folder -> error) and the next goes on."""
    out: dict[str, dict] = {"results": {}, "step_seconds": {}, "step_runs": {}, "failed_runs": {}}
    titles = spec.steps()
    for i, (key, step) in enumerate(steps.items(), start=1):
        bar.step = f"{i}/{len(steps)} {titles[key]}"
        print(
            f"[study {i}/{len(steps)}] {titles[key]} | about {_clock(bar.eta())} left", flush=True
        )
        t0 = time.perf_counter()
        bar.trained = bar.reused = 0
        try:
            out["results"][key] = step()
        except RunsFailed as e:
            out["failed_runs"].update({str(d): error for d, error in e.failed.items()})
            print(f"  [{bar.step}] {e}", flush=True)
        out["step_seconds"][key] = time.perf_counter() - t0
        out["step_runs"][key] = [bar.trained, bar.reused]
        if not bar.trained and key in previous.get("step_seconds", {}):
            out["step_seconds"][key] = previous["step_seconds"][key]
            out["step_runs"][key] = previous.get("step_runs", {}).get(key, [0, bar.reused])
    return out


def study_identity(spec: StudySpec, quick: bool, data: Dataset) -> dict[str, Any]:
    """What a study folder holds: another study's folder is refused."""
    identity = {"kind": "cifarlab-study", "quick": quick, "train_size": len(data.train)}
    if not is_original(spec):
        identity["spec"] = spec.digest()
    return identity


def choose_spec(spec: StudySpec | None, quick: bool, data_options: dict[str, Any]) -> StudySpec:
    """The spec to run: the user's, or the original (quick or full), on the data asked."""
    if spec is not None and quick:
        raise CifarlabError(
            "--quick is the original study's small form; put small limits in your spec "
            "instead (see `cifarlab study --print-spec --quick`)"
        )
    return (spec or (QUICK if quick else ORIGINAL)).with_dataset(data_options)


def study_summary(spec: StudySpec, identity: dict, quick: bool, done: dict) -> dict[str, Any]:
    """study.json: what was run, each step's results, times and run counts, failed runs."""
    published = is_original(spec) and spec.dataset["dataset"] == "cifar10"
    return {
        "identity": identity,
        "status": "incomplete" if done["failed_runs"] else "finished",
        "quick": quick,
        "spec": spec.to_dict(),
        "original": is_original(spec),
        "published": PUBLISHED if published else None,
        **done,
        "total_seconds": sum(done["step_seconds"].values()),
        "cifarlab_version": __version__,
    }


def run_study(
    out: str | Path,
    *,
    spec: StudySpec | str | Path | None = None,
    data_options: dict[str, Any] | None = None,
    quick: bool = False,
    jobs: int = 1,
    device: str = "auto",
    precision: str = "auto",
    compile: str = "none",
    progress: bool = True,
    executor: Executor | None = None,
    tracking: Tracking | None = None,
) -> dict[str, Any]:
    """Run every step of a study into `out` and write its report (see the module).

    spec: the study (default: the original, or its quick form); data_options: dataset
    options (dataset, data_dir, labels, ...) that override the spec's. executor: where the
    runs go (default: here); tracking: TensorBoard and MLflow (the study is one MLflow
    parent run). Runs that fail are listed in study.json (status "incomplete") and raised
    as RunsFailed once every other step has run."""
    from cifarlab.study_report import build_report

    if isinstance(spec, str | Path):
        from cifarlab.spec import read_spec

        spec = read_spec(spec)
    data_options = dict(data_options or {})
    run = {"device": device, "precision": precision, "compile": compile}
    if data_options.get("data_dir"):
        run["data_dir"] = data_options.pop("data_dir")
    spec = choose_spec(spec, quick, data_options)
    out = Path(out)
    configs = planned_configs(spec, run)  # checked before work
    datasets = load_data(configs)
    data = datasets.get(configs[0].dataset_args())
    identity = study_identity(spec, quick, data)
    _check_folder(out, identity)
    make_dir(out)
    manifest = out / "study.json"
    previous = read_json(manifest) if manifest.exists() else {}
    if not previous:
        write_json(manifest, {"identity": identity, "status": "running"})
    bar = Progress(out / "runs", configs, datasets)
    runner = Runner(datasets, jobs, progress, out / "runs", bar.on_run, executor)
    params = {"quick": quick, "device": device, "precision": precision, **spec.dataset}
    with experiment_run(tracking or Tracking(), out, "study", params) as runner.tracking:
        t_study = time.perf_counter()
        done = _run_steps(spec, study_steps(spec, data, out, run, runner), bar, previous)
        done["this_invocation_seconds"] = time.perf_counter() - t_study
        summary = study_summary(spec, identity, quick, done)
        write_json(manifest, summary)
        if done["failed_runs"]:  # the report needs every run: run the study again for it
            raise RunsFailed(done["failed_runs"], len(bar.runs))
        md, page = build_report(out, summary)  # inside: the MLflow parent's artifacts
    print(f"study done in {_clock(summary['total_seconds'])}: {md} and {page}", flush=True)
    return summary
