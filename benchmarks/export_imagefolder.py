"""CIFAR-10 as an ImageFolder of PNG files, and how fast cifarlab reads it back.

    python benchmarks/export_imagefolder.py --data-dir ../shared/cifar10 --out /tmp/cifar10-png

Writes OUT/train/<class>/<index>.png and OUT/test/<class>/<index>.png (60,000 lossless PNG
files, the pixels of the pickles unchanged), then loads the folder with
`load_dataset("imagefolder", OUT)` twice: the first load decodes every file (and writes
the cache next to the data), the second reads the cache. Prints both times and checks
that the folder gives exactly the pickles' images and labels (in the folder's order:
classes sorted by name, files by name within a class).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifarlab.data import load_cifar10, load_dataset  # noqa: E402


def export(data, out: Path) -> None:
    """Every image as OUT/<split>/<class>/<index>.png, written by a pool of threads."""
    jobs = []
    for split in ("train", "test"):
        s = getattr(data, split)
        for name in data.classes:
            (out / split / name).mkdir(parents=True, exist_ok=True)
        images = s.images.permute(0, 2, 3, 1).numpy()
        for i, label in enumerate(s.labels.tolist()):
            jobs.append((out / split / data.classes[label] / f"{i:05d}.png", images[i]))

    def write(job):
        Image.fromarray(np.ascontiguousarray(job[1])).save(job[0])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, jobs, chunksize=256))


def same_as_pickles(data, folder) -> bool:
    """The folder's images are the pickles' (each split reordered by class, then index)."""
    for split in ("train", "test"):
        a, b = getattr(data, split), getattr(folder, split)
        order = torch.argsort(a.labels, stable=True)  # by class, then by index within it
        if not (torch.equal(a.images[order], b.images) and torch.equal(a.labels[order], b.labels)):
            return False
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None, help="CIFAR-10 pickles (default as cifarlab's)")
    p.add_argument("--out", type=Path, required=True, help="the ImageFolder to write")
    p.add_argument("--keep", action="store_true", help="reuse OUT if it exists (no export)")
    args = p.parse_args()
    data = load_cifar10(args.data_dir)
    if not (args.keep and args.out.exists()):
        shutil.rmtree(args.out, ignore_errors=True)
        t0 = time.perf_counter()
        export(data, args.out)
        n = len(data.train) + len(data.test)
        print(f"wrote {n:,} PNG files in {time.perf_counter() - t0:.1f} s")
    for cache in args.out.glob(".cifarlab-imagefolder-*"):
        cache.unlink()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        folder = load_dataset("imagefolder", args.out)
        times.append(time.perf_counter() - t0)
    print(f"first load (decoding {len(folder.train) + len(folder.test):,} files): {times[0]:.1f} s")
    print(f"second load (from the cache {folder.notes['cache']}): {times[1]:.2f} s")
    print(f"same images and labels as the pickles: {same_as_pickles(data, folder)}")


if __name__ == "__main__":
    main()
