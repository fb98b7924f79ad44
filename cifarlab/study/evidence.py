"""The study's evidence: each claim that one setting beats another, with its statistics.

The report's conclusions about learning rates and about the improved CNN against the first
model come from cifarlab.experiments.compare over the study's own run folders: the difference, its
95% interval, the test and the Holm-adjusted p-value, or "not distinguishable from noise".
With one run per setting the test is McNemar's on the test images, which says nothing of
the seed-to-seed spread; `--seeds-per-config N` gives the t-tests that do. Each comparison
is also written in full into OUT/evidence/NAME/ (compare.json, compare.md, compare.png).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError
from cifarlab.experiments.compare import compare, verdict, write_comparison
from cifarlab.runs.folder import RunDir

MCNEMAR_NOTE = (
    "With one run per setting the test is McNemar's on the test images: it covers the "
    "test images but not the seed-to-seed spread (`--seeds-per-config 3` adds that)."
)


def lr_evidence(out: Path, sweep_result: dict[str, Any], name: str) -> str:
    """What the lr sweep of model `name` shows: the best lr by mean test accuracy and how
    it compares with each other lr."""
    runs = [row["run_dir"] for row in sweep_result["rows"]]
    try:
        result = compare(runs, by=["lr"])
    except CifarlabError as e:
        return f"Evidence: not compared ({e})."
    write_comparison(result, Path(out) / "evidence" / f"lr-{name}")
    best = max(result["groups"], key=lambda g: g["mean"])
    n = best["n"]
    runs_text = f"{n} run{'s' * (n > 1)}"
    lines = [
        f"Evidence (`evidence/lr-{name}/compare.md`): the best mean test accuracy is at "
        f"{best['name']} ({100 * best['mean']:.2f}% over {runs_text})."
    ]
    lines += [
        verdict(oriented(p, best["name"]), "test_acc", mcnemar_note=False)
        for p in result["pairs"]
        if best["name"] in (p["a"], p["b"])
    ]
    if any(p["test"] == "mcnemar" for p in result["pairs"]):
        lines.append(MCNEMAR_NOTE)
    return " ".join(lines)


def model_evidence(out: Path, study: dict[str, Any], first: str, other: str) -> str:
    """Whether model `other` beats the first model: their runs at the recipe's lr, paired
    by seed where both have the same seeds (at least two), else all of them."""
    runs = {first: _recipe_runs(study, first), other: _recipe_runs(study, other)}
    common = sorted(set(runs[first]) & set(runs[other]))
    if len(common) >= 2 or (common and min(len(r) for r in runs.values()) == 1):
        runs = {k: {s: v[s] for s in common} for k, v in runs.items()}
    paths = [d for r in runs.values() for d in r.values()]
    models = {RunDir(next(iter(r.values()))).config()["model"] for r in runs.values()}
    by = ["model"] if len(models) == 2 else None  # else: the same net, other recipes
    try:
        result = compare(paths, by=by)
    except CifarlabError as e:
        return f"Evidence: not compared ({e})."
    write_comparison(result, Path(out) / "evidence" / f"{other}-vs-{first}")
    (pair,) = result["pairs"]
    one = str(next(iter(runs[other].values())))
    other_group = next(g["name"] for g in result["groups"] if one in g["runs"])
    text = f"Evidence (`evidence/{other}-vs-{first}/compare.md`): " + verdict(
        oriented(pair, other_group), "test_acc", mcnemar_note=False
    )
    return text + (f" {MCNEMAR_NOTE}" if pair["test"] == "mcnemar" else "")


def _recipe_runs(study: dict[str, Any], name: str) -> dict[int, str]:
    """A model's finished runs with its main run's config but the seed: seed -> run folder
    (the main run, its lr sweep's runs at that lr, the seed study's runs)."""
    results = study["results"]
    main = results[name]["rows"][0]["run_dir"]
    cfg = RunDir(main).config()
    found = {cfg["seed"]: main}
    candidates = [row["run_dir"] for row in results.get(f"lr_{name}", {}).get("rows", [])]
    seeds_rows = results.get("seeds", {}).get("rows", [])
    candidates += [row["run_dir"] for row in seeds_rows]
    for d in candidates:
        c = RunDir(d).config()
        if {k: v for k, v in c.items() if k != "seed"} == {
            k: v for k, v in cfg.items() if k != "seed"
        }:
            found.setdefault(c["seed"], d)
    return dict(sorted(found.items()))


def oriented(pair: dict[str, Any], first: str) -> dict[str, Any]:
    """The pair with `first` as a (the difference and its interval turned round)."""
    if pair["a"] == first:
        return pair
    flipped = dict(pair, a=pair["b"], b=pair["a"], diff=-pair["diff"])
    if pair["ci95"] is not None:
        flipped["ci95"] = [-pair["ci95"][1], -pair["ci95"][0]]
    return flipped
