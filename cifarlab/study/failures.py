"""The study's failure analysis: where one model fails and how the models bear corruptions.

A spec's `failure_analysis` (the original study's: the improved CNN; five corruptions at
severities 1, 3 and 5; the quick study's: two corruptions at two severities) adds a step
after the others. It evaluates the model's main run as `cifarlab evaluate` does (top
confusions, the most confident mistakes, calibration before and after a temperature
fitted on the validation split, Grad-CAM maps of a few test images) into
OUT/failures/MODEL/, and measures every model's main run under the corruptions
(OUT/failures/robustness-NAME.json, one figure for all). The report's section reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.data import Datasets
from cifarlab.evaluate.report import evaluate_run
from cifarlab.evaluate.robustness import robustness
from cifarlab.evaluate.trained import evaluation_split, load_trained, run_dataset_args
from cifarlab.files import read_json, write_json
from cifarlab.report import figures as plots
from cifarlab.report.document import Report
from cifarlab.report.format import percent
from cifarlab.runs.folder import RunDir, make_dir
from cifarlab.study.spec import StudySpec
from cifarlab.study.wording import the

MISTAKES = 16  # images in the report's grid of confident mistakes
GRADCAM = 6  # images with Grad-CAM maps


def main_run(out: Path, name: str) -> str:
    """The folder of model `name`'s main run, from its step's NAME.json."""
    return read_json(Path(out) / f"{name}.json")["rows"][0]["run_dir"]


def failure_step(spec: StudySpec, out: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Run the failure analysis of `spec` over the models' main runs, after their steps
    (see the module); run: where and how (data_dir, device)."""
    fa = spec.failure_analysis
    needed = {fa["model"], *(fa.get("robustness") or [m.name for m in spec.models])}
    missing = sorted(n for n in needed if not (Path(out) / f"{n}.json").exists())
    if missing:  # their runs failed (listed in study.json): nothing to analyse
        return {"model": fa["model"], "skipped": f"no finished main run of {', '.join(missing)}"}
    main = main_run(out, fa["model"])
    folder = Path(out) / "failures"
    data = {"data_dir": run["data_dir"]} if run.get("data_dir") else {}
    has_val = RunDir(main).config().get("val_from", "test") != "none"
    report, where = evaluate_run(
        main,
        out=folder / fa["model"],
        device=run.get("device", "auto"),
        data_options=data,
        temperature=has_val,
        mistakes=MISTAKES,
        gradcam=GRADCAM,
    )
    measured, datasets = {}, Datasets()  # the models' data, each dataset read once
    for name in fa.get("robustness") or [m.name for m in spec.models]:
        trained = load_trained(main_run(out, name), run.get("device", "auto"))
        own = datasets.get(run_dataset_args(trained.ckpt, data))
        split = evaluation_split(trained.ckpt, own, "test")
        measured[name] = robustness(
            trained, split, fa["corruptions"], fa["severities"], progress=False
        )
        write_json(folder / f"robustness-{name}.json", measured[name])
    make_dir(folder)
    labels = {spec.plan(n).label(): r for n, r in measured.items()}
    title = "accuracy under corruptions (generated from the test images)"
    plots.robustness_curves(labels, folder / "robustness.png", title)
    return {
        "model": fa["model"],
        "folder": str(where),
        "top_confusions": report["top_confusions"][:5],
        "calibration": report["calibration"],
        "gradcam_layer": report.get("gradcam_layer"),
        "robustness": {
            n: {k: r[k] for k in ("clean_acc", "mean_corruption_acc", "relative_drop")}
            for n, r in measured.items()
        },
    }


def failures_section(doc: Report, s: Any) -> None:
    """The report's section: s is the report's Study (heading, figure, results, spec)."""
    if not s.spec.failure_analysis or "failures" not in s.results:
        return
    f = s.results["failures"]
    title = s.spec.plan(f["model"]).label()
    if "skipped" in f:
        s.heading(doc, f"Where {the(title)} fails")
        doc.text(f"Not analysed: {f['skipped']}.")
        return
    folder = Path(f["folder"])
    s.heading(doc, f"Where {the(title)} fails")
    doc.text(
        f"{the(title, capital=True)}'s most frequent confusions on the test split "
        "(true -> predicted: images):"
    )
    doc.table(
        ["true", "predicted", "images"],
        [[c["true"], c["predicted"], c["count"]] for c in f["top_confusions"]],
    )
    s.figure(
        doc,
        folder / "mistakes.png",
        "mistakes",
        f"the {MISTAKES} most confident mistakes of {the(title)}",
    )
    _calibration(doc, f["calibration"])
    s.figure(doc, folder / "reliability.png", "reliability", "reliability diagram")
    s.figure(
        doc,
        folder / "gradcam.png",
        "gradcam",
        f"Grad-CAM maps (layer {f['gradcam_layer']}) of the first {GRADCAM} test images "
        "for the predicted and the true class: where the model looks",
    )
    _robustness(doc, s, f, folder)


def _calibration(doc: Report, cal: dict[str, Any]) -> None:
    """The calibration table: ECE, NLL and Brier before (and after) temperature scaling."""
    rows = [["before", percent(cal["ece"]), f"{cal['nll']:.4f}", f"{cal['brier']:.4f}"]]
    if "temperature" in cal:
        a, temperature = cal["temperature"]["after"], cal["temperature"]["value"]
        rows.append(
            [
                f"after temperature {temperature:.3f}",
                percent(a["ece"]),
                f"{a['nll']:.4f}",
                f"{a['brier']:.4f}",
            ]
        )
    doc.text(
        "Calibration of its confidence (ECE over 15 bins of the top probability; the "
        "temperature is fitted on the validation split, never on the test "
        "split):"
    )
    doc.table(["", "ECE", "NLL", "Brier"], rows)


def _robustness(doc: Report, s: Any, f: dict[str, Any], folder: Path) -> None:
    """The robustness paragraph, table and figure of the failure-analysis section."""
    fa = s.spec.failure_analysis
    doc.text(
        f"Robustness: accuracy on the test split with {', '.join(fa['corruptions'])} "
        f"applied at severities {', '.join(map(str, fa['severities']))} (CIFAR-10-C's "
        "corruptions, generated here from its definitions rather than read from its "
        "released files)."
    )
    doc.table(
        ["model", "clean", "mean under corruptions", "relative drop"],
        [
            [
                s.spec.plan(n).label(),
                percent(r["clean_acc"]),
                percent(r["mean_corruption_acc"]),
                percent(r["relative_drop"]),
            ]
            for n, r in f["robustness"].items()
        ],
    )
    s.figure(
        doc,
        folder.parent / "robustness.png",
        "robustness",
        "accuracy against severity, per corruption and model",
    )
