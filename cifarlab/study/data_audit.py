"""The study's data audit (a step of every study): `cifarlab audit` of one model's main run
(the failure analysis's model, else the last: the original study's improved CNN) into
OUT/audit/, kept where a study run again finds that run's checkpoint audited; and what the
report's dataset-analysis section says of it: the test images with a near-duplicate in
training, the likely label errors, and the test accuracy without them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.audit.run import audit_run
from cifarlab.files import file_digest, read_json
from cifarlab.report.document import Report
from cifarlab.report.format import percent
from cifarlab.study.failures import main_run
from cifarlab.study.spec import StudySpec


def audit_step(spec: StudySpec, out: Path, run: dict[str, Any]) -> dict[str, Any]:
    """Audit the main run of spec.audit_model; audit.json's content (or why not)."""
    name = spec.audit_model
    if not (Path(out) / f"{name}.json").exists():  # its run failed (listed in study.json)
        return {"model": name, "skipped": f"no finished main run of {name}"}
    run_dir, folder = main_run(out, name), Path(out) / "audit"
    done = finished_audit(folder, run_dir)
    if done is not None:  # a study run again: its main run is the one audited
        return {"model": name, **done}
    result, _ = audit_run(
        run_dir,
        folder,
        data_dir=run.get("data_dir"),
        device=run.get("device", "auto"),
        progress=False,
    )
    return {"model": name, **result}


def finished_audit(folder: Path, run_dir: str) -> dict[str, Any] | None:
    """folder's audit.json where it audited run_dir's checkpoint as it is now, else None."""
    path = folder / "audit.json"
    if not path.exists():
        return None
    done = read_json(path)
    checkpoint = Path(run_dir) / "checkpoint.pt"
    same = done.get("run") == str(run_dir) and checkpoint.exists()
    return done if same and done.get("checkpoint_sha256") == file_digest(checkpoint) else None


def audit_text(doc: Report, audit: dict[str, Any] | None, folder: Path, label: str) -> None:
    """The audit's paragraph, table and figures in the dataset-analysis section."""
    if not audit:
        doc.text("Data audit: not run (this study's results predate it; run the study again).")
        return
    if "skipped" in audit:
        doc.text(f"Data audit: skipped ({audit['skipped']}).")
        return
    d, li, acc = audit["duplicates"], audit["label_issues"], audit["test_accuracy"]
    n = audit["images"]["test"]
    doc.text(
        f"Data audit (`audit/`, the {label}'s run, as `cifarlab audit` does): "
        f"{d['test_with_a_train_duplicate']:,} of {n:,} test images have a near-duplicate in "
        f"the training set and {d['test_pairs']:,} pairs of test images are near-duplicates "
        f"of each other: pairs at most {audit['threshold']['distance']:.4f} apart by cosine "
        f"distance in the model's penultimate features ({audit['threshold']['rule']}). "
        f"Confident learning (cleanlab) on the model's predictions flags {li['test']:,} test "
        "labels as likely errors. The figures show the closest pairs and the flagged images for a "
        "person to judge; neither list is checked by hand here."
    )
    rows = [
        ["all test images", f"{acc['all']['images']:,}", percent(acc["all"]["accuracy"])],
        *[
            [words, f"{acc[key]['images']:,}", percent(acc[key]["accuracy"])]
            for key, words in (
                ("without_train_duplicates", "without the near-duplicates of training images"),
                ("without_label_issues", "without the likely label errors"),
                ("without_both", "without both"),
            )
        ],
    ]
    doc.table(["test accuracy of the " + label, "images", "accuracy"], rows)
    for name, caption in (
        ("duplicates.png", "the closest test-train pairs (test image left)"),
        ("threshold.png", "the test-train pairs on either side of the near-duplicate threshold"),
        ("label_issues.png", "the likeliest label errors of the test set, given and suggested"),
    ):
        if (folder / name).exists():
            doc.figure(folder / name, f"Data audit: {caption}")
