"""The commands that list what cifarlab knows: `cifarlab datasets` and `cifarlab models`
(cifarlab.cli.main adds them to the `cifarlab` group). Like every command, each imports the
library it calls when it runs (cifarlab.cli.main's docstring says why)."""

from __future__ import annotations

import textwrap

import click

from cifarlab.config.options import recipe
from cifarlab.errors import CifarlabError


@click.command()
def datasets() -> None:
    """List the datasets cifarlab reads, with what each expects in --data-dir."""
    from cifarlab.data import DATASETS

    for name, spec in DATASETS.items():
        download = (
            "downloaded when no --data-dir is given" if spec.download else "--data-dir needed"
        )
        click.echo(f"{name:<15}{spec.description}")
        for line in textwrap.wrap(f"--data-dir: {spec.expected}; {download}", 84):
            click.echo(" " * 15 + line)


@click.command()
@click.argument("references", nargs=-1, metavar="[MODEL]...")
@click.option(
    "--timm",
    "timm_pattern",
    metavar="PATTERN",
    default=None,
    help="List timm's models whose names match PATTERN (resnet*, or a part of a "
    "name: resnet1), for --model timm:NAME.",
)
def models(references: tuple[str, ...], timm_pattern: str | None) -> None:
    """List the models with their parameter counts, descriptions and default recipes; with
    MODEL arguments (names or references like nets/mine.py:small), describe those.

    Your own models: --model path/to/file.py:function or package.module:function, or
    installed packages' entry points (group `cifarlab.models`), listed here too. Their
    description is the first paragraph of the function's docstring. timm's models (the
    extra cifarlab[timm]): --model timm:NAME, random weights, no recipe of their own (the
    option defaults apply); --timm PATTERN lists their names.
    """
    if timm_pattern is not None:
        if references:
            raise CifarlabError("give MODEL arguments or --timm PATTERN, not both")
        _list_timm(timm_pattern)
        return
    from cifarlab.models.registry import describe_models

    def wrapped(text: str) -> str:
        lines = textwrap.wrap(text, 100 - 24) or [""]
        return "\n".join([lines[0], *(" " * 24 + line for line in lines[1:])])

    described = describe_models(list(references))  # errors before any output
    click.echo(f"{'model':<10}{'parameters':>12}  description (CIFAR-10 shapes)")
    for name, n, description in described:
        if len(name) > 10:  # a reference: on a line of its own
            click.echo(name)
        click.echo(f"{name if len(name) <= 10 else '':<10}{n:>12,}  {wrapped(description)}")
        r = {k: v for k, v in recipe(name).items() if k != "model"}
        if r:
            text = "recipe: " + ", ".join(f"{k}={v}" for k, v in r.items())
            click.echo(" " * 24 + wrapped(text))
    if not references:
        click.echo(
            "\nyour own: --model path/to/file.py:function or --model package.module:function"
        )
        click.echo(
            "timm's: --model timm:NAME (the extra cifarlab[timm]; names: "
            "cifarlab models --timm PATTERN)"
        )


def _list_timm(pattern: str) -> None:
    """`cifarlab models --timm PATTERN`: the matching names, in columns, and their count."""
    from cifarlab.models.timm_models import list_timm

    names = list_timm(pattern)
    if not names:
        click.echo(
            f"no timm model matches {pattern!r}: try a part of a name (resnet) or a pattern (*vit*)"
        )
        return
    width = max(map(len, names)) + 2
    per_line = max(1, 100 // width)
    for i in range(0, len(names), per_line):
        click.echo("".join(f"{n:<{width}}" for n in names[i : i + per_line]).rstrip())
    many = "s match" if len(names) > 1 else " matches"
    click.echo(f"\n{len(names)} timm model{many} {pattern!r}; train one with --model timm:NAME")


CATALOG = (datasets, models)
