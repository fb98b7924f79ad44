"""Where a training step's time goes, against the machine's FLOP ceiling.

    python benchmarks/step_ceiling.py [--model base] [--batch-size 32] [--precision fp32]

Counts the FLOPs of one training step (forward and backward, torch.utils.flop_counter),
measures this machine's matrix-multiply rate at the same precision (a 2048x2048 matmul:
about the best any kernel here reaches), times the step as cifarlab runs it (channels_last,
oneDNN) and as a plain NCHW model would (all three in turns, medians of --rounds, so that
a noisy machine slows them alike), and profiles the step per operator. Prints the
achieved GFLOP/s, the fraction of the matmul rate, and the images/s a step would reach at
that rate: the ceiling of any speed-up that keeps the model, batch and precision. Random
data: no dataset needed. Uses this process's torch threads (set OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifarlab.models.registry import build_model  # noqa: E402
from cifarlab.training.hardware import autocast  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_matmul(precision: str, n: int = 2048):
    """One n x n matmul at this precision: 2 n^3 FLOPs."""
    a = torch.randn(n, n, dtype=DTYPES[precision])
    b = torch.randn(n, n, dtype=DTYPES[precision])
    return lambda: a @ b


def make_step(model_name: str, batch: int, precision: str, layout: torch.memory_format):
    torch.manual_seed(0)
    model = build_model(model_name).to(memory_format=layout)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        with autocast(torch.device("cpu"), precision):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def step_flops(step) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def interleaved(steps: dict[str, callable], rounds: int, per_round: int = 5) -> dict[str, float]:
    """Median seconds per step of each, timed in turns (so that load changes hit all)."""
    for step in steps.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for _ in range(per_round):
                step()
            times[name].append((time.perf_counter() - t0) / per_round)
    return {k: statistics.median(v) for k, v in times.items()}


def profile(step, n: int = 20, rows: int = 8) -> str:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="base")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--rounds", type=int, default=8)
    args = p.parse_args()
    b, prec = args.batch_size, args.precision
    steps = {
        "channels_last (cifarlab)": make_step(args.model, b, prec, torch.channels_last),
        "NCHW (plain)": make_step(args.model, b, prec, torch.contiguous_format),
    }
    flops = step_flops(steps["NCHW (plain)"]) / b
    seconds = interleaved({**steps, "matmul": make_matmul(prec)}, args.rounds)
    peak = 2 * 2048**3 / seconds.pop("matmul") / 1e9
    print(profile(steps["channels_last (cifarlab)"]))
    print(
        f"{args.model} CNN, batch {b}, {prec}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"training FLOPs per image: {flops / 1e9:.3f} GFLOP (forward and backward)")
    print(f"matmul rate: {peak:.1f} GFLOP/s -> ceiling {peak * 1e9 / flops:.0f} images/s")
    for name, s in seconds.items():
        rate = flops * b / s / 1e9
        print(
            f"  {name:<26} {b / s:6.0f} images/s  {rate:6.1f} GFLOP/s  "
            f"{rate / peak:5.1%} of the matmul rate"
        )


if __name__ == "__main__":
    main()
