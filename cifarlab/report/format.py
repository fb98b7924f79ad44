"""How a number reads for a person: a fraction as a percentage, a metric by its kind, a
duration in hours, minutes and seconds. Every screen line and report cell writes its numbers
through these, so the same value reads the same everywhere; files of numbers (JSON, CSV)
keep the numbers themselves.

    percent(0.7248)                    '72.48%'
    points(0.1189)                     '+11.89'  (a difference of two fractions, in points)
    metric_value("val_acc", 0.6514)    '65.14%'
    metric_value("test_loss", 1.9236)  '1.9236'
    duration(3725)                     '1h02m05s'
    count(1, "epoch")                  '1 epoch'  (and '3 epochs')
"""

from __future__ import annotations

import math

LOSS_DIGITS = 4


def percent(x: float | None, digits: int = 2) -> str:
    """A fraction as a percentage: 0.7248 -> '72.48%'; '-' for None (not measured)."""
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def points(x: float | None, digits: int = 2) -> str:
    """A difference of two fractions in percentage points, signed: 0.1189 -> '+11.89'; '-'
    for None."""
    return "-" if x is None else f"{100 * x:+.{digits}f}"


def is_accuracy(name: str) -> bool:
    """Whether metric `name` is an accuracy (a fraction read as a percentage): val_acc,
    test_acc, accuracy; any other (a loss) reads as a plain number."""
    return name.endswith(("acc", "accuracy"))


def metric_value(name: str, value: float | None, signed: bool = False) -> str:
    """A metric's value by its kind: an accuracy as a percentage ('65.14%'), any other with 4
    digits ('1.9236'); signed: a difference ('+11.89' points of accuracy, '+0.0123' of
    loss); '-' for None."""
    if value is None:
        return "-"
    if is_accuracy(name):
        return points(value) if signed else percent(value)
    return f"{value:+.{LOSS_DIGITS}f}" if signed else f"{value:.{LOSS_DIGITS}f}"


def duration(seconds: float | None) -> str:
    """Seconds as a clock reads, to the nearest second: '45s', '3m05s', '1h02m05s' (hours go
    on past a day: '25h01m01s'); '-' for None, NaN or infinity (not known). A negative
    duration is a mistake and raises ValueError."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds} s")
    m, s = divmod(math.floor(seconds + 0.5), 60)
    h, m = divmod(m, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def count(n: int | None, noun: str) -> str:
    """'1 epoch', '3 epochs', '? epochs' (None: not known)."""
    if n is None:
        return f"? {noun}s"
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
