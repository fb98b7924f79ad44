"""Train options from text: a value, a comma list (sweeps), NAME=VALUE (--set), a config
file (YAML or TOML), a list of seeds, a grid of sweep values; every value typed and checked
by its TrainConfig field (cifarlab.config.options). And back: the command that reproduces a run."""

from __future__ import annotations

import itertools
import math
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

from cifarlab.config.options import (
    FIELD_NAMES,
    OPTIONS,
    TrainConfig,
    applies,
    closest,
    flag,
    unknown_names,
)
from cifarlab.errors import CifarlabError


def parse_value(name: str, text: str) -> Any:
    """One option value from text ('0.1', '32', 'true', 'none' for an optional one)."""
    spec = OPTIONS[name]
    base = spec.base
    item = text.strip()
    if spec.optional and item.lower() in ("none", "null"):
        return None
    try:
        if base is bool:
            if item.lower() not in ("true", "false"):
                raise ValueError
            value: Any = item.lower() == "true"
        else:
            value = base(item)
    except ValueError:
        what = {bool: "true or false", int: "whole number", float: "number"}.get(base, base)
        raise CifarlabError(f"{flag(name)}: {item!r} is not a {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise CifarlabError(f"{flag(name)}: {item!r} is not a finite number")
    return spec.coerce(value)


def option_name(text: str, *, sweepable: bool = False) -> str:
    """The field name of an option written as --batch-size, batch-size or batch_size."""
    name = text.strip().lstrip("-").replace("-", "_")
    known = [n for n in FIELD_NAMES if not sweepable or OPTIONS[n].identity]
    if name not in known:
        close = closest(name, known)
        listed = f"options: {', '.join(n.replace('_', '-') for n in known)}"
        raise CifarlabError(
            f"{text!r} is not a train option"
            f"{' that can be swept' if sweepable and name in OPTIONS else ''}"
            f"{close if close else f' ({listed})'}"
        )
    return name


def list_separator(name: str) -> str:
    """What separates the values of option `name` in a list: ';' for a pair (--betas
    0.9,0.999;0.95,0.999), else ','."""
    return ";" if OPTIONS[name].pair else ","


def parse_list(name: str, text: str) -> list[Any]:
    """'0.01,0.03' -> [0.01, 0.03], typed like option `name`; no value twice. A pair
    option's values are separated by ';' (list_separator)."""
    sep = list_separator(name)
    items = str(text).split(sep)
    if not str(text).strip() or not all(i.strip() for i in items):
        what = "comma" if sep == "," else f"{sep!r}"
        raise CifarlabError(f"{flag(name)} needs a {what}-separated list of values")
    values = [parse_value(name, item) for item in items]
    if len(set(map(repr, values))) != len(values):
        raise CifarlabError(f"{flag(name)} lists a value twice: {text}")
    return values


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """['lr=0.1', 'lookahead=false'] -> {'lr': 0.1, 'lookahead': False}."""
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise CifarlabError(f"{item!r}: expected NAME=VALUE with NAME a train option")
        key = option_name(name)
        out[key] = parse_value(key, text)
    return out


def syntax_error(e: Exception) -> str:
    """Where and what a YAML or TOML syntax error is, on one line, lines and columns from 1:
    "line 3, column 5: expected ',' or ']', but got ':' (while parsing a flow sequence from
    line 2)"."""
    if isinstance(e, yaml.MarkedYAMLError) and e.problem_mark is not None:
        mark, problem = e.problem_mark, e.problem or type(e).__name__
        context = e.context or ""
        if context and e.context_mark is not None:
            context += f" from line {e.context_mark.line + 1}"
        context = f" ({context})" if context else ""
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}{context}"
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    line, column = getattr(e, "lineno", None), getattr(e, "colno", None)  # Python 3.14+
    if line is not None and column is not None:
        return f"line {line}, column {column}: {getattr(e, 'msg', text)}"
    # tomllib before 3.14 puts the place in the message: "Invalid value (at line 2, column 5)"
    if m := re.fullmatch(r"(.*) \(at (line \d+, column \d+|end of document)\)", text):
        return f"{m[2]}: {m[1]}"
    return text


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A flat mapping of train options from a YAML (.yaml/.yml), JSON or TOML file."""
    path = Path(path)
    if not path.is_file():
        raise CifarlabError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            values = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml", ".json"):  # JSON is YAML
            values = yaml.safe_load(text) or {}
        else:
            raise CifarlabError(f"config file {path} must end in .yaml, .yml, .json or .toml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise CifarlabError(f"config file {path} is not valid: {syntax_error(e)}") from None
    if not isinstance(values, dict):
        raise CifarlabError(f"config file {path} must hold a mapping of option: value")
    values = {k.replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise CifarlabError(f"config file {path}: unknown option(s) {unknown_names(unknown)}")
    return values


def parse_seeds(text: str) -> list[int]:
    """'5-9' -> [5, 6, 7, 8, 9]; '1,3,8' -> [1, 3, 8]; mixtures like '1,5-7' too."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if m := re.fullmatch(r"(\d+)-(\d+)", part):
            lo, hi = int(m[1]), int(m[2])
            if hi < lo:
                raise CifarlabError(f"--seeds {part}: the range goes down; write {hi}-{lo}")
            seeds.extend(range(lo, hi + 1))
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise CifarlabError(
                f"--seeds {text!r}: write a range like 5-9 or a list like 1,2,3 (seeds >= 0)"
            )
    if len(set(seeds)) != len(seeds):
        raise CifarlabError(f"--seeds {text!r} lists a seed twice")
    return seeds


def expand_grid(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """{'lr': [1, 2], 'seed': [0, 1]} -> the 4 combinations, in order."""
    if not grid:
        raise CifarlabError("nothing to sweep: give at least one option with several values")
    for name, values in grid.items():
        if not values:
            raise CifarlabError(f"--{name.replace('_', '-')} has an empty list of values")
    keys = list(grid)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]


# ------------------------------------------------------------------ and back to text


def command_for(cfg: TrainConfig) -> str:
    """The `cifarlab train` command line that reproduces a config, as it is: every option
    (--data-dir where the run had one), less those at their defaults that do not apply to
    this run (cifarlab.config.options.applies); values quoted for a POSIX shell."""
    parts = ["cifarlab", "train"]
    for key, value in cfg.to_dict().items():
        if value is None:
            continue  # an optional option left out: its default, None
        if value == OPTIONS[key].default and not applies(cfg, key):
            continue
        if isinstance(value, bool):
            parts.append(flag(key) if value else flag(key).replace("--", "--no-", 1))
        else:
            parts += [flag(key), str(value)]
    return shlex.join(parts)
