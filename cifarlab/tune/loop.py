"""The machinery of a local search (cifarlab.tune.search): its settings, the Optuna study in the
search's journal file, recovering trials a killed process left running, the loop that asks
for trials under a lock (one process or --jobs N worker processes), and the progress lines.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from cifarlab.data import Datasets
from cifarlab.errors import CifarlabError
from cifarlab.experiments.executors import worker_plan
from cifarlab.report.format import count, metric_value
from cifarlab.runs.tracking import Tracking
from cifarlab.tune.algorithms import PRUNERS, SAMPLERS
from cifarlab.tune.report import trial_value
from cifarlab.tune.space import METRICS, SearchSpace
from cifarlab.tune.trial import TrialPlan, run_trial

STUDY = "cifarlab-tune"
JOURNAL = "optuna.journal"
ENDED = (TrialState.COMPLETE, TrialState.PRUNED)
MAX_FAILURES = 5  # trials failing in a row (a NaN loss each, say) stop the search


@dataclass(frozen=True)
class TuneSettings:
    """How to search: trials to finish, sampler, pruner, metric, seed, parallel trials."""

    trials: int = 20
    sampler: str = "tpe"
    pruner: str = "median"
    metric: str = "val_acc"
    seed: int = 0
    jobs: int = 1

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise CifarlabError(f"--trials must be at least 1, not {self.trials}")
        SAMPLERS.find(self.sampler)
        PRUNERS.find(self.pruner)
        if self.metric not in METRICS:
            raise CifarlabError(
                f"--metric must be one of {', '.join(METRICS)}, not {self.metric!r}"
            )

    def defining(self) -> dict[str, Any]:
        """The settings that make the search what it is (not --trials or --jobs)."""
        return {
            "sampler": self.sampler,
            "pruner": self.pruner,
            "metric": self.metric,
            "seed": self.seed,
        }


# ------------------------------------------------------------------------- the study


def make_sampler(
    settings: TuneSettings,
    space: SearchSpace,
    worker: int,
    parallel: bool | None = None,
    asked: int = 0,
) -> optuna.Sampler:
    """Worker k samples with seed + k: parallel workers do not propose the same values;
    a search continued after `asked` trials with seed + 1000 * asked, so that it does not
    draw its first values again. parallel (default: --jobs above 1): trials run at once,
    so TPE lies constantly about the running ones (it would propose the same values)."""
    seed = settings.seed + worker + 1000 * asked
    parallel = settings.jobs > 1 if parallel is None else parallel
    return SAMPLERS.find(settings.sampler).make(space, seed, parallel)


def make_pruner(settings: TuneSettings, epochs: int) -> optuna.pruners.BasePruner:
    """The --pruner's Optuna pruner, each epoch a step (see tune.algorithms)."""
    return PRUNERS.find(settings.pruner).optuna(epochs)


