"""What `cifarlab sweep` and `cifarlab seeds` give back: typed views of sweep.json and
seeds.json (whose layout stays as written, for the study and for scripts that read them).

    result, folder = run_seeds("1-3", {"model": "base"})
    result.test_acc.mean, result.test_acc.ci95_low, [row.seed for row in result.rows]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SeedRow", "SeedsResult", "Spread", "SweepResult", "SweepRow"]


@dataclass(frozen=True)
class Spread:
    """cifarlab.experiments.stats.describe of a list of values: n, mean, sample std (None
    for one value), min, max, range and the 95% t interval of the mean (None for one)."""

    n: int
    mean: float
    std: float | None
    min: float
    max: float
    range: float
    ci95_low: float | None
    ci95_high: float | None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spread:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SeedRow:
    seed: int
    test_acc: float
    test_loss: float
    run_dir: Path


@dataclass(frozen=True)
class SeedsResult:
    """One configuration under several seeds: each seed's run and the spread of its test
    accuracy and loss."""

    fixed: dict[str, Any]
    rows: list[SeedRow]
    test_acc: Spread
    test_loss: Spread

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SeedsResult:
        rows = [
            SeedRow(r["seed"], r["test_acc"], r["test_loss"], Path(r["run_dir"])) for r in d["rows"]
        ]
        return cls(
            d["fixed"], rows, Spread.from_dict(d["test_acc"]), Spread.from_dict(d["test_loss"])
        )


@dataclass(frozen=True)
class SweepRow:
    """One point of a sweep: its option values and what its run reached."""

    values: dict[str, Any]  # option -> value, in the sweep's order of options
    final_val_acc: float
    best_val_acc: float
    best_val_epoch: int
    test_acc: float
    test_loss: float
    val_loss_rises: int
    largest_val_loss_rise: float
    run_dir: Path


@dataclass(frozen=True)
class SweepResult:
    """A grid of options on top of fixed ones: a row per combination."""

    fixed: dict[str, Any]
    options: list[str]
    grid: dict[str, list[Any]]
    rows: list[SweepRow]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepResult:
        names = d["options"]
        rows = [
            SweepRow(
                values={n: r[n] for n in names},
                final_val_acc=r["final_val_acc"],
                best_val_acc=r["best_val_acc"],
                best_val_epoch=r["best_val_epoch"],
                test_acc=r["test_acc"],
                test_loss=r["test_loss"],
                val_loss_rises=r["val_loss_rises"],
                largest_val_loss_rise=r["largest_val_loss_rise"],
                run_dir=Path(r["run_dir"]),
            )
            for r in d["rows"]
        ]
        return cls(d["fixed"], names, d["grid"], rows)
