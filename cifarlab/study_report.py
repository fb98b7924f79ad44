"""The study's report: every figure and table of the original, measured beside published.

One function per section; each reads what it needs from the study's results (study.json)
and the run folders, and adds its blocks to the Report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.models import REGISTRY
from cifarlab.report import Report
from cifarlab.runs import RunDir
from cifarlab.study import STEPS


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _command(run_dir: str) -> str:
    summary = RunDir(run_dir).summary() or {}
    return f"{summary['command']} --data-dir DATA --out {run_dir}"


@dataclass
class Study:
    """What the sections read: the study's results, the published numbers, the folder,
    and the runs of the base and improved CNN (config, summary, metrics)."""

    out: Path
    study: dict[str, Any]
    base: dict[str, Any]
    improved: dict[str, Any]

    @classmethod
    def read(cls, out: Path, study: dict[str, Any]) -> Study:
        r = study["results"]
        base = RunDir(r["base"]["rows"][0]["run_dir"]).load()
        improved = RunDir(r["improved"]["rows"][0]["run_dir"]).load()
        return cls(Path(out), study, base, improved)

    @property
    def results(self) -> dict[str, Any]:
        return self.study["results"]

    @property
    def published(self) -> dict[str, Any]:
        return self.study["published"]


def build_report(out: Path, study: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.md and report.html into `out`; return their paths."""
    s = Study.read(out, study)
    doc = Report("CNN image classification on CIFAR-10: the study, reproduced by cifarlab")
    for section in (
        introduction,
        steps_table,
        dataset_analysis,
        normalization,
        validation_split,
        base_cnn,
        learning_rates,
        epoch_study,
        improved_cnn,
        seed_sensitivity,
        reproduce,
    ):
        section(doc, s)
    return doc.write(Path(out))


def introduction(doc: Report, s: Study) -> None:
    if s.study["quick"]:
        plan = s.study["plan"]

        def changes(model: str) -> str:
            return ", ".join(f"{k} {v}" for k, v in plan[model].items())

        doc.text(
            "**Quick study**: the same pipeline on a small subset with few epochs (base CNN: "
            f"{changes('base')}; improved CNN: {changes('improved')}, lr sweep "
            f"{', '.join(map(str, plan['improved_lrs']))}). Its numbers show that the tool "
            "works, not what the models reach; run `cifarlab study` without `--quick` for "
            "those."
        )
    env = s.base["summary"]
    doc.text(
        f"Environment: {env['device']} ({env['device_name']}), precision {env['precision']}, "
        f"{env['threads']} threads, torch {env['torch_version']}, cifarlab "
        f"{env['cifarlab_version']}, Python {env['python_version']}. Accuracies are on the "
        f"study's test split (half of the CIFAR-10 test set; the other half is validation) "
        f"unless said otherwise."
    )


def steps_table(doc: Report, s: Study) -> None:
    doc.heading("Steps and wall time")
    runs = s.study.get("step_runs", {})  # absent from study.json files written before it

    def run_counts(key: str) -> str:
        trained, reused = runs.get(key, (0, 0))
        if not trained + reused:
            return "-"
        return f"{trained} trained" + (f", {reused} reused" if reused else "")

    rows = [[STEPS[k], _clock(v), run_counts(k)] for k, v in s.study["step_seconds"].items()]
    rows.append(["**total**", f"**{_clock(s.study['total_seconds'])}**", ""])
    doc.table(["step", "wall time", "runs"], rows)
    cb, ci = s.base["config"], s.improved["config"]
    doc.text(
        f"A run that an earlier step already trained with the same config is reused, not "
        f"trained again: the base CNN's run is the lr {cb['lr']} point of its sweep and "
        f"seed {cb['seed']} of the seed study; the improved CNN's is the lr {ci['lr']} point "
        f"of its sweep."
    )


