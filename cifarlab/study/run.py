"""`cifarlab study`: every step of a study, in order, into one folder and report.

The study is a spec (cifarlab.study.spec): by default the original one (dataset analysis, base
CNN, learning-rate sweeps of both models, epoch study, improved CNN, seed sensitivity), or
the user's own (`--spec study.yaml`). Runs are cached by config under OUT/runs, so running
the study again reuses finished runs and resumes an interrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cifarlab._version import __version__
from cifarlab.config.options import TrainConfig
from cifarlab.data import Dataset
from cifarlab.errors import CifarlabError
from cifarlab.experiments.placement import ExecutorSettings
from cifarlab.experiments.runner import Progress, Runner, RunsFailed, configs_for
from cifarlab.experiments.sweeps import epoch_study, seed_study, sweep
from cifarlab.files import read_json, write_json
from cifarlab.report.format import duration
from cifarlab.runs.folder import make_dir
from cifarlab.runs.tracking import Tracking, experiment_run
from cifarlab.study import analysis
from cifarlab.study.data_audit import audit_step
from cifarlab.study.failures import failure_step
from cifarlab.study.report import build_report
from cifarlab.study.spec import ORIGINAL, QUICK, StudySpec, is_original, read_spec
from cifarlab.tune.loop import TuneSettings
from cifarlab.tune.search import run_tune
from cifarlab.tune.space import SearchSpace

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
    variations += [
        (m.name, {"lr": lr, "seed": seed})
        for m in spec.models
        for lr in m.lrs
        for seed in spec.first_seeds(m.lr_seeds)
    ]
    if spec.epoch_study:
        e = spec.epoch_study
        variations += [
            (e["model"], {"epochs": e["epochs"], "seed": seed})
            for seed in spec.first_seeds(e.get("seeds", 1))
        ]
    if spec.seed_study:
        variations += [(spec.seed_study["model"], {"seed": s}) for s in spec.seeds]
    return [c for name, v in variations for c in configs_for(model_flags(spec, name, run), [v])]


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

    def options(name: str) -> dict[str, Any]:
        return model_flags(spec, name, run)

    def main_run(name: str) -> Callable[[], Any]:
        return lambda: seed_study(options(name), spec.seeds[:1], out, name=name, runner=runner)

    def lr_sweep(m: Any) -> Callable[[], Any]:
        grid = {"lr": m.lrs}
        if m.lr_seeds > 1:
            grid["seed"] = spec.first_seeds(m.lr_seeds)
        return lambda: sweep(options(m.name), grid, out, name=f"lr-{m.name}", runner=runner)

    def epochs() -> Any:
        e = spec.epoch_study
        seeds = spec.first_seeds(e["seeds"]) if e.get("seeds", 1) > 1 else None
        return epoch_study(
            options(e["model"]), e["epochs"], out, name="epochs", runner=runner, seeds=seeds
        )

    def failures() -> Any:
        return failure_step(spec, out, run)

    def data_audit() -> Any:
        return audit_step(spec, out, run)

    def seeds() -> Any:
        name = spec.seed_study["model"]
        return seed_study(options(name), spec.seeds, out, name="seeds", runner=runner)

    def search() -> Any:
        return tune_step(spec, options(spec.tune["model"]), out, runner)

    steps: dict[str, Callable[[], Any]] = {}
    for key in spec.steps():
        if key == "analysis":
            steps[key] = lambda: analysis.write_analysis(data, out / "analysis")
        elif key.startswith("lr_"):
            steps[key] = lr_sweep(spec.plan(key[3:]))
        else:
            steps[key] = {
                "epochs": epochs,
                "seeds": seeds,
                "failures": failures,
                "audit": data_audit,
                "tune": search,
            }.get(key) or main_run(key)
    return steps


def tune_step(spec: StudySpec, flags: dict[str, Any], out: Path, runner: Runner) -> dict:
    """The spec's search (cifarlab.tune.search) into OUT/tune, its trials where the study's runs
    go (worker processes or Ray Tune): the model's options, less those searched, under
    the step's overrides; confirm_seeds compares the best with the model's own options
    (the searched ones included). tune.json's content and the folder."""
    tune = spec.tune
    searched = set(SearchSpace.parse(tune["params"]).names)
    options = {**flags, **tune["overrides"]}
    fixed = {k: v for k, v in options.items() if k not in searched}
    settings = TuneSettings(
        trials=tune["trials"],
        sampler=tune["sampler"],
        pruner=tune["pruner"],
        metric=tune["metric"],
        seed=fixed["seed"],
        jobs=runner.jobs,
    )
    result, folder = run_tune(
        fixed,
        tune["params"],
        settings,
        out / "tune",
        confirm_seeds=tune["confirm_seeds"],
        progress=runner.progress,
        tracking=runner.tracking,
        executor=runner.executor_settings,
        baseline=options,
    )
    return {**result, "folder": str(folder)}


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
        left = duration(bar.eta())
        print(f"[study {i}/{len(steps)}] {titles[key]} | about {left} left", flush=True)
        start = time.perf_counter()
        bar.trained = bar.reused = 0
        try:
            out["results"][key] = step()
        except RunsFailed as e:
            out["failed_runs"].update({str(d): error for d, error in e.failed.items()})
            print(f"  [{bar.step}] {e}", flush=True)
        out["step_seconds"][key] = time.perf_counter() - start
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
    seeds_per_config: int | None = None,
    jobs: int = 1,
    device: str = "auto",
    precision: str = "auto",
    compile: str = "none",
    progress: bool = True,
    executor: ExecutorSettings | dict[str, Any] | None = None,
    tracking: Tracking | None = None,
) -> dict[str, Any]:
    """Run every step of a study into `out` and write its report (see the module).

    spec: the study (default: the original, or its quick form); data_options: dataset
    options (dataset, data_dir, labels, ...) that override the spec's; seeds_per_config:
    seeds per configuration in the lr and epoch steps (default: the spec's). executor:
    where the runs go (ExecutorSettings, or its mapping; default: here, `jobs` at once);
    tracking: TensorBoard and MLflow (the study is one MLflow parent run). Runs that fail
    are listed in study.json (status "incomplete") and raised as RunsFailed once every
    other step has run."""
    if isinstance(spec, str | Path):
        spec = read_spec(spec)
    data_options = dict(data_options or {})
    run = {"device": device, "precision": precision, "compile": compile}
    if data_options.get("data_dir"):
        run["data_dir"] = data_options.pop("data_dir")
    spec = choose_spec(spec, quick, data_options).with_seeds_per_config(seeds_per_config)
    out = Path(out)
    configs = planned_configs(spec, run)  # checked before work
    with Runner.start(
        configs, jobs=jobs, progress=progress, executor=executor, runs_root=out / "runs"
    ) as runner:
        summary = _study_in(out, spec, quick, configs, runner, run, tracking or Tracking())
    return summary


