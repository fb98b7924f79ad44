"""A study's report: every figure and table of its steps, measured beside published.

One function per section; each reads what it needs from the study's results (study.json),
its spec and the run folders, and adds its blocks to the Report. The published numbers
(and the original's figure numbers) appear only for the original study on CIFAR-10.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.data.catalog import dataset_spec
from cifarlab.report.document import Report
from cifarlab.report.format import count, duration, percent, points
from cifarlab.runs.folder import RunDir
from cifarlab.study.data_audit import audit_text
from cifarlab.study.evidence import lr_evidence, model_evidence
from cifarlab.study.failures import failures_section
from cifarlab.study.findings import conclusions_section, reproduce, summary_section
from cifarlab.study.search_section import tune_section
from cifarlab.study.spec import ORIGINAL, QUICK, ModelPlan, StudySpec, spec_from_dict
from cifarlab.study.wording import architecture, command, gap_words, recipe_line, the

# The published report's figure numbers, for the original study: its captions name them
# (this report numbers its figures in order of appearance, the published one did not).
ORIGINAL_FIGURES = {
    "samples_train": 1,
    "samples_test": 2,
    "class_distribution_test": 3,
    "class_distribution_train": 4,
    "epochs": 5,
    "curves_base": 6,
    "curves_improved": 7,
    "seeds": 8,
}


@dataclass
class Study:
    """What the sections read: the study's results and spec, the folder, each model's main
    run (config, summary, metrics), the published numbers (or None) and the section count."""

    out: Path
    study: dict[str, Any]
    spec: StudySpec
    runs: dict[str, dict[str, Any]]
    published: dict[str, Any] | None
    section: int = 0

    @classmethod
    def read(cls, out: Path, study: dict[str, Any]) -> Study:
        spec = study.get("spec")
        spec = spec_from_dict(spec) if spec else (QUICK if study["quick"] else ORIGINAL)
        r = study["results"]
        runs = {m.name: RunDir(r[m.name]["rows"][0]["run_dir"]).load() for m in spec.models}
        return cls(Path(out), study, spec, runs, study.get("published"))

    @property
    def results(self) -> dict[str, Any]:
        return self.study["results"]

    def heading(self, doc: Report, title: str) -> None:
        self.section += 1
        doc.heading(f"{self.section}. {title}")

    def figure(self, doc: Report, path: Path, key: str, caption: str) -> None:
        """A figure (the Report numbers it); for the original study, its caption also names
        the published report's number for it where that differs."""
        published = ORIGINAL_FIGURES.get(key) if self.published is not None else None
        if published and published != doc.figures + 1:
            caption += f" (Figure {published} of the published report)"
        doc.figure(path, caption)


def report_title(spec: StudySpec) -> str:
    """The spec's title; the original study's run on other data says which data, never
    "on CIFAR-10" over another dataset's numbers."""
    name = spec.dataset.get("dataset", "cifar10")
    if spec.title != ORIGINAL.title or name == "cifar10":
        return spec.title
    return f"CNN image classification on {dataset_spec(name).title}: the original study's pipeline"


