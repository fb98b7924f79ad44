"""The one style of every figure cifarlab draws, and the formats figures are written in.

- Colours: Okabe & Ito's palette (2008), told apart with every kind of colour blindness;
  each series also has its own marker (and, where lines overlap, its own line style), so a
  figure printed in grey still separates them.
- Axes: labelled, with units; no top and right frame; a light grid; text readable at the
  size the reports show the figures (about 700 px wide).
- Intervals are clipped to the range the metric can take (accuracy 0-100%) and the clipped
  end is marked, never drawn below 0% in silence.
- Formats: PNG always (the reports and run folders show it); `--figure-format svg,pdf` adds
  vector copies beside each PNG for a paper (the setting travels in CIFARLAB_FIGURE_FORMATS,
  so worker processes write them too).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from cifarlab.errors import CifarlabError

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINES = ("-", "--", ":", "-.")
ACCENT = PALETTE[3]  # a mean, a best epoch, a gap: what the eye should find first
MUTED = "#999999"  # what is context: pruned trials, a diagonal of perfect calibration

STYLE: dict[str, Any] = {  # matplotlib's rcParams (with rc(): the cycle of series)
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "lines.markersize": 4.5,
    "lines.linewidth": 1.6,
    "figure.constrained_layout.use": True,
    "savefig.dpi": 150,
    "pdf.fonttype": 42,  # TrueType in PDFs: text stays text in a paper's editor
    "svg.fonttype": "none",
}


def rc() -> dict[str, Any]:
    """STYLE with the cycle of colours and markers, as matplotlib's rcParams take it."""
    from matplotlib import cycler  # here: the command line reads this module's names

    return {**STYLE, "axes.prop_cycle": cycler(color=PALETTE) + cycler(marker=MARKERS)}


FIGURE_FORMATS = ("png", "svg", "pdf")
FORMATS_VAR = "CIFARLAB_FIGURE_FORMATS"


def series(k: int, lines: bool = False) -> dict[str, Any]:
    """Colour and marker (and line style with lines=True) of the k-th series."""
    style = {"color": PALETTE[k % len(PALETTE)], "marker": MARKERS[k % len(MARKERS)]}
    if lines:
        style["linestyle"] = LINES[(k // len(PALETTE)) % len(LINES)]
    return style


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """'svg,pdf' or ['svg', 'pdf'] -> ('png', 'svg', 'pdf'): PNG first, always; each once."""
    names = text.split(",") if isinstance(text, str) else [n for t in text for n in t.split(",")]
    names = [n.strip().lower().lstrip(".") for n in names if n.strip()]
    bad = [n for n in names if n not in FIGURE_FORMATS]
    if bad:
        raise CifarlabError(
            f"--figure-format {bad[0]!r}: choose from {', '.join(FIGURE_FORMATS)} "
            "(several with commas: --figure-format svg,pdf)"
        )
    return tuple(dict.fromkeys(["png", *names]))


def set_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """Every figure written from now on, here and in the worker processes started after, in
    these formats (PNG always)."""
    chosen = parse_formats(formats)
    os.environ[FORMATS_VAR] = ",".join(chosen)
    return chosen


def formats() -> tuple[str, ...]:
    """The formats figures are written in (CIFARLAB_FIGURE_FORMATS; default PNG only)."""
    return parse_formats(os.environ.get(FORMATS_VAR, "png"))


def clip(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float, bool]:
    """An interval cut to the metric's range: (low, high, whether it was cut)."""
    lo, hi = bounds
    return max(low, lo), min(high, hi), low < lo or high > hi