def dataset_analysis(doc: Report, s: Study) -> None:
    a, adir = s.results["analysis"], s.out / "analysis"
    b, c = a["before_conversion"], a["after_conversion"]
    doc.heading("1. Dataset analysis")
    doc.text(
        f"Training set {a['train_size']:,} images, test set {a['test_size']:,}; "
        f"{a['num_classes']} classes; images {a['image_shape']} (channels, height, width), "
        f"{a['elements_per_image']:,} elements; {b['dtype']} in [{b['min']}, {b['max']}] "
        f"before conversion, {c['dtype']} in [{c['min']:.1f}, {c['max']:.1f}] after. "
        f"Published: 50,000 / 10,000, 5,000 per class in training."
    )
    counts = zip(a["classes"], a["train_class_counts"], a["test_class_counts"], strict=True)
    doc.table(["class", "train", "test"], [[c, f"{tr:,}", f"{te:,}"] for c, tr, te in counts])
    doc.figure(adir / "samples_train.png", "Figure 1: one sample image per class, training set")
    doc.figure(adir / "samples_test.png", "Figure 2: one sample image per class, test set")
    doc.figure(adir / "class_distribution_test.png", "Figure 3: class distribution, test set")
    doc.figure(adir / "class_distribution_train.png", "Figure 4: class distribution, training set")


def normalization(doc: Report, s: Study) -> None:
    a, pub = s.results["analysis"], s.published
    doc.heading("2. Normalization")
    rows = [
        [
            ch,
            f"{a['mean'][i]:.4f}",
            f"{pub['mean'][i]:.4f}",
            f"{a['std'][i]:.4f}",
            f"{pub['std'][i]:.4f}",
            f"{abs(a['normalized_mean'][i]):.4f}",
            f"{a['normalized_std'][i]:.4f}",
        ]
        for i, ch in enumerate(a["channel_order"])
    ]
    header = ["channel", "mean", "published", "std", "published"]
    doc.table(header + ["normalized mean", "normalized std"], rows)


def validation_split(doc: Report, s: Study) -> None:
    cb = s.base["config"]
    doc.heading("3. Validation split")
    doc.text(
        f"As in the study, the test set is split with a fixed seed ({cb['split_seed']}) "
        f"into a validation set and a new test set, half and half "
        f"(`--val-from {cb['val_from']}`). `--val-from train` carves the validation set "
        f"from the training set instead."
    )


def _architecture(run: dict[str, Any]) -> str:
    """The model's description from the registry, and its parameter count."""
    name = run["config"]["model"]
    spec = REGISTRY.get(name)
    text = spec.description if spec else name
    return f"{text[0].upper()}{text[1:]}; {run['summary']['parameters']:,} parameters."


def base_cnn(doc: Report, s: Study) -> None:
    cb, sb, pub = s.base["config"], s.base["summary"], s.published
    doc.heading("4. Base CNN")
    doc.text(
        f"{_architecture(s.base)} Recipe: SGD lr {cb['lr']}, momentum {cb['momentum']}, batch "
        f"{cb['batch_size']}, {cb['epochs']} epochs, schedule {cb['schedule']}, augmentation "
        f"{cb['augment']}, seed {cb['seed']} (the study states lr and epochs only)."
    )
    rows = []
    for i, row in enumerate(s.base["metrics"]):
        p = pub["base_epochs"][i] if i < len(pub["base_epochs"]) else ("-", "-")
        rows.append(
            [row["epoch"], pct(row["train_acc"]), f"{p[0]}%", pct(row["val_acc"]), f"{p[1]}%",
             f"{row['train_loss']:.4f}", f"{row['val_loss']:.4f}"]
        )  # fmt: skip
    header = ["epoch", "train acc", "published", "val acc", "published"]
    doc.table(header + ["train loss", "val loss"], rows)
    doc.table(
        ["", "measured", "published"],
        [["test accuracy", f"**{pct(sb['test_acc'])}**", f"{pub['base_test']}%"]],
    )
    run_dir = s.base["run_dir"]
    doc.figure(Path(run_dir) / "curves.png", "Figure 6: base CNN, loss and accuracy per epoch")
    doc.code(_command(run_dir))


def learning_rates(doc: Report, s: Study) -> None:
    doc.heading("5. Learning-rate study")
    doc.text(
        "Published: lr 0.01 converges slowly (about 5 points worse for the improved CNN), "
        "0.03 is best for both models, 0.05 is unstable with a fluctuating loss. Loss "
        "stability counts the epochs in which the validation loss rose, and the largest rise."
    )
    for key, model in (("lr_base", "base"), ("lr_improved", "improved")):
        rows = [
            [
                row["lr"], pct(row["final_val_acc"]), pct(row["best_val_acc"]),
                pct(row["test_acc"]), row["val_loss_rises"], f"{row['largest_val_loss_rise']:.3f}",
            ]
            for row in s.results[key]["rows"]
        ]  # fmt: skip
        doc.text(f"**{model} CNN**")
        header = ["lr", "final val acc", "best val acc", "test acc"]
        doc.table(header + ["val loss rises", "largest rise"], rows)
        figure = s.out / f"lr-{model}.png"
        doc.figure(figure, f"{model} CNN: validation accuracy and loss per lr")


