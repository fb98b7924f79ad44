"""The `cifarlab` command line: one click group, its commands split by what they work on.

    main.py             the group, its entry point, and analyze and train
    experiments.py      the commands over many runs (sweep, seeds, study, tune, compare)
    trained.py          the commands on a trained model (evaluate, predict, explain, export)
    catalog.py          what there is to choose from (datasets, models)
    options.py          the options the commands share, made from the library's definitions
    command_options.py  the options of one command each (train's run, study, export, ...)

Every command is a thin layer over a library function; its choices come from the library.
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "cli": "main",
    },
)
