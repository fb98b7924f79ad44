"""How cifarlab writes what it found: the report document and its figures.

document.py       a report as blocks, written as Markdown and as one self-contained HTML file
figures.py        the figures of numbers: curves, sweeps, seeds, comparisons, reliability
image_figures.py  the figures of images: samples, captioned grids, confusion, Grad-CAM
canvas.py         matplotlib headless (Agg) in cifarlab's style; save_figure
style.py          the style: palette, markers, the figure formats written
format.py         how a number reads: percent, points, metric (by its kind), duration
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "Report": "document",
    },
)
