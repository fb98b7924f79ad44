"""Training throughput: cifarlab's engine against a plain PyTorch loop, same model.

    python benchmarks/train_speed.py --data-dir ../shared/cifar10 [--model base] [--images N]
        [--batch-size B] [--precision fp32|bf16]

The plain loop is what a notebook does: a Dataset that turns each image into a PIL image,
ToTensor() and Normalize() one image at a time, a DataLoader at batch 32, fp32, SGD.
cifarlab runs its default recipe for the model (uint8 data in memory, whole-batch
normalization, channels_last, bf16 autocast where the CPU has it). Each side trains one
pass over N training images (default: all 50,000) in its own process, so that peak memory
(max RSS) is measured separately. Prints both throughputs and their ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def run_cifarlab(args) -> dict:
    from cifarlab.config.options import resolve
    from cifarlab.data import load_cifar10, make_splits
    from cifarlab.training.trainer import Trainer

    data = load_cifar10(args.data_dir)
    flags = {"model": args.model, "limit": args.images, "epochs": 1}
    if args.batch_size:
        flags["batch_size"] = args.batch_size
    if args.precision:
        flags["precision"] = args.precision
    cfg = resolve(None, flags)
    trainer = Trainer(cfg, make_splits(data, **cfg.split_args()), progress=False)
    row = trainer.train_epoch()
    return {
        "images": len(trainer.splits.train),
        "seconds": row["seconds"],
        "batch_size": cfg.batch_size,
        "precision": trainer.precision.name,
    }


def run_plain(args) -> dict:
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from cifarlab.data import channel_stats, load_cifar10
    from cifarlab.models.registry import build_model

    data = load_cifar10(args.data_dir)
    images = data.train.images[: args.images]
    labels = data.train.labels[: args.images]
    mean, std = channel_stats(images)
    hwc = images.permute(0, 2, 3, 1).numpy()

    class PlainCifar(Dataset):
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

        def __len__(self):
            return len(hwc)

        def __getitem__(self, i):
            return self.tf(Image.fromarray(np.ascontiguousarray(hwc[i]))), int(labels[i])

    torch.manual_seed(0)
    model = build_model(args.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = DataLoader(PlainCifar(), batch_size=32, shuffle=True, num_workers=0)
    t0 = time.perf_counter()
    model.train()
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {
        "images": len(hwc),
        "seconds": time.perf_counter() - t0,
        "batch_size": 32,
        "precision": "fp32",
    }


def child(args) -> None:
    result = run_cifarlab(args) if args.mode == "cifarlab" else run_plain(args)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--model", default="base")
    p.add_argument("--images", type=int, default=50000, help="training images per side")
    p.add_argument("--batch-size", type=int, help="cifarlab's batch (default: the recipe's)")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="cifarlab's (default: auto)")
    p.add_argument("--mode", choices=["cifarlab", "plain"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.mode:
        return child(args)
    results = {}
    for mode in ("plain", "cifarlab"):
        cmd = [sys.executable, __file__, "--mode", mode, "--model", args.model]
        cmd += ["--images", str(args.images)]
        if args.batch_size:
            cmd += ["--batch-size", str(args.batch_size)]
        if args.precision:
            cmd += ["--precision", args.precision]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        print(f"running {mode} ...", flush=True)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[mode] = r = json.loads(out.strip().splitlines()[-1])
        r["images_per_second"] = r["images"] / r["seconds"]
    print(
        f"\n{args.model} CNN, one pass over {results['plain']['images']:,} images, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'':<10}{'batch':>6}{'precision':>10}{'seconds':>9}{'images/s':>10}{'peak MiB':>10}")
    for mode, r in results.items():
        print(
            f"{mode:<10}{r['batch_size']:>6}{r['precision']:>10}{r['seconds']:>9.1f}"
            f"{r['images_per_second']:>10,.0f}{r['peak_rss_mib']:>10,.0f}"
        )
    ratio = results["cifarlab"]["images_per_second"] / results["plain"]["images_per_second"]
    print(f"speed-up: {ratio:.2f}x")


if __name__ == "__main__":
    main()