def build_report(out: Path, study: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.md and report.html into `out`; return their paths."""
    s = Study.read(out, study)
    doc = Report(report_title(s.spec))
    first, *others = s.spec.models
    introduction(doc, s)
    summary_section(doc, s)
    steps_table(doc, s)
    dataset_analysis(doc, s)
    normalization(doc, s)
    validation_split(doc, s)
    model_run(doc, s, first)
    learning_rates(doc, s)
    epoch_study(doc, s)
    for plan in others:
        model_run(doc, s, plan)
    seed_sensitivity(doc, s)
    tune_section(doc, s)
    failures_section(doc, s)
    conclusions_section(doc, s)
    reproduce(doc, s)
    return doc.write(Path(out))


def introduction(doc: Report, s: Study) -> None:
    if s.study["quick"]:
        changes = "; ".join(
            f"{m.label()}: "
            + ", ".join(f"{k} {v}" for k, v in m.overrides.items())
            + f", lr sweep {', '.join(map(str, m.lrs))}"
            for m in s.spec.models
        )
        doc.text(
            f"**Quick study**: the same pipeline on a small subset with few epochs ({changes}). "
            "Its numbers show that the tool works, not what the models reach; run "
            "`cifarlab study` without `--quick` for those."
        )
    env = s.runs[s.spec.models[0].name]["summary"]
    doc.text(
        f"Dataset: {s.results['analysis'].get('dataset', 'cifar10')}. Environment: "
        f"{env['device']} ({env['device_name']}), precision {env['precision']}, "
        f"{env['threads']} threads, torch {env['torch_version']}, cifarlab "
        f"{env['cifarlab_version']}, Python {env['python_version']}. Test accuracies are on "
        f"{env['test_set']} unless said otherwise."
    )


def steps_table(doc: Report, s: Study) -> None:
    doc.heading("Steps and wall time")
    runs = s.study.get("step_runs", {})  # absent from study.json files written before it
    titles = s.spec.steps()

    def run_counts(key: str) -> str:
        trained, reused = runs.get(key, (0, 0))
        if not trained + reused:
            return "-"
        return f"{trained} trained" + (f", {reused} reused" if reused else "")

    rows = [[titles[k], duration(v), run_counts(k)] for k, v in s.study["step_seconds"].items()]
    rows.append(["**total**", f"**{duration(s.study['total_seconds'])}**", ""])
    doc.table(["step", "wall time", "runs"], rows)
    shared = []
    for m in s.spec.models:
        cfg = s.runs[m.name]["config"]
        where = [f"the lr {cfg['lr']} point of its sweep"] if cfg["lr"] in m.lrs else []
        if s.spec.seed_study and s.spec.seed_study["model"] == m.name:
            where.append(f"seed {cfg['seed']} of the seed study")
        if where:
            shared.append(f"{the(m.label())}'s run is " + " and ".join(where))
    if shared:
        doc.text(
            "A run that an earlier step already trained with the same config is reused, not "
            f"trained again: {'; '.join(shared)}."
        )


def dataset_analysis(doc: Report, s: Study) -> None:
    a, adir = s.results["analysis"], s.out / "analysis"
    b, c = a["before_conversion"], a["after_conversion"]
    s.heading(doc, "Dataset analysis")
    published = " Published: 50,000 / 10,000, 5,000 per class in training." if s.published else ""
    doc.text(
        f"Training set {a['train_size']:,} images, test set {a['test_size']:,}; "
        f"{a['num_classes']} classes; images {a['image_shape']} (channels, height, width), "
        f"{a['elements_per_image']:,} elements; {b['dtype']} in [{b['min']}, {b['max']}] "
        f"before conversion, {c['dtype']} in [{c['min']:.1f}, {c['max']:.1f}] after.{published}"
    )
    counts = zip(a["classes"], a["train_class_counts"], a["test_class_counts"], strict=True)
    doc.table(["class", "train", "test"], [[c, f"{tr:,}", f"{te:,}"] for c, tr, te in counts])
    for key, caption in (
        ("samples_train", "one sample image per class, training set"),
        ("samples_test", "one sample image per class, test set"),
        ("class_distribution_test", "class distribution, test set"),
        ("class_distribution_train", "class distribution, training set"),
    ):
        s.figure(doc, adir / f"{key}.png", key, caption)
    label = s.spec.plan(s.spec.audit_model).label()
    audit_text(doc, s.results.get("audit"), s.out / "audit", label)


def normalization(doc: Report, s: Study) -> None:
    a, pub = s.results["analysis"], s.published
    s.heading(doc, "Normalization")
    rows = []
    for i, ch in enumerate(a["channel_order"]):
        row = [ch, f"{a['mean'][i]:.4f}", f"{a['std'][i]:.4f}"]
        if pub:
            row[2:2] = [f"{pub['mean'][i]:.4f}"]
            row.append(f"{pub['std'][i]:.4f}")
        rows.append(row + [f"{abs(a['normalized_mean'][i]):.4f}", f"{a['normalized_std'][i]:.4f}"])
    header = (
        ["channel", "mean", "published", "std", "published"] if pub else ["channel", "mean", "std"]
    )
    doc.table(header + ["normalized mean", "normalized std"], rows)


def validation_split(doc: Report, s: Study) -> None:
    cfg = s.runs[s.spec.models[0].name]["config"]
    s.heading(doc, "Validation split")
    if cfg["val_from"] == "test":
        text = (
            f"As in the study, the test set is split with a fixed seed ({cfg['split_seed']}) "
            "into a validation set and a new test set, half and half (`--val-from test`). "
            "`--val-from train` carves the validation set from the training set instead."
        )
    else:
        text = f"`--val-from {cfg['val_from']}` (see `cifarlab train --help`)."
    doc.text(text)


def model_run(doc: Report, s: Study, plan: ModelPlan) -> None:
    run, first = s.runs[plan.name], s.spec.models[0]
    summary, pub = run["summary"], s.published
    s.heading(doc, plan.label()[0].upper() + plan.label()[1:])
    note = " (the study states lr and epochs only)" if pub and plan.name == "base" else ""
    doc.text(f"{architecture(run)} {recipe_line(run['config'])}{note}")
    published_epochs = pub["base_epochs"] if pub and plan.name == "base" else []
    rows, header = [], ["epoch", "train acc", "val acc", "train loss", "val loss"]
    for i, row in enumerate(run["metrics"]):
        val_loss = "-" if row["val_loss"] is None else f"{row['val_loss']:.4f}"
        cells = [
            row["epoch"],
            percent(row["train_acc"]),
            percent(row["val_acc"]),
            f"{row['train_loss']:.4f}",
            val_loss,
        ]
        if published_epochs:
            p = published_epochs[i] if i < len(published_epochs) else ("-", "-")
            cells[2:2] = [f"{p[0]}%"]
            cells[4:4] = [f"{p[1]}%"]
        rows.append(cells)
    if published_epochs:
        header = [
            "epoch",
            "train acc",
            "published",
            "val acc",
            "published",
            "train loss",
            "val loss",
        ]
    doc.table(header, rows)
    table = [["test accuracy", f"**{percent(summary['test_acc'])}**"]]
    if plan is not first:
        gain = summary["test_acc"] - s.runs[first.name]["summary"]["test_acc"]
        table.append([f"gain over {the(first.label())}", f"{points(gain)} points"])
    if pub and plan.name in ("base", "improved"):
        table[0].append(f"{pub[f'{plan.name}_test']}%")
        if len(table) > 1:
            table[1].append(f"+{pub['improved_test'] - pub['base_test']:.2f} points")
    doc.table(["", "measured", "published"] if pub else ["", "measured"], table)
    if plan is not first:
        doc.text(model_evidence(s.out, s.study, first.name, plan.name))
    s.figure(
        doc,
        Path(run["run_dir"]) / "curves.png",
        f"curves_{plan.name}",
        f"{plan.label()} (lr {run['config']['lr']:g}, seed {run['config']['seed']}): loss and "
        "accuracy per epoch",
    )
    doc.code(command(run["run_dir"]))


def learning_rates(doc: Report, s: Study) -> None:
    swept = [m for m in s.spec.models if m.lrs]
    if not swept:
        return
    s.heading(doc, "Learning-rate study")
    text = (
        "Loss stability counts the epochs in which the validation loss rose, and the largest rise."
    )
    if s.published:
        text = (
            "Published: lr 0.01 converges slowly (about 5 points worse for the improved CNN), "
            "0.03 is best for both models, 0.05 is unstable with a fluctuating loss. " + text
        )
    doc.text(text)
    for m in swept:
        rows = [
            [
                row["lr"] if "seed" not in row else f"{row['lr']} (seed {row['seed']})",
                percent(row["final_val_acc"]),
                percent(row["best_val_acc"]),
                percent(row["test_acc"]),
                row["val_loss_rises"],
                f"{row['largest_val_loss_rise']:.3f}",
            ]
            for row in s.results[f"lr_{m.name}"]["rows"]
        ]
        doc.text(f"**{m.label()}**")
        header = ["lr", "final val acc", "best val acc", "test acc"]
        doc.table(header + ["val loss rises", "largest rise"], rows)
        s.figure(
            doc,
            s.out / f"lr-{m.name}.png",
            f"lr_{m.name}",
            f"{m.label()}: validation accuracy and loss per lr",
        )
        doc.text(lr_evidence(s.out, s.results[f"lr_{m.name}"], m.name))


def epoch_study(doc: Report, s: Study) -> None:
    if not s.spec.epoch_study:
        return
    e = s.results["epochs"]
    plan = s.spec.plan(s.spec.epoch_study["model"])
    cfg = s.runs[plan.name]["config"]
    s.heading(doc, "Epoch study")
    after = e["val_loss_rises_after"]
    schedule_note = (
        f" The longer run has its own {cfg['schedule']} learning-rate schedule over all "
        f"{count(e['epochs'], 'epoch')}, so its epoch {cfg['epochs']} is not the end of the "
        f"{cfg['epochs']}-epoch run."
        if cfg["schedule"] != "constant"
        else ""
    )
    plural = "s" if len(after) > 1 else ""
    rises = (
        f"is higher at epoch{plural} {', '.join(map(str, after))}"
        if after
        else ("is not beaten later")
    )
    published = ""
    if s.published:
        published = (
            f" Published: 4 epochs, validation loss rising from epoch "
            f"{s.published['overfit_epoch']}."
        )
    per_seed = ""
    if e.get("per_seed"):
        each = ", ".join(f"seed {r['seed']}: {r['best_epoch']}" for r in e["per_seed"])
        per_seed = f" Lowest validation loss per seed: {each}."
    doc.text(
        f"{the(plan.label(), capital=True)} trained for {count(e['epochs'], 'epoch')}: "
        "the validation "
        f"loss is lowest at epoch **{e['best_epoch']}** ({e['best_val_loss']:.4f}) and "
        f"{rises}; {gap_words(e['gap_epoch'])}."
        f"{per_seed}{published}{schedule_note}"
    )
    s.figure(doc, s.out / "epochs.png", "epochs", "epoch study, the lowest validation loss marked")


def seed_sensitivity(doc: Report, s: Study) -> None:
    if not s.spec.seed_study:
        return
    sd = s.results["seeds"]
    st, ps = sd["test_acc"], (s.published or {}).get("seeds")
    s.heading(doc, "Seed sensitivity")
    label = s.spec.plan(s.spec.seed_study["model"]).label()
    doc.text(
        f"{the(label, capital=True)} trained under seeds "
        f"{', '.join(str(r['seed']) for r in sd['rows'])}, its recipe otherwise unchanged:"
    )
    doc.table(
        ["seed", "test accuracy", "test loss"],
        [[row["seed"], percent(row["test_acc"]), f"{row['test_loss']:.4f}"] for row in sd["rows"]],
    )
    ci = f"{percent(st['ci95_low'])} .. {percent(st['ci95_high'])}" if st["ci95_low"] else "-"
    rows = [
        ["mean", f"**{percent(st['mean'])}**"],
        ["sample std", percent(st["std"])],
        ["min .. max", f"{percent(st['min'])} .. {percent(st['max'])}"],
        ["range", f"{100 * st['range']:.2f} points"],
        ["95% CI of the mean", ci],
    ]
    if ps:
        published = [
            f"{ps['mean']}%",
            f"{ps['std']}%",
            f"{ps['min']}% .. {ps['max']}%",
            f"{ps['range']} points",
            "-",
        ]
        rows = [row + [p] for row, p in zip(rows, published, strict=True)]
    doc.table(["statistic", "measured", "published"] if ps else ["statistic", "measured"], rows)
    if len(sd["rows"]) > 1:  # one seed: no figure (experiments.seed_study writes none)
        s.figure(doc, s.out / "seeds.png", "seeds", "test accuracy per seed, with the mean")
