"""`cifarlab study`: every step of the original study, in order, into one folder and report.

Steps: dataset analysis, base CNN, learning-rate sweeps (both models), epoch study,
improved CNN, seed sensitivity. Runs are cached by config under OUT/runs, so re-running
the study reuses finished runs and resumes an interrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from cifarlab import __version__
from cifarlab.config import TrainConfig
from cifarlab.data import load_cifar10
from cifarlab.engine import Hardware, autocast
from cifarlab.errors import CifarlabError
from cifarlab.experiments import Runner, configs_for, epoch_study, run_dir_for, seed_study, sweep
from cifarlab.files import read_json, write_json
from cifarlab.models import build_model
from cifarlab.runs import RunDir, make_dir

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
# The same pipeline in about two minutes on a 2-core CPU without bf16 (fp32), with numbers
# that show it working: batches of 16 give both models more steps per image. The improved
# CNN's loss jumps to 10-30 within its first 5 steps even at lr 0.01 and takes a few dozen
# steps to settle: it gets 40, a warm-up over the first epoch, and its sweep's lower lrs
# (at 0.1 it has not settled by then). Measured in README ("cifarlab study").
QUICK = Plan(
    seeds=[5, 6, 7],
    improved_lrs=[0.01, 0.03],
    epoch_study_epochs=3,
    base={"limit": 512, "eval_limit": 256, "epochs": 2, "batch_size": 16},
    improved={
        "lr": 0.01,
        "limit": 320,
        "eval_limit": 128,
        "epochs": 2,
        "batch_size": 16,
        "warmup_epochs": 1.0,
    },
)

# The study's steps in order: the key of each in study.json, and its title.
STEPS = {
    "analysis": "dataset analysis",
    "base": "base CNN",
    "lr_base": "learning-rate sweep, base CNN",
    "lr_improved": "learning-rate sweep, improved CNN",
    "epochs": "epoch study",
    "improved": "improved CNN",
    "seeds": "seed sensitivity",
}


def _flags(plan: Plan, model: str, data_dir: str | None, device: str, precision: str) -> dict:
    overrides = plan.base if model == "base" else plan.improved
    flags = {"model": model, "seed": plan.seeds[0], **overrides}
    if data_dir:
        flags["data_dir"] = data_dir
    return {**flags, "device": device, "precision": precision}


def planned_configs(plan: Plan, data_dir, device, precision) -> list[TrainConfig]:
    """Every config the study trains (duplicates are trained once: the cache), checked."""
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
    return [c for f, v in variations for c in configs_for(f, [v])]


PROBE_STEPS = 2  # timed training steps of the speed probe (after one untimed)


def probe_images_per_second(cfg: TrainConfig) -> float:
    """Training images per second of cfg's model on this machine: a few optimizer steps on
    random images at the run's precision (batch capped at 32 on a CPU). The random state
    of the process is left as it was."""
    hw = Hardware.choose(cfg)
    batch = min(cfg.batch_size, 32 if hw.device.type == "cpu" else 256)
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.model).to(hw.device, memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        x = torch.randn(batch, 3, 32, 32, device=hw.device)
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,), device=hw.device)
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

    def __init__(self, runs_root: Path, configs: list[TrainConfig]) -> None:
        self.t0 = time.perf_counter()
        self.runs = list({run_dir_for(runs_root, c): c for c in configs}.items())
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
            self.probed[cfg.model] = probe_images_per_second(cfg)
        return 1.0 / self.probed[cfg.model]

    def eta(self) -> float:
        left = 0.0
        for d, c in self.runs:
            if RunDir(d).status() != "finished":
                images = min(c.limit or 50000, 50000) * c.epochs
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
    plan: Plan, data, out: Path, flags: dict[str, dict], runner: Runner
) -> dict[str, Callable[[], Any]]:
    """Each step of STEPS as a function that runs it (runs shared between steps are
    trained once: the runner's cache)."""
    from cifarlab import analysis

    base, improved = flags["base"], flags["improved"]
    kw = {"runner": runner}
    return {
        "analysis": lambda: analysis.write_analysis(data, out / "analysis"),
        "base": lambda: seed_study(base, plan.seeds[:1], out, name="base", **kw),
        "lr_base": lambda: sweep(base, {"lr": plan.base_lrs}, out, name="lr-base", **kw),
        "lr_improved": lambda: sweep(
            improved, {"lr": plan.improved_lrs}, out, name="lr-improved", **kw
        ),
        "epochs": lambda: epoch_study(base, plan.epoch_study_epochs, out, name="epochs", **kw),
        "improved": lambda: seed_study(improved, plan.seeds[:1], out, name="improved", **kw),
        "seeds": lambda: seed_study(base, plan.seeds, out, name="seeds", **kw),
    }


def _run_steps(steps: dict[str, Callable[[], Any]], bar: Progress, previous: dict) -> dict:
    """Run the steps in order: each one's result, wall time and [trained, reused] runs.
    A step whose runs were all cached keeps the time and counts of when it ran."""
    out: dict[str, dict] = {"results": {}, "step_seconds": {}, "step_runs": {}}
    for i, (key, step) in enumerate(steps.items(), start=1):
        bar.step = f"{i}/{len(steps)} {STEPS[key]}"
        print(f"[study {i}/{len(steps)}] {STEPS[key]} | about {_clock(bar.eta())} left", flush=True)
        t0 = time.perf_counter()
        bar.trained = bar.reused = 0
        out["results"][key] = step()
        out["step_seconds"][key] = time.perf_counter() - t0
        out["step_runs"][key] = [bar.trained, bar.reused]
        if not bar.trained and key in previous.get("step_seconds", {}):
            out["step_seconds"][key] = previous["step_seconds"][key]
            out["step_runs"][key] = previous.get("step_runs", {}).get(key, [0, bar.reused])
    return out


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
    """Run every step of the study into `out` and write its report (see the module)."""
    from cifarlab.study_report import build_report

    plan = QUICK if quick else FULL
    out = Path(out)
    configs = planned_configs(plan, data_dir, device, precision)  # checked before work
    data = load_cifar10(data_dir)
    identity = {"kind": "cifarlab-study", "quick": quick, "train_size": len(data.train)}
    _check_folder(out, identity)
    make_dir(out)
    manifest = out / "study.json"
    previous = read_json(manifest) if manifest.exists() else {}
    if not previous:
        write_json(manifest, {"identity": identity, "status": "running"})
    runs_root = out / "runs"
    bar = Progress(runs_root, configs)
    runner = Runner(data, jobs, progress, runs_root, bar.on_run)
    flags = {m: _flags(plan, m, data_dir, device, precision) for m in ("base", "improved")}
    t_study = time.perf_counter()
    done = _run_steps(study_steps(plan, data, out, flags, runner), bar, previous)
    summary = {
        "identity": identity,
        "status": "finished",
        "quick": quick,
        "plan": asdict(plan),
        "published": PUBLISHED,
        **done,
        "total_seconds": sum(done["step_seconds"].values()),
        "this_invocation_seconds": time.perf_counter() - t_study,
        "cifarlab_version": __version__,
    }
    write_json(manifest, summary)
    md, page = build_report(out, summary)
    print(f"study done in {_clock(summary['total_seconds'])}: {md} and {page}", flush=True)
    return summary
