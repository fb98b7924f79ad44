"""Time to 94%: the `fast` recipe trained under several seeds, accuracy and wall time.

    python benchmarks/time_to_94.py --data-dir ../shared/cifar10 --seeds 3
    python benchmarks/time_to_94.py --data-dir ../shared/cifar10 --limit 2000 --epochs 1  # smoke
    python benchmarks/time_to_94.py --data-dir ../shared/cifar10 --compare --seeds 5
        # fast (SGD, 10 epochs) against fast-muon (Muon, 8 epochs), seed by seed
    python benchmarks/time_to_94.py --data-dir ../shared/cifar10 --model fast-muon \
        --seeds 1 --margins 1,0.5,0.3,0.1,0   # the same weights at each --tta-margin

Each seed trains `cifarlab train --model fast` with its default recipe (any train option
can be overridden with --set NAME=VALUE, e.g. --set tta=none --set lookahead=false) with
the same Trainer that `cifarlab train` uses, and is evaluated on the whole test set
(10,000 images) with the recipe's test-time augmentation. The time of a seed covers the
whitening layer's initialization, every training epoch and the final evaluation; reading
the data from disk and moving it to the device are excluded, as are checkpoints and run
folders (nothing is written). On CUDA an untimed warm-up epoch runs first (kernel
selection, allocator) and cuDNN's autotuner is on.

Prints each seed's test accuracy and seconds, then the mean and sample standard deviation
of the accuracy, the mean time, the device, torch version and precision. For the record,
each seed's weights are also evaluated without test-time augmentation, after the clock
has stopped ("no TTA").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifarlab import register_model  # noqa: E402
from cifarlab.config.options import resolve  # noqa: E402
from cifarlab.config.parse import parse_assignments  # noqa: E402
from cifarlab.config.recipes import RECIPES  # noqa: E402
from cifarlab.data import load_cifar10, make_splits  # noqa: E402
from cifarlab.errors import CifarlabError  # noqa: E402
from cifarlab.models.builtin import FastNet, fast_cnn  # noqa: E402
from cifarlab.models.registry import REGISTRY  # noqa: E402
from cifarlab.training.hardware import CPU_FLAGS  # noqa: E402
from cifarlab.training.trainer import Trainer  # noqa: E402

TARGET = 0.94


def fast_networks() -> list[str]:
    """The registered models that build the fast network: those --widths can narrow."""
    return [name for name in REGISTRY if REGISTRY.find(name).build is fast_cnn]


def with_widths(model: str, widths: str) -> str:
    """Register `model`'s network at other block widths ("64,192,192") in this process,
    under a name of its own (e.g. fast-cpu-w64-192-192) with `model`'s recipe, as the
    built-in fast-muon and fast-cpu share fast's network; return that name."""
    if model not in fast_networks():
        raise SystemExit(f"error: --widths needs one of {', '.join(fast_networks())}, not {model}")
    try:
        w = tuple(int(x) for x in widths.split(","))
    except ValueError:
        w = ()
    if len(w) != 3 or min(w) < 1:
        raise SystemExit(f"error: --widths {widths!r}: three whole numbers, e.g. 64,192,192")
    name = f"{model}-w{'-'.join(map(str, w))}"

    @register_model(name, f"{model}'s network at block widths {w}")
    def build(num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> FastNet:
        return FastNet(num_classes, widths=w, in_channels=in_channels, image_size=image_size)

    RECIPES[name] = RECIPES[model]
    return name


def margin_rows(trainer: Trainer, margins: list[float]) -> list[dict]:
    """The same weights evaluated on the test set at each --tta-margin, each timed alone
    (after the seed's clock has stopped)."""
    rows = []
    for m in margins:
        t0 = time.perf_counter()
        r = trainer.evaluate("test", tta_margin=m)
        trainer.hw.synchronize()
        rows.append({"margin": m, "test_acc": r.acc, "eval_seconds": time.perf_counter() - t0})
    return rows


def run_seed(cfg, data, margins: list[float] | None = None, save: Path | None = None) -> dict:
    splits = make_splits(data, **cfg.split_args())
    trainer = Trainer(cfg, splits, progress=False)  # data to the device: untimed
    trainer.hw.synchronize()
    t0 = time.perf_counter()
    whiten = trainer.prepare()
    for _ in range(cfg.epochs):
        trainer.train_epoch()
    t_train = time.perf_counter()
    test = trainer.evaluate("test")
    trainer.hw.synchronize()
    t1 = time.perf_counter()
    # untimed, for the record: the same weights without test-time augmentation
    plain = trainer.evaluate("test", tta="none") if cfg.tta != "none" else test
    hardware = trainer.hw.describe()
    extra = {"margins": margin_rows(trainer, margins)} if margins else {}
    if save is not None:  # the trained weights, to evaluate other ways later
        save.mkdir(parents=True, exist_ok=True)
        torch.save(trainer.model.state_dict(), save / f"{cfg.model}-seed{cfg.seed}.pt")
    return {
        **extra,
        "seed": cfg.seed,
        "test_acc": test.acc,
        "test_loss": test.loss,
        "test_acc_without_tta": plain.acc,
        "test_images": int(test.confusion.sum()),
        "seconds": t1 - t0,
        "whiten_seconds": whiten,
        "train_seconds": t_train - t0 - whiten,
        "eval_seconds": t1 - t_train,
        "device": hardware["device_name"],
        "precision": trainer.precision.name,
        "hardware": hardware,  # the CPU's name and flags (bf16 or not) too
    }


def warm_up(cfg, data) -> None:
    """One untimed epoch and evaluation (CUDA: kernel selection, allocator, compilation)."""
    print(f"warm-up of {cfg.model} (untimed) ...", flush=True)
    warm = cfg.replace(seed=10_000)
    trainer = Trainer(warm, make_splits(data, **warm.split_args()), progress=False)
    trainer.prepare()
    trainer.train_epoch()
    trainer.evaluate("test")


def summarize(cfg, rows: list[dict]) -> dict:
    accs = [r["test_acc"] for r in rows]
    return {
        "model": cfg.model,
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("seed", "data_dir")},
        "seeds": [r["seed"] for r in rows],
        "mean_test_acc": statistics.fmean(accs),
        "std_test_acc": statistics.stdev(accs) if len(accs) > 1 else float("nan"),
        "mean_test_acc_without_tta": statistics.fmean(r["test_acc_without_tta"] for r in rows),
        "mean_seconds": statistics.fmean(r["seconds"] for r in rows),
        "test_images": rows[0]["test_images"],
        "device": rows[0]["device"],
        "precision": rows[0]["precision"],
        "torch_version": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "cpu": rows[0]["hardware"]["cpu"],
        "cpu_flags": rows[0]["hardware"]["cpu_flags"],
        "cpu_native_bf16": rows[0]["hardware"]["cpu_native_bf16"],
        "mean_whiten_seconds": statistics.fmean(r["whiten_seconds"] for r in rows),
        "mean_train_seconds": statistics.fmean(r["train_seconds"] for r in rows),
        "mean_eval_seconds": statistics.fmean(r["eval_seconds"] for r in rows),
        "rows": rows,
    }


