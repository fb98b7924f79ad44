"""The wording of reports: a model's title in a sentence, the command that reproduces a
run, a model's description and recipe in a line (numbers read through
cifarlab.report.format)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError
from cifarlab.models.registry import REGISTRY, find_model
from cifarlab.report.format import count
from cifarlab.runs.folder import RunDir
from cifarlab.training.optim import NAMES

# A title that starts with one of these reads as it is in a sentence ("my small CNN's run");
# any other gets "the" ("the base CNN's run").
DETERMINERS = {"a", "an", "the", "my", "our", "your", "his", "her", "their", "its", "this"}


def the(title: str, capital: bool = False) -> str:
    """A model's title inside a sentence: 'the base CNN', 'my small CNN' as it is, and a
    bare name as a model's ('mine' -> 'the model mine', never 'the mine')."""
    words = title.split(maxsplit=1)
    if words and words[0].lower() in DETERMINERS:
        text = title
    else:
        text = f"the {title}" if len(words) > 1 else f"the model {title}"
    return text[:1].upper() + text[1:] if capital else text


REPRODUCE = "reproduce"  # where a report's commands train again (beside the study's folder)


def command(run_dir: str) -> str:
    """The command that trains the run again, as its summary.json records it (the data
    folder as the user named it), into reproduce/RUN: runnable as printed, from where the
    study was run, and never into the study's own cache folder."""
    words = shlex.split((RunDir(run_dir).summary() or {})["command"])
    if "--out" in words:
        at = words.index("--out")
        del words[at : at + 2]
    return f"{shlex.join(words)} --out {shlex.quote(f'{REPRODUCE}/{Path(run_dir).name}')}"


def architecture(run: dict[str, Any]) -> str:
    """The model's description and parameter count: the registry's description of a
    built-in model, the first paragraph of a plugin builder's docstring (the study imported
    its code to train it)."""
    name = run["config"]["model"]
    text = f"your model {name}"
    if name in REGISTRY:
        text = REGISTRY[name].description
    else:
        try:
            spec = find_model(name)
        except CifarlabError:  # its code is gone or broken since it trained
            spec = None
        if spec is not None and (spec.build.__doc__ or "").strip():
            text = f"{spec.description.rstrip('.')} ({text})"
    return f"{text[0].upper()}{text[1:]}; {run['summary']['parameters']:,} parameters."


def optimizer_words(cfg: dict[str, Any]) -> str:
    """The run's optimizer and its settings, as config.json holds them (a run from before
    --optimizer trained with SGD): SGD's lr and momentum; Muon's for the conv filters and
    SGD's for the rest; Adam's or AdamW's lr, betas and weight decay."""
    optimizer = cfg.get("optimizer", "sgd")
    decay = f"weight decay {cfg['weight_decay']}"
    if optimizer in ("adam", "adamw"):
        betas = cfg["betas"]
        betas = betas if isinstance(betas, str) else ",".join(map(str, betas))
        return f"{NAMES[optimizer]} lr {cfg['lr']}, betas {betas}, {decay}"
    nesterov = ", Nesterov" if cfg["nesterov"] else ""
    sgd = f"SGD lr {cfg['lr']}, momentum {cfg['momentum']}{nesterov}, {decay}"
    if optimizer == "muon":
        return (
            f"Muon lr {cfg['muon_lr']}, momentum {cfg['muon_momentum']} (Nesterov) for "
            f"the conv filters and {sgd} for the other weights"
        )
    return sgd


def recipe_line(cfg: dict[str, Any]) -> str:
    """The run's recipe in a sentence: its optimizer and settings, batch, epochs, schedule,
    augmentation and seed (cfg: its config.json)."""
    warmup = f" (warm-up {cfg['warmup_epochs']} epochs)" if cfg["warmup_epochs"] else ""
    return (
        f"Recipe: {optimizer_words(cfg)}, batch {cfg['batch_size']}, "
        f"{count(cfg['epochs'], 'epoch')}, "
        f"schedule {cfg['schedule']}{warmup}, augmentation {cfg['augment']}, "
        f"seed {cfg['seed']}."
    )


def gap_words(epoch: int | None) -> str:
    """What the epoch at which training and validation accuracy part means."""
    if epoch is None:
        return "the training accuracy never pulls away from the validation accuracy for good"
    return (
        f"from epoch {epoch} on, the training accuracy stays more than 2 points above the "
        "validation accuracy and the gap keeps growing (the model starts to memorize)"
    )
