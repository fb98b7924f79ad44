"""Experiments of many runs: the runner, where runs are carried out, sweeps and seed
studies, comparing configurations, and the statistics they use.

    runner.py             Runner: the one owner of many runs (data loaded once, progress,
                          failures)
    executors.py          where runs are carried out: here, in worker processes, or on Ray
    sweeps.py             a sweep over options, a seed study, the epoch study
    compare.py            is one configuration really better than another (`cifarlab compare`)
    comparison_report.py  how a comparison reads: its tables, verdicts and files
    stats.py              intervals, paired and unpaired tests, effect sizes
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "Runner": "runner",
        "run_sweep": "sweeps",
        "run_seeds": "sweeps",
        "make_executor": "executors",
    },
)
