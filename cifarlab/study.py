"""`cifarlab study`: every step of the original study, in order, into one folder and report.

Steps: dataset analysis, base CNN, learning-rate sweeps (both models), epoch study,
improved CNN, seed sensitivity. Runs are cached by config under OUT/runs, so re-running
the study reuses finished runs and resumes an interrupted one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cifarlab import __version__
from cifarlab.config import resolve
from cifarlab.data import load_cifar10
from cifarlab.engine import pick_device
from cifarlab.errors import CifarlabError
from cifarlab.experiments import (
    Runner,
    epoch_study,
    run_dir_for,
    run_status,
    seed_study,
    sweep,
)
from cifarlab.runs import make_dir, read_json, write_json

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


@dataclass
class Plan:
    """What the study trains. QUICK is the same pipeline on a small subset."""

    seeds: list[int] = field(default_factory=lambda: [5, 6, 7, 8, 9])
    base_lrs: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.05])
    improved_lrs: list[float] = field(default_factory=lambda: [0.01, 0.03, 0.05, 0.1])
    epoch_study_epochs: int = 10
    base: dict[str, Any] = field(default_factory=dict)  # overrides of the recipes
    improved: dict[str, Any] = field(default_factory=dict)


FULL = Plan()
QUICK = Plan(
    seeds=[5, 6, 7],
    epoch_study_epochs=3,
    base={"limit": 512, "eval_limit": 256, "epochs": 2},
    improved={"limit": 256, "eval_limit": 256, "epochs": 1},
)

STEPS = [
    "dataset analysis",
    "base CNN",
    "learning-rate sweep, base CNN",
    "learning-rate sweep, improved CNN",
    "epoch study",
    "improved CNN",
    "seed sensitivity",
]


def _flags(plan: Plan, model: str, data_dir: str | None, device: str, precision: str) -> dict:
    overrides = plan.base if model == "base" else plan.improved
    flags = {"model": model, "seed": plan.seeds[0], **overrides}
    if data_dir:
        flags["data_dir"] = data_dir
    return {**flags, "device": device, "precision": precision}


def planned_configs(plan: Plan, data_dir, device, precision) -> list:
    """Every config the study trains (duplicates are trained once: the cache)."""
    base = _flags(plan, "base", data_dir, device, precision)
    improved = _flags(plan, "improved", data_dir, device, precision)
    variations = (
        [(base, {})]
        + [(base, {"lr": lr}) for lr in plan.base_lrs]
        + [(improved, {"lr": lr}) for lr in plan.improved_lrs]
        + [(base, {"epochs": plan.epoch_study_epochs})]
        + [(improved, {})]
        + [(base, {"seed": s}) for s in plan.seeds]
    )
    return [resolve(None, {**f, **v}) for f, v in variations]


class Progress:
    """Says which step and run is going, and estimates the time left from measured speed."""

    # Until a run of the model has finished here: the training speeds measured on a
    # 2-core AMD EPYC (bf16) and on one NVIDIA H200 (bf16), evaluation included.
    DEFAULT_IMAGES_PER_SECOND = {
        "cpu": {"base": 900, "improved": 100},
        "cuda": {"base": 8000, "improved": 17000},
    }

    def __init__(self, runs_root: Path, configs: list, device: str = "cpu") -> None:
        self.t0 = time.perf_counter()
        self.runs_root = runs_root
        self.configs = list({run_dir_for(runs_root, c): c for c in configs}.items())
        self.defaults = self.DEFAULT_IMAGES_PER_SECOND["cuda" if device == "cuda" else "cpu"]
        self.step = ""
        self.trained = 0  # runs of the current step not found finished in the cache
        self.reused = 0  # runs of the current step found finished

    def _seconds_per_image(self, model: str) -> float:
        rates = []
        for d, c in self.configs:
            if c.model == model and run_status(d) == "finished":
                rate = read_json(d / "summary.json").get("mean_images_per_second")
                if rate:
                    rates.append(rate)
        if rates:
            return 1.0 / (sum(rates) / len(rates))
        return 1.0 / self.defaults.get(model, 500)

    def eta(self) -> float:
        left = 0.0
        for d, c in self.configs:
            if run_status(d) != "finished":
                images = min(c.limit or 50000, 50000) * c.epochs
                left += images * self._seconds_per_image(c.model) * 1.1  # + evaluation
        return left

    def on_run(self, index: int, cfg, status: str) -> None:
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


def run_study(
    out: str | Path,
    *,
    data_dir: str | None = None,
    quick: bool = False,
    jobs: int = 1,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    from cifarlab import analysis
    from cifarlab.study_report import build_report

    plan = QUICK if quick else FULL
    out = Path(out)
    configs = planned_configs(plan, data_dir, device, precision)  # validates before work
    data = load_cifar10(data_dir)
    identity = {"kind": "cifarlab-study", "quick": quick, "train_size": len(data.train)}
    _check_folder(out, identity)
    make_dir(out)
    manifest = out / "study.json"
    previous = read_json(manifest) if manifest.exists() else {}
    if not previous:
        write_json(manifest, {"identity": identity, "status": "running"})
    runs_root = out / "runs"
    bar = Progress(runs_root, configs, pick_device(device).type)
    kw = {"runner": Runner(data, jobs, progress, runs_root, bar.on_run)}
    base = _flags(plan, "base", data_dir, device, precision)
    improved = _flags(plan, "improved", data_dir, device, precision)

    steps = [
        ("analysis", lambda: analysis.write_analysis(data, out / "analysis")),
        ("base", lambda: seed_study(base, plan.seeds[:1], out, name="base", **kw)),
        ("lr_base", lambda: sweep(base, {"lr": plan.base_lrs}, out, name="lr-base", **kw)),
        (
            "lr_improved",
            lambda: sweep(improved, {"lr": plan.improved_lrs}, out, name="lr-improved", **kw),
        ),
        (
            "epochs",
            lambda: epoch_study(
                base,
                plan.epoch_study_epochs,
                out,
                name="epochs",
                **{k: v for k, v in kw.items() if k != "jobs"},
            ),
        ),  # fmt: skip
        ("improved", lambda: seed_study(improved, plan.seeds[:1], out, name="improved", **kw)),
        ("seeds", lambda: seed_study(base, plan.seeds, out, name="seeds", **kw)),
    ]
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    counts: dict[str, list[int]] = {}  # step: [runs trained, runs reused from the cache]
    t_study = time.perf_counter()
    for i, ((key, step), title) in enumerate(zip(steps, STEPS, strict=True), start=1):
        bar.step = f"{i}/{len(steps)} {title}"
        print(f"[study {i}/{len(steps)}] {title} | about {_clock(bar.eta())} left", flush=True)
        t0 = time.perf_counter()
        bar.trained = bar.reused = 0
        results[key] = step()
        timings[key] = time.perf_counter() - t0
        counts[key] = [bar.trained, bar.reused]
        if not bar.trained and key in previous.get("step_seconds", {}):
            timings[key] = previous["step_seconds"][key]  # all cached: keep when it ran
            counts[key] = previous.get("step_runs", {}).get(key, counts[key])
    summary = {
        "identity": identity,
        "status": "finished",
        "quick": quick,
        "plan": asdict(plan),
        "published": PUBLISHED,
        "results": results,
        "step_seconds": timings,
        "step_runs": counts,
        "total_seconds": sum(timings.values()),
        "this_invocation_seconds": time.perf_counter() - t_study,
        "cifarlab_version": __version__,
    }
    write_json(out / "study.json", summary)
    md, page = build_report(out, summary)
    print(f"study done in {_clock(summary['total_seconds'])}: {md} and {page}", flush=True)
    return summary