def report(s: dict, epochs: int) -> None:
    mean, std = s["mean_test_acc"], s["std_test_acc"]
    print(
        f"{s['model']}, {epochs} epoch(s), {len(s['rows'])} seeds, {s['test_images']:,} test "
        f"images: test accuracy {100 * mean:.2f}% +- {100 * std:.2f} (sample std); mean time "
        f"{s['mean_seconds']:.2f} s (whitening + training + evaluation); without TTA "
        f"{100 * s['mean_test_acc_without_tta']:.2f}% (untimed); mean "
        f"{'reaches' if mean >= TARGET else 'is below'} 94%"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default as cifarlab's)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ...)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--model", default="fast")
    p.add_argument(
        "--compare",
        nargs="?",
        const="fast,fast-muon",
        default=None,
        metavar="A,B",
        help="time several recipes side by side, seed by seed (default: fast,fast-muon)",
    )
    p.add_argument("--epochs", type=int, default=None, help="override the recipes' epochs")
    p.add_argument("--limit", type=int, default=None, help="train on the first N images only")
    p.add_argument("--eval-limit", type=int, default=None, help="test on N images only")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument(
        "--widths",
        default=None,
        metavar="A,B,C",
        help="train --model's network (fast, fast-muon, fast-cpu) at these block widths "
        "instead of 64,256,256, with the same recipe (not with --compare)",
    )
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up on CUDA")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument(
        "--margins",
        default=None,
        metavar="M,M",
        help="after the clock, evaluate the same weights at each --tta-margin M (e.g. "
        "1,0.3,0.1,0: TTA for all, for the unsure, for none) and time each",
    )
    p.add_argument(
        "--save-weights",
        type=Path,
        default=None,
        metavar="DIR",
        help="after the clock, save each seed's weights (state_dict) in DIR as MODEL-seedN.pt",
    )
    args = p.parse_args()

    models = args.compare.split(",") if args.compare else [args.model]
    if args.widths:
        if args.compare:
            raise SystemExit("error: --widths takes one --model, not --compare")
        models[0] = with_widths(args.model, args.widths)
    flags = {
        "epochs": args.epochs,
        "limit": args.limit,
        "eval_limit": args.eval_limit,
        "device": args.device,
        "precision": args.precision,
    }
    try:
        margins = [float(m) for m in args.margins.split(",")] if args.margins else None
    except ValueError:
        raise SystemExit(f"error: --margins {args.margins!r}: numbers with commas") from None
    try:
        extra = parse_assignments(args.set)
        configs = [resolve(None, {**flags, **extra, "model": m}) for m in models]
    except CifarlabError as e:
        raise SystemExit(f"error: {e}") from None
    data = load_cifar10(args.data_dir)
    if configs[0].device != "cpu" and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        for cfg in configs if not args.no_warmup else []:
            warm_up(cfg, data)
    rows: dict[str, list[dict]] = {c.model: [] for c in configs}
    print(
        f"{'recipe':>10}{'seed':>6}{'test acc':>10}{'seconds':>9}{'whiten':>8}{'train':>8}"
        f"{'eval':>7}{'no TTA':>9}"
    )
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for cfg in configs:  # seed by seed, so that both see the same machine conditions
            r = run_seed(cfg.replace(seed=seed), data, margins, args.save_weights)
            rows[cfg.model].append(r)
            print(
                f"{cfg.model:>10}{seed:>6}{100 * r['test_acc']:>9.2f}%{r['seconds']:>9.2f}"
                f"{r['whiten_seconds']:>8.2f}{r['train_seconds']:>8.2f}{r['eval_seconds']:>7.2f}"
                f"{100 * r['test_acc_without_tta']:>8.2f}%",
                flush=True,
            )
            for m in r.get("margins", []):
                print(
                    f"{'':>16}--tta-margin {m['margin']:<5g} test acc {100 * m['test_acc']:.2f}%"
                    f", evaluation {m['eval_seconds']:.2f} s (untimed)",
                    flush=True,
                )
    summaries = [summarize(cfg, rows[cfg.model]) for cfg in configs]
    print()
    for cfg, s in zip(configs, summaries, strict=True):
        report(s, cfg.epochs)
    s0 = summaries[0]
    bf16 = "native bf16" if s0["cpu_native_bf16"] else "no native bf16"
    print(
        f"device {s0['device']}, {s0['precision']}, torch {s0['torch_version']}, "
        f"{s0['threads']} threads; CPU {s0['cpu']} ({bf16}; flags: "
        f"{' '.join(s0['cpu_flags']) or 'none of ' + ' '.join(CPU_FLAGS)})"
    )
    for s in summaries[1:]:
        print(f"time {s['model']} / {s0['model']}: {s['mean_seconds'] / s0['mean_seconds']:.3f}x")
    if args.json:
        out = summaries[0] if len(summaries) == 1 else {"compare": summaries}
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