def open_study(
    out: Path, settings: TuneSettings, space: SearchSpace, epochs: int, worker: int = 0
) -> optuna.Study:
    """The search's Optuna study in its journal file (created on first use)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(out / JOURNAL)))
    study = optuna.create_study(
        storage=storage,
        study_name=STUDY,
        direction=METRICS[settings.metric],
        pruner=make_pruner(settings, epochs),
        load_if_exists=True,
    )
    study.sampler = make_sampler(settings, space, worker, asked=asked(study))
    return study


def asked(study: optuna.Study) -> int:
    """Trials asked so far (finished, failed, running), not those only queued."""
    return sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def ended(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=ENDED)


def recover(study: optuna.Study) -> list[int]:
    """Trials a killed process left running: marked failed, their values queued again."""
    left = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in left:
        study._storage.set_trial_user_attr(t._trial_id, "error", "its process was killed")
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return [t.number for t in left]


@contextlib.contextmanager
def asking(out: Path) -> Iterator[None]:
    """One process at a time counts the trials and asks for the next (released on death)."""
    with open(out / ".ask.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def next_trial(study: optuna.Study, out: Path, space: SearchSpace, trials: int) -> Any:
    """The next trial to run, or None once finished + running trials make `trials`."""
    with asking(out):
        busy = study.get_trials(deepcopy=False, states=(*ENDED, TrialState.RUNNING))
        if len(busy) >= trials:
            return None
        return study.ask(space.distributions())


def work(
    study: optuna.Study, plan: TrialPlan, space: SearchSpace, trials: int, on_trial: Any = None
) -> None:
    """Run trials until the search has its trials (on_trial(study) after each)."""
    failures = 0
    while (trial := next_trial(study, plan.out, space, trials)) is not None:
        run_trial(study, trial, plan)
        state = study._storage.get_trial(trial._trial_id)
        failures = failures + 1 if state.state == TrialState.FAIL else 0
        if on_trial:
            on_trial(study)
        if failures >= MAX_FAILURES:
            raise CifarlabError(
                f"{failures} trials in a row failed (the last: {state.user_attrs.get('error')}); "
                "narrow the search space (a lower --param lr range, say) and run it again"
            )


# ------------------------------------------------------------------ worker processes


def _worker(
    out: str,
    settings: dict,
    params: list[str],
    flags: dict,
    epochs: int,
    worker: int,
    threads: int,
    tracking: Tracking,
) -> str | None:
    """A worker process of --jobs N: its share of the CPU threads, its own data."""
    torch.set_num_threads(threads)
    s, space = TuneSettings(**settings), SearchSpace.parse(params)
    study = open_study(Path(out), s, space, epochs, worker)
    plan = TrialPlan(Path(out), flags, s.metric, Datasets(), tracking)
    try:
        work(study, plan, space, s.trials)
    except CifarlabError as e:
        return str(e)
    return None


def work_in_processes(
    out: Path,
    settings: TuneSettings,
    params: list[str],
    flags: dict,
    epochs: int,
    tracking: Tracking,
    progress: Progress,
) -> None:
    workers, threads = worker_plan(settings.jobs, settings.trials)
    ctx = multiprocessing.get_context("spawn")
    args = (str(out), asdict(settings), params, flags, epochs)
    with ctx.Pool(workers) as pool:
        results = [pool.apply_async(_worker, (*args, k, threads, tracking)) for k in range(workers)]
        study = open_study(out, settings, SearchSpace.parse(params), epochs)
        while not all(r.ready() for r in results):
            time.sleep(1.0)
            progress.update(study)
        progress.update(study)
        errors = [e for e in (r.get() for r in results) if e]
    if errors:
        raise CifarlabError(errors[0])


# ------------------------------------------------------------------------- progress


class Progress:
    """A line per trial as it ends (number, values, result, best so far) above an overall
    bar with its estimate. Written to the terminal even while a trial's own lines go to
    its train.log."""

    def __init__(
        self, study: optuna.Study, space: SearchSpace, settings: TuneSettings, show: bool
    ) -> None:
        self.stream = sys.stdout
        self.space, self.metric = space, settings.metric
        self.seen = {
            t.number
            for t in study.get_trials(deepcopy=False)
            if t.state not in (TrialState.RUNNING, TrialState.WAITING)
        }
        done = len(ended(study))
        self.bar = tqdm(
            total=settings.trials,
            initial=min(done, settings.trials),
            unit="trial",
            desc="search",
            file=self.stream,
            disable=not show,
            dynamic_ncols=True,
        )

    def update(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.number in self.seen or t.state in (TrialState.RUNNING, TrialState.WAITING):
                continue
            self.seen.add(t.number)
            self.bar.write(self.line(t, study), file=self.stream)
            if t.state in ENDED:
                self.bar.update(1)

    def line(self, t: FrozenTrial, study: optuna.Study) -> str:
        values = " ".join(f"{n}={_short(t.params.get(n))}" for n in self.space.names)
        if t.state == TrialState.FAIL:
            result = f"failed ({t.user_attrs.get('error', '?')})"
        elif "diverged" in t.user_attrs:
            result = f"diverged at epoch {t.user_attrs.get('epochs')} (NaN loss): counted as pruned"
        else:
            value = trial_value(t)
            end = (
                f"pruned at epoch {t.user_attrs.get('epochs')}"
                if t.state == TrialState.PRUNED
                else count(t.user_attrs.get("epochs"), "epoch")
            )
            result = f"{self.metric} {metric_value(self.metric, value)} ({end})"
        best = ""
        with contextlib.suppress(ValueError):
            b = study.best_trial
            best = f" | best {metric_value(self.metric, b.value)} (trial {b.number})"
        return f"trial {t.number}: {values} -> {result}{best}"

    def close(self) -> None:
        self.bar.close()


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