def _mark_stopped(manifest: Path, error: BaseException, step: str) -> None:
    """study.json says the study stopped, in which step and why: never "running" after a
    step fails or the study is interrupted (running it again goes on from its runs)."""
    interrupted = isinstance(error, KeyboardInterrupt)
    state = read_json(manifest) if manifest.exists() else {}
    write_json(
        manifest,
        {
            **state,
            "status": "interrupted" if interrupted else "failed",
            "stopped_in": step,
            "error": "interrupted" if interrupted else f"{error}",
        },
    )


def _study_in(
    out: Path,
    spec: StudySpec,
    quick: bool,
    configs: list[TrainConfig],
    runner: Runner,
    run: dict[str, Any],
    tracking: Tracking,
) -> dict[str, Any]:
    """The study's steps into its folder, with the runner's data and executor."""
    data = runner.data.get(configs[0].dataset_args())
    identity = study_identity(spec, quick, data)
    _check_folder(out, identity)
    make_dir(out)
    manifest = out / "study.json"
    previous = read_json(manifest) if manifest.exists() else {}
    write_json(manifest, {**previous, "identity": identity, "status": "running"})
    bar = Progress(out / "runs", configs, runner.data)
    runner = runner.reporting(on_run=bar.on_run)
    params = {
        "quick": quick,
        "device": run["device"],
        "precision": run["precision"],
        **spec.dataset,
    }
    try:
        with experiment_run(tracking, out, "study", params) as tracked:
            runner = runner.reporting(tracking=tracked)
            study_start = time.perf_counter()
            done = _run_steps(spec, study_steps(spec, data, out, run, runner), bar, previous)
            done["this_invocation_seconds"] = time.perf_counter() - study_start
            summary = study_summary(spec, identity, quick, done)
            write_json(manifest, summary)
            if done["failed_runs"]:  # the report needs every run: run the study again for it
                raise RunsFailed(done["failed_runs"], len(bar.runs))
            md, page = build_report(out, summary)  # inside: the MLflow parent's artifacts
    except (Exception, KeyboardInterrupt) as e:
        if not isinstance(e, RunsFailed):  # (that one wrote its own summary: "incomplete")
            _mark_stopped(manifest, e, bar.step)
        raise
    now, total = duration(done["this_invocation_seconds"]), duration(summary["total_seconds"])
    if bar.total_trained:
        print(f"study done in {now}: {md} and {page}", flush=True)
    else:
        print(
            f"study done in {now}: every run was cached (trained in {total}): {md} and {page}",
            flush=True,
        )
    return summary
