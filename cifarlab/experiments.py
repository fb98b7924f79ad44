"""Many runs: sweeps over options, seed studies, the epoch study, with a run cache.

Each run is keyed by its resolved config: its folder is RUNS/<model>-<hash>, and asking
for the same config again reuses a finished run or resumes an interrupted one. Each run
folder is locked while it trains, so two processes over one cache wait for each other's
runs and reuse them. Runs are independent: an Executor (cifarlab.executors) carries them
out, here (`jobs` at once in worker processes) or on a Ray cluster; the results are the
same either way.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarlab.config import TrainConfig, from_dict, identity, resolve, same_run
from cifarlab.data import Datasets
from cifarlab.errors import CifarlabError
from cifarlab.executors import Executor, LocalExecutor, RunTask
from cifarlab.files import write_json
from cifarlab.runs import RunDir
from cifarlab.tracking import Tracking, sync_finished

__all__ = ["RunsFailed", "Runner", "run_many", "seed_study", "sweep"]

# ------------------------------------------------------------------------ parsing input


def parse_seeds(text: str) -> list[int]:
    """'5-9' -> [5, 6, 7, 8, 9]; '1,3,8' -> [1, 3, 8]; mixtures like '1,5-7' too."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if m := re.fullmatch(r"(\d+)-(\d+)", part):
            lo, hi = int(m[1]), int(m[2])
            if hi < lo:
                raise CifarlabError(f"--seeds {part}: the range goes down; write {hi}-{lo}")
            seeds.extend(range(lo, hi + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise CifarlabError(
                f"--seeds {text!r}: write a range like 5-9 or a list like 1,2,3 (seeds >= 0)"
            )
    if len(set(seeds)) != len(seeds):
        raise CifarlabError(f"--seeds {text!r} lists a seed twice")
    return seeds


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """{'lr': [1, 2], 'seed': [0, 1]} -> the 4 combinations, in order."""
    if not grid:
        raise CifarlabError("nothing to sweep: give at least one option with several values")
    for name, values in grid.items():
        if not values:
            raise CifarlabError(f"--{name.replace('_', '-')} has an empty list of values")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


# ----------------------------------------------------------------------------- the cache


def config_key(cfg: TrainConfig) -> str:
    return hashlib.sha256(json.dumps(identity(cfg), sort_keys=True).encode()).hexdigest()[:12]


def run_dir_for(runs_root: Path, cfg: TrainConfig) -> Path:
    return Path(runs_root) / f"{cfg.model}-{config_key(cfg)}"


class RunsFailed(CifarlabError):
    """Runs that failed (run folder -> error) while the others finished."""

    def __init__(self, failed: dict[Path, str], total: int) -> None:
        self.failed = {Path(d): e for d, e in failed.items()}
        each = "; ".join(f"{d.name}: {e}" for d, e in self.failed.items())
        super().__init__(
            f"{len(failed)} of {total} runs failed ({each}); the others finished and are "
            "cached: run the command again to retry a run whose worker died"
        )


def _cache_status(run_dir: Path, cfg: TrainConfig) -> str:
    """A run folder's status ('new', 'partial', 'finished', 'failed'), checked to hold cfg."""
    run = RunDir(run_dir)
    status = run.status()
    if status != "new" and not same_run(from_dict(run.config()), cfg):
        raise CifarlabError(f"{run_dir} holds a run of another config; move it away")
    return status


def run_many(
    configs: list[TrainConfig],
    runs_root: Path,
    *,
    data: Datasets | None = None,
    jobs: int = 1,
    progress: bool = True,
    on_run: Callable[[int, TrainConfig, str], None] | None = None,
    executor: Executor | None = None,
    tracking: Tracking | None = None,
    names: list[str | None] | None = None,
    failed: dict[Path, str] | None = None,
) -> list[dict[str, Any]]:
    """Train every config not already finished under runs_root; return each run, in order.

    data: the runs' datasets, each loaded once. `on_run(index, cfg, status)` is called
    before each run with its cache status. The executor (default: local, `jobs` at once
    in worker processes) carries them out; names: each run's name in TensorBoard and MLflow (what
    differs, e.g. 'lr=0.05'). A run that fails does not stop the others: RunsFailed names
    the failed runs after all have been tried. failed: runs that failed earlier in this
    command (not tried again; updated).
    """
    data = data if data is not None else Datasets()
    dirs = [run_dir_for(runs_root, cfg) for cfg in configs]
    names = names or [None] * len(configs)
    tracking = tracking or Tracking()
    failed = {} if failed is None else failed
    todo: dict[Path, RunTask] = {}
    errors: dict[Path, str] = {}
    for i, (cfg, d) in enumerate(zip(configs, dirs, strict=True)):
        status = _cache_status(d, cfg)
        if on_run:
            on_run(i, cfg, status)
        if d in failed:
            errors[d] = failed[d]
        elif status == "failed":
            error = RunDir(d).summary().get("error")
            errors[d] = f"failed earlier ({error}); delete that folder to try it again"
        elif status != "finished" and d not in todo:
            todo[d] = RunTask(cfg, d, tracking.replace(run_name=names[i]))
    for outcome in (executor or LocalExecutor(jobs, data, progress)).run(list(todo.values())):
        if outcome.error is not None:
            errors[outcome.run_dir] = outcome.error
    ended = {d: n for d, n in zip(dirs, names, strict=True)
             if RunDir(d).status() in ("finished", "failed")}  # fmt: skip
    sync_finished(tracking, [(d, n) for d, n in ended.items() if d not in failed])
    if errors:
        failed.update(errors)
        raise RunsFailed(errors, len(set(dirs)))
    return [RunDir(d).load() for d in dirs]


@dataclass
class Runner:
    """How a study's runs are carried out: their datasets (each loaded once), where they
    are cached (default OUT/runs), how many go at once, progress bars, a callback before
    each run, the executor (default: local) and the tracking (TensorBoard, MLflow) of each
    run."""

    data: Datasets | None = None
    jobs: int = 1
    progress: bool = True
    runs_root: Path | None = None
    on_run: Callable[[int, TrainConfig, str], None] | None = None
    executor: Executor | None = None
    tracking: Tracking = field(default_factory=Tracking)
    failed: dict[Path, str] = field(default_factory=dict)  # runs failed in this command

    def run(
        self, configs: list[TrainConfig], out: Path, names: list[str | None] | None = None
    ) -> list[dict[str, Any]]:
        root = self.runs_root or Path(out) / "runs"
        return run_many(configs, root, data=self.data, jobs=self.jobs, progress=self.progress,
                        on_run=self.on_run, executor=self.executor, tracking=self.tracking,
                        names=names, failed=self.failed)  # fmt: skip


def run_names(variations: list[dict[str, Any]]) -> list[str | None]:
    """Each run's name by what differs: {'lr': 0.05, 'seed': 7} -> 'lr=0.05,seed=7'."""
    return [",".join(f"{k}={v}" for k, v in v.items()) or None for v in variations]


# --------------------------------------------------------------------------- statistics

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]  # fmt: skip


def t95(df: int) -> float:
    return _T95[df - 1] if df <= len(_T95) else 1.960 + 2.4 / df  # close beyond 30


def describe(values: Iterable[float]) -> dict[str, float | int | None]:
    """Mean, sample std, min, max, range and the 95% confidence interval of the mean."""
    xs = list(values)
    n = len(xs)
    mean = statistics.fmean(xs)
    std = statistics.stdev(xs) if n > 1 else None
    half = t95(n - 1) * std / math.sqrt(n) if std is not None else None
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "min": min(xs),
        "max": max(xs),
        "range": max(xs) - min(xs),
        "ci95_low": mean - half if half is not None else None,
        "ci95_high": mean + half if half is not None else None,
    }


