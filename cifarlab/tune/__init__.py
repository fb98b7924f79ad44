"""`cifarlab tune`: a hyperparameter search with Optuna, every trial a cifarlab run.

search.py      run_tune: the search, its confirmation, its files
loop.py        the local search: settings, the Optuna study, worker processes, progress
ray_tune.py    the same search run by Ray Tune (--executor ray)
trial.py       one trial: a run folder in SEARCH/trials/
algorithms.py  the sampler and pruner behind each --sampler and --pruner name
report.py      trials.csv, tune.json, best.yaml, the figures and the report
space.py       the search space: --param NAME=SPEC
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "run_tune": "search",
        "TuneSettings": "loop",
        "SearchSpace": "space",
    },
)
