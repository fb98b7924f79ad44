"""Matplotlib headless (Agg) in cifarlab's style (cifarlab.report.style), and the one
function every figure is written with."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cifarlab.files import atomic_write_bytes  # noqa: E402
from cifarlab.report import style  # noqa: E402

plt.rcParams.update(style.rc())


def save_figure(fig, path: Path) -> Path:
    """Write the figure as PNG at `path` and beside it in each other format asked for
    (style.formats()), each atomically (cifarlab.files): two processes writing the same
    figure, or a kill, never leave half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for kind in style.formats():
        buffer = io.BytesIO()
        fig.savefig(buffer, bbox_inches="tight", format=kind)
        atomic_write_bytes(path.with_suffix(f".{kind}"), buffer.getvalue())
    plt.close(fig)
    return path