def loss_stability(metrics: list[dict]) -> dict[str, float]:
    """How unsteady the validation loss is: the number of epochs it rose, and the largest rise."""
    losses = [r["val_loss"] for r in metrics]
    rises = [b - a for a, b in itertools.pairwise(losses) if b > a]
    return {"val_loss_rises": len(rises), "largest_val_loss_rise": max(rises, default=0.0)}


# ------------------------------------------------------------------------------ studies


def sweep_table(runs: list[dict], names: list[str]) -> list[dict[str, Any]]:
    rows = []
    for run in runs:
        m, s = run["metrics"], run["summary"]
        rows.append(
            {
                **{n: run["config"][n] for n in names},
                "final_val_acc": m[-1]["val_acc"],
                "best_val_acc": max(r["val_acc"] for r in m),
                "best_val_epoch": max(m, key=lambda r: r["val_acc"])["epoch"],
                "test_acc": s["test_acc"],
                "test_loss": s["test_loss"],
                **loss_stability(m),
                "run_dir": run["run_dir"],
            }
        )
    return rows


def configs_for(flags: dict[str, Any], variations: list[dict[str, Any]]) -> list[TrainConfig]:
    """One resolved config per variation (the model's recipe < flags < the variation), each
    checked, and its device too (--device cuda without CUDA fails here, before any work)."""
    from cifarlab.engine import pick_device

    configs = [resolve(None, {**flags, **v}) for v in variations]
    for device in {c.device for c in configs}:
        pick_device(device)
    return configs


