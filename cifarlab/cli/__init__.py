"""The `cifarlab` command line: one click group, its commands split by what they work on.

    main.py     the group and the commands that train and study (train, sweep, seeds, study,
                tune, compare, analyze, models, datasets)
    trained.py  the commands on a trained model (evaluate, predict, explain, export)
    options.py  the options the commands share, made from the library's own definitions

Every command is a thin layer over a library function; its choices come from the library.
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "cli": "main",
    },
)
