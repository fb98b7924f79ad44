"""A run's options: one dataclass field per option, its checks, its recipe, its parsing.

options.py  TrainConfig, from_dict, resolve: the options of one run and how they resolve
choices.py  every other fixed list of choices (checkpoints, splits, executors, tests...)
checks.py   Option: an option as its field declares it (type, choices, bounds, help); checks
parse.py    options from text: values, comma lists, NAME=VALUE, config files, seeds
recipes.py  each model's default recipe
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "TrainConfig": "options",
        "from_dict": "options",
        "resolve": "options",
        "recipe": "options",
        "RECIPES": "recipes",
        "read_config_file": "parse",
    },
)