def load_data(configs: list[TrainConfig]) -> Datasets:
    """Load the datasets of these runs (each once), and check that each model fits its
    data (one dummy batch), before any run folder is made."""
    from cifarlab.models import build_model, check_outputs

    data = Datasets()
    checked = set()
    for cfg in configs:
        d = data.get(cfg.dataset_args())
        key = (cfg.model, repr(cfg.dataset_args()))
        if key not in checked:
            checked.add(key)
            check_outputs(build_model(cfg.model, **d.model_args()), cfg.model,
                          len(d.classes), d.image_shape)  # fmt: skip
    return data


def sweep(
    flags: dict[str, Any],
    grid: dict[str, list[Any]],
    out: Path,
    *,
    name: str = "sweep",
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Train every combination of `grid` on top of `flags`; write NAME.json and NAME.png."""
    from cifarlab import plots

    combos = expand_grid(grid)
    configs = configs_for(flags, combos)
    runs = (runner or Runner()).run(configs, out, run_names(combos))
    names = list(grid)
    result = {"fixed": flags, "options": names, "rows": sweep_table(runs, names)}
    labels = [", ".join(f"{n}={c[n]}" for n in names) for c in combos]
    model = configs[0].model if len({c.model for c in configs}) == 1 else "model"
    plots.sweep_curves(
        [r["metrics"] for r in runs], labels, Path(out) / f"{name}.png",
        title=f"{model} CNN: " + ", ".join(names),
    )  # fmt: skip
    write_json(Path(out) / f"{name}.json", result)
    return result


def seed_study(
    flags: dict[str, Any],
    seeds: list[int],
    out: Path,
    *,
    name: str = "seeds",
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Train one configuration under each seed; statistics of test accuracy and loss."""
    from cifarlab import plots

    variations = [{"seed": s} for s in seeds]
    configs = configs_for(flags, variations)
    runs = (runner or Runner()).run(configs, out, run_names(variations))
    rows = [
        {
            "seed": s,
            "test_acc": r["summary"]["test_acc"],
            "test_loss": r["summary"]["test_loss"],
            "run_dir": r["run_dir"],
        }
        for s, r in zip(seeds, runs, strict=True)
    ]
    result = {
        "fixed": flags,
        "rows": rows,
        "test_acc": describe(r["test_acc"] for r in rows),
        "test_loss": describe(r["test_loss"] for r in rows),
    }
    plots.seed_results(rows, result["test_acc"], Path(out) / f"{name}.png")
    write_json(Path(out) / f"{name}.json", result)
    return result


def find_overfitting(metrics: list[dict], gap_threshold: float = 0.02) -> dict[str, Any]:
    """Where the validation loss stops improving, and where train and validation part.

    best_epoch: the epoch of the lowest validation loss (training longer does not help
    it). gap_epoch: the first epoch from which the train-minus-validation accuracy gap
    exceeds gap_threshold and keeps growing.
    """
    val = [r["val_loss"] for r in metrics]
    best = min(range(len(val)), key=val.__getitem__)
    gaps = [r["train_acc"] - r["val_acc"] for r in metrics]
    gap_epoch = None
    for i, g in enumerate(gaps):
        if g > gap_threshold and all(b >= a - 1e-9 for a, b in itertools.pairwise(gaps[i:])):
            gap_epoch = metrics[i]["epoch"]
            break
    rising = [metrics[i]["epoch"] for i in range(best + 1, len(val)) if val[i] > val[best]]
    return {
        "best_epoch": metrics[best]["epoch"],
        "best_val_loss": val[best],
        "val_loss_rises_after": rising,
        "gap_epoch": gap_epoch,
        "gaps": gaps,
    }


def epoch_study(
    flags: dict[str, Any],
    epochs: int,
    out: Path,
    *,
    name: str = "epochs",
    runner: Runner | None = None,
) -> dict[str, Any]:
    """One longer run; the epoch where validation loss bottoms out and the gap opens."""
    from cifarlab import plots

    configs = configs_for(flags, [{"epochs": epochs}])
    (run,) = (runner or Runner()).run(configs, out, [f"epochs={epochs}"])
    found = find_overfitting(run["metrics"])
    result = {"fixed": flags, "epochs": epochs, **found, "run_dir": run["run_dir"]}
    plots.epoch_study(run["metrics"], found, Path(out) / f"{name}.png")
    write_json(Path(out) / f"{name}.json", result)
    return result