def epoch_study(doc: Report, s: Study) -> None:
    e, cb = s.results["epochs"], s.base["config"]
    doc.heading("6. Epoch study")
    after = e["val_loss_rises_after"]
    schedule_note = (
        f" The longer run has its own {cb['schedule']} learning-rate schedule over all "
        f"{e['epochs']} epochs, so its epoch {cb['epochs']} is not the end of the "
        f"{cb['epochs']}-epoch run."
        if cb["schedule"] != "constant"
        else ""
    )
    plural = "s" if len(after) > 1 else ""
    rises = f"is higher at epoch{plural} {', '.join(map(str, after))}" if after else (
        "is not beaten later"
    )  # fmt: skip
    doc.text(
        f"The base CNN trained for {e['epochs']} epochs: the validation loss is lowest at "
        f"epoch **{e['best_epoch']}** ({e['best_val_loss']:.4f}) and {rises}; "
        f"the train/validation accuracy gap opens for good at epoch {e['gap_epoch'] or '-'}. "
        f"Published: 4 epochs, validation loss rising from epoch "
        f"{s.published['overfit_epoch']}.{schedule_note}"
    )
    doc.figure(s.out / "epochs.png", "Figure 5: epoch study, the lowest validation loss marked")


def improved_cnn(doc: Report, s: Study) -> None:
    ci, si, pub = s.improved["config"], s.improved["summary"], s.published
    doc.heading("7. Improved CNN")
    doc.text(
        f"{_architecture(s.improved)} Recipe: SGD lr {ci['lr']}, momentum {ci['momentum']} "
        f"(Nesterov {ci['nesterov']}), weight decay {ci['weight_decay']}, batch "
        f"{ci['batch_size']}, {ci['epochs']} epochs, schedule {ci['schedule']} (warm-up "
        f"{ci['warmup_epochs']} epochs), augmentation {ci['augment']}."
    )
    gain = 100 * (si["test_acc"] - s.base["summary"]["test_acc"])
    doc.table(
        ["", "measured", "published"],
        [
            ["test accuracy", f"**{pct(si['test_acc'])}**", f"{pub['improved_test']}%"],
            [
                "gain over the base CNN",
                f"{gain:+.2f} points",
                f"+{pub['improved_test'] - pub['base_test']:.2f} points",
            ],
        ],
    )
    run_dir = s.improved["run_dir"]
    doc.figure(Path(run_dir) / "curves.png", "Figure 7: improved CNN, loss and accuracy")
    doc.code(_command(run_dir))


def seed_sensitivity(doc: Report, s: Study) -> None:
    sd = s.results["seeds"]
    st, ps = sd["test_acc"], s.published["seeds"]
    doc.heading("8. Seed sensitivity")
    doc.table(
        ["seed", "test accuracy", "test loss"],
        [[row["seed"], pct(row["test_acc"]), f"{row['test_loss']:.4f}"] for row in sd["rows"]],
    )
    ci = f"{pct(st['ci95_low'])} .. {pct(st['ci95_high'])}" if st["ci95_low"] else "-"
    doc.table(
        ["statistic", "measured", "published"],
        [
            ["mean", f"**{pct(st['mean'])}**", f"{ps['mean']}%"],
            ["sample std", pct(st["std"]), f"{ps['std']}%"],
            [
                "min .. max",
                f"{pct(st['min'])} .. {pct(st['max'])}",
                f"{ps['min']}% .. {ps['max']}%",
            ],
            ["range", f"{100 * st['range']:.2f} points", f"{ps['range']} points"],
            ["95% CI of the mean", ci, "-"],
        ],
    )
    doc.figure(s.out / "seeds.png", "Figure 8: test accuracy per seed, with the mean")


def reproduce(doc: Report, s: Study) -> None:
    doc.heading("Reproduce")
    doc.text("Each run, by the command that reproduces it (DATA: your CIFAR-10 folder):")
    r = s.results
    seen = [row["run_dir"] for k in ("base", "improved", "seeds") for row in r[k]["rows"]]
    seen += [row["run_dir"] for k in ("lr_base", "lr_improved") for row in r[k]["rows"]]
    seen.append(r["epochs"]["run_dir"])
    doc.code("\n".join(_command(d) for d in dict.fromkeys(seen)))
