"""Experiments of many runs: the runner, where runs are carried out, sweeps and seed
studies, comparing configurations, and the statistics they use.

    runner.py             Runner: the one owner of many runs (data loaded once, progress,
                          failures)
    placement.py          ExecutorSettings: where a command's runs train, made once
    executors.py          the executor protocol and its tasks; here, or in worker processes
    ray_executor.py       RayExecutor: each run a Ray task on a local Ray or a cluster
    sweeps.py             a sweep over options, a seed study, the epoch study
    results.py            SweepResult, SeedsResult: what `sweep` and `seeds` give back
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
        "SweepResult": "results",
        "SeedsResult": "results",
        "make_executor": "placement",
        "ExecutorSettings": "placement",
    },
)
