"""Time loading CIFAR-10 from disk and computing the dataset statistics.

    python benchmarks/load_speed.py --data-dir ../shared/cifar10 [--repeat 5]

Prints the best and median of REPEAT timings for each (the goal: load under 3 s,
statistics well under 1 s on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cifarlab.data import load_cifar10
from cifarlab.study import analysis


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    loads, stats = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        data = load_cifar10(args.data_dir)
        loads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        analysis.analyze(data)
        stats.append(time.perf_counter() - t0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeat} runs")
    for name, xs in (("load", loads), ("statistics", stats)):
        print(f"{name:<11} best {min(xs):.3f} s   median {statistics.median(xs):.3f} s")


if __name__ == "__main__":
    main()
