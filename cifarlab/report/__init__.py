"""How cifarlab writes what it found: the report document and its figures.

document.py  a report as blocks, written as Markdown and as one self-contained HTML file
figures.py   every figure, headless (matplotlib's Agg), one file each
format.py    how a number reads: percent, points, metric (by its kind), duration
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "Report": "document",
    },
)
