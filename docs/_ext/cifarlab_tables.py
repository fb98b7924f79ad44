"""Tables of the manual generated from the code, so they cannot drift from `--help`:

```{cifarlab-options}
```        every train option: flag, type or choices, default, help (TrainConfig's fields)

```{cifarlab-recipes}
```        each model's recipe: the options its runs start from (cifarlab.config.recipes)
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx


def _table(header: list[str], rows: list[list[str]], widths: list[int]) -> nodes.table:
    table = nodes.table()
    group = nodes.tgroup(cols=len(header))
    table += group
    for w in widths:
        group += nodes.colspec(colwidth=w)

    def row(cells: list[str], literal_first: bool) -> nodes.row:
        r = nodes.row()
        for k, text in enumerate(cells):
            entry = nodes.entry()
            para = nodes.paragraph()
            if literal_first and k == 0:
                para += nodes.literal(text=text)
            else:
                for j, part in enumerate(text.split("`")):  # `code` in help texts
                    para += nodes.literal(text=part) if j % 2 else nodes.Text(part)
            entry += para
            r += entry
        return r

    head = nodes.thead()
    head += row(header, False)
    body = nodes.tbody()
    for cells in rows:
        body += row(cells, True)
    group += head
    group += body
    return table


def _value(v: Any) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


class OptionsTable(Directive):
    """Every train option as the command line takes it."""

    def run(self) -> list[nodes.Node]:
        from cifarlab.config.checks import flag
        from cifarlab.config.options import OPTIONS, TrainConfig

        default = TrainConfig()
        rows = []
        for name, spec in OPTIONS.items():
            base = spec.base
            what = " | ".join(spec.choices) or ("flag" if base is bool else base.__name__)
            rows.append([flag(name), what, _value(getattr(default, name)), spec.help])
        return [_table(["option", "takes", "default", "what it does"], rows, [24, 16, 10, 50])]


class RecipesTable(Directive):
    """Each model's recipe, the options on top of the defaults its runs start from."""

    def run(self) -> list[nodes.Node]:
        from cifarlab.config.checks import flag
        from cifarlab.config.recipes import RECIPES

        rows = [
            [model, ", ".join(f"{flag(k)} {_value(v)}" for k, v in recipe.items())]
            for model, recipe in RECIPES.items()
        ]
        return [_table(["model", "its recipe (options on top of the defaults)"], rows, [16, 84])]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("cifarlab-options", OptionsTable)
    app.add_directive("cifarlab-recipes", RecipesTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
