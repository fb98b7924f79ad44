"""The study's report: every figure and table of the original, measured beside published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.report import Report
from cifarlab.runs import read_json, read_jsonl

STEP_TITLES = {
    "analysis": "dataset analysis",
    "base": "base CNN",
    "lr_base": "learning-rate sweep, base CNN",
    "lr_improved": "learning-rate sweep, improved CNN",
    "epochs": "epoch study",
    "improved": "improved CNN",
    "seeds": "seed sensitivity",
}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _command(run_dir: str) -> str:
    summary = read_json(Path(run_dir) / "summary.json")
    return f"{summary['command']} --data-dir DATA --out {run_dir}"


def build_report(out: Path, study: dict[str, Any]) -> tuple[Path, Path]:
    out = Path(out)
    r, pub = study["results"], study["published"]
    base_run = r["base"]["rows"][0]["run_dir"]
    improved_run = r["improved"]["rows"][0]["run_dir"]
    env = read_json(Path(base_run) / "summary.json")
    cfg_base = read_json(Path(base_run) / "config.json")
    cfg_improved = read_json(Path(improved_run) / "config.json")

    doc = Report("CNN image classification on CIFAR-10: the study, reproduced by cifarlab")
    if study["quick"]:
        doc.text(
            "**Quick study**: the same pipeline on a small subset with few epochs. Its numbers "
            "show that the tool works, not what the models reach; run `cifarlab study` "
            "without `--quick` for those."
        )
    doc.text(
        f"Environment: {env['device']} ({env['device_name']}), precision {env['precision']}, "
        f"{env['threads']} threads, torch {env['torch_version']}, cifarlab "
        f"{env['cifarlab_version']}, Python {env['python_version']}. Accuracies are on the "
        f"study's test split (half of the CIFAR-10 test set; the other half is validation) "
        f"unless said otherwise."
    )
    doc.heading("Steps and wall time")
    runs = study.get("step_runs", {})  # absent from study.json files written before it

    def run_counts(key: str) -> str:
        trained, reused = runs.get(key, (0, 0))
        if not trained + reused:
            return "-"
        return f"{trained} trained" + (f", {reused} reused" if reused else "")

    rows = [[STEP_TITLES[k], _clock(v), run_counts(k)] for k, v in study["step_seconds"].items()]
    rows.append(["**total**", f"**{_clock(study['total_seconds'])}**", ""])
    doc.table(["step", "wall time", "runs"], rows)
    doc.text(
        f"A run that an earlier step already trained with the same config is reused, not "
        f"trained again: the base CNN's run is the lr {cfg_base['lr']} point of its sweep and "
        f"seed {cfg_base['seed']} of the seed study; the improved CNN's is the lr "
        f"{cfg_improved['lr']} point of its sweep."
    )

    # 1-2. dataset analysis and normalization
    a = r["analysis"]
    adir = out / "analysis"
    doc.heading("1. Dataset analysis")
    doc.text(
        f"Training set {a['train_size']:,} images, test set {a['test_size']:,}; "
        f"{a['num_classes']} classes; images {a['image_shape']} (channels, height, width), "
        f"{a['elements_per_image']:,} elements; {a['before_conversion']['dtype']} in "
        f"[{a['before_conversion']['min']}, {a['before_conversion']['max']}] before conversion, "
        f"{a['after_conversion']['dtype']} in [{a['after_conversion']['min']:.1f}, "
        f"{a['after_conversion']['max']:.1f}] after. Published: 50,000 / 10,000, 5,000 per "
        f"class in training."
    )
    doc.table(
        ["class", "train", "test"],
        [
            [c, f"{tr:,}", f"{te:,}"]
            for c, tr, te in zip(
                a["classes"], a["train_class_counts"], a["test_class_counts"], strict=True
            )
        ],
    )
    doc.figure(adir / "samples_train.png", "Figure 1: one sample image per class, training set")
    doc.figure(adir / "samples_test.png", "Figure 2: one sample image per class, test set")
    doc.figure(adir / "class_distribution_test.png", "Figure 3: class distribution, test set")
    doc.figure(adir / "class_distribution_train.png", "Figure 4: class distribution, training set")
    doc.heading("2. Normalization")
    doc.table(
        ["channel", "mean", "published", "std", "published", "normalized mean", "normalized std"],
        [
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
        ],
    )
    doc.heading("3. Validation split")
    doc.text(
        f"As in the study, the test set is split with a fixed seed ({cfg_base['split_seed']}) "
        f"into a validation set and a new test set, half and half "
        f"(`--val-from {cfg_base['val_from']}`). `--val-from train` carves the validation set "
        f"from the training set instead."
    )

    # 4-5. base CNN
    doc.heading("4. Base CNN")
    m = read_jsonl(Path(base_run) / "metrics.jsonl")
    s = read_json(Path(base_run) / "summary.json")
    doc.text(
        f"Conv(3->32) Conv(32->64) ReLU MaxPool | Conv(64->128) Conv(128->128) ReLU MaxPool | "
        f"Linear(3200->10); {s['parameters']:,} parameters. Recipe: SGD lr {cfg_base['lr']}, "
        f"momentum {cfg_base['momentum']}, batch {cfg_base['batch_size']}, "
        f"{cfg_base['epochs']} epochs, schedule {cfg_base['schedule']}, augmentation "
        f"{cfg_base['augment']}, seed {cfg_base['seed']} (the study states lr and epochs only)."
    )
    rows = []
    for i, row in enumerate(m):
        p = pub["base_epochs"][i] if i < len(pub["base_epochs"]) else ("-", "-")
        rows.append(
            [row["epoch"], pct(row["train_acc"]), f"{p[0]}%", pct(row["val_acc"]), f"{p[1]}%",
             f"{row['train_loss']:.4f}", f"{row['val_loss']:.4f}"]
        )  # fmt: skip
    doc.table(
        ["epoch", "train acc", "published", "val acc", "published", "train loss", "val loss"],
        rows,
    )
    doc.table(
        ["", "measured", "published"],
        [["test accuracy", f"**{pct(s['test_acc'])}**", f"{pub['base_test']}%"]],
    )
    doc.figure(Path(base_run) / "curves.png", "Figure 6: base CNN, loss and accuracy per epoch")
    doc.code(_command(base_run))

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
            for row in r[key]["rows"]
        ]  # fmt: skip
        doc.text(f"**{model} CNN**")
        doc.table(
            ["lr", "final val acc", "best val acc", "test acc", "val loss rises", "largest rise"],
            rows,
        )
        name = "lr-base" if model == "base" else "lr-improved"
        doc.figure(out / f"{name}.png", f"{model} CNN: validation accuracy and loss per lr")

    e = r["epochs"]
    doc.heading("6. Epoch study")
    after = e["val_loss_rises_after"]
    schedule_note = (
        f" The longer run has its own {cfg_base['schedule']} learning-rate schedule over all "
        f"{e['epochs']} epochs, so its epoch {cfg_base['epochs']} is not the end of the "
        f"{cfg_base['epochs']}-epoch run."
        if cfg_base["schedule"] != "constant"
        else ""
    )
    plural = "s" if len(after) > 1 else ""
    rises = (
        f"is higher at epoch{plural} {', '.join(map(str, after))}"
        if after
        else "is not beaten later"
    )
    doc.text(
        f"The base CNN trained for {e['epochs']} epochs: the validation loss is lowest at "
        f"epoch **{e['best_epoch']}** ({e['best_val_loss']:.4f}) and {rises}; "
        f"the train/validation accuracy gap opens for good at epoch "
        f"{e['gap_epoch'] or '-'}. Chosen epoch count: **{e['chosen_epochs']}**. Published: "
        f"4 epochs, validation loss rising from epoch {pub['overfit_epoch']}.{schedule_note}"
    )
    doc.figure(out / "epochs.png", "Figure 5: epoch study, the lowest validation loss marked")

    doc.heading("7. Improved CNN")
    si = read_json(Path(improved_run) / "summary.json")
    doc.text(
        f"Three blocks (3->64->128, 128->256->256, 256->512) of 3x3 convs with padding 1, "
        f"BatchNorm and GELU, MaxPool and Dropout(0.2) after each block, 8192 -> 1024 -> 10; "
        f"Kaiming initialization; {si['parameters']:,} parameters. Recipe: SGD lr "
        f"{cfg_improved['lr']}, momentum {cfg_improved['momentum']} (Nesterov "
        f"{cfg_improved['nesterov']}), weight decay {cfg_improved['weight_decay']}, batch "
        f"{cfg_improved['batch_size']}, {cfg_improved['epochs']} epochs, schedule "
        f"{cfg_improved['schedule']} (warm-up {cfg_improved['warmup_epochs']} epochs), "
        f"augmentation {cfg_improved['augment']}."
    )
    doc.table(
        ["", "measured", "published"],
        [
            ["test accuracy", f"**{pct(si['test_acc'])}**", f"{pub['improved_test']}%"],
            [
                "gain over the base CNN",
                f"{100 * (si['test_acc'] - s['test_acc']):+.2f} points",
                f"+{pub['improved_test'] - pub['base_test']:.2f} points",
            ],
        ],
    )
    doc.figure(Path(improved_run) / "curves.png", "Figure 7: improved CNN, loss and accuracy")
    doc.code(_command(improved_run))

    sd = r["seeds"]
    st = sd["test_acc"]
    doc.heading("8. Seed sensitivity")
    doc.table(
        ["seed", "test accuracy", "test loss"],
        [[row["seed"], pct(row["test_acc"]), f"{row['test_loss']:.4f}"] for row in sd["rows"]],
    )
    ps = pub["seeds"]
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
    doc.figure(out / "seeds.png", "Figure 8: test accuracy per seed, with the mean")

    doc.heading("Reproduce")
    doc.text("Each run, by the command that reproduces it (DATA: your CIFAR-10 folder):")
    seen = []
    for k in ("base", "improved", "seeds"):
        seen += [row["run_dir"] for row in r[k]["rows"]]
    for k in ("lr_base", "lr_improved"):
        seen += [row["run_dir"] for row in r[k]["rows"]]
    seen.append(e["run_dir"])
    doc.code("\n".join(_command(d) for d in dict.fromkeys(seen)))
    return doc.write(out)
