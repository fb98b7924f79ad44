"""The fast model's training step under several layouts and precisions, side by side.

    python benchmarks/step_variants.py                 # batch 1024, every variant
    python benchmarks/step_variants.py --batch 2000 --variants amp,pure

Each variant times a few SGD steps of the `fast` network on random images after two
untimed ones, in this one process, and prints images per second and the ratio to the
first variant. Variants: amp (bf16 autocast, channels_last: what cifarlab does on a CPU
with native bf16), amp-nchw (the same, NCHW), fp32 (no autocast), pure (weights and
images in bf16, no autocast), amp-compile (torch.compile of the model; its first step
compiles and is reported apart), amp-settled (amp with the whitening bias frozen, as a run
has it after epoch 3: no input gradient for the first block), amp-frozen1 and amp-frozen2
(amp-settled with the first block, or the first two, frozen: the late epochs of
--freeze-from).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifarlab.models.builtin import fast_cnn  # noqa: E402
from cifarlab.training.hardware import cpu_flags, cpu_name  # noqa: E402

VARIANTS = (
    "amp",
    "amp-nchw",
    "fp32",
    "pure",
    "amp-compile",
    "amp-settled",
    "amp-frozen1",
    "amp-frozen2",
)


def time_variant(name: str, batch: int, steps: int) -> tuple[float, float]:
    """(seconds of the first step, images per second over `steps` timed steps)."""
    torch.manual_seed(0)
    layout = torch.contiguous_format if "nchw" in name else torch.channels_last
    model = fast_cnn().to(memory_format=layout)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=layout)
    if name == "pure":
        model, x = model.to(torch.bfloat16), x.bfloat16()
    frozen = {"amp-settled": 0, "amp-frozen1": 1, "amp-frozen2": 2}.get(name)
    if frozen is not None:  # the whitening bias settled, and the first `frozen` blocks
        model.whitening.bias.requires_grad_(False)
        for block in model.blocks[:frozen]:
            block.requires_grad_(False)
    y = torch.randint(0, 10, (batch,))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
    forward = torch.compile(model) if "compile" in name else model

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name.startswith("amp")):
            loss = F.cross_entropy(forward(x).float(), y, label_smoothing=0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return first, batch * steps / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=5, help="timed steps per variant")
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"error: unknown variant(s) {', '.join(unknown)}; choose from {VARIANTS}")
    flags = " ".join(cpu_flags()) or "none listed"
    threads = torch.get_num_threads()
    print(f"CPU {cpu_name()} (flags: {flags}), torch {torch.__version__}, {threads} threads")
    print(f"batch {args.batch}, {args.steps} timed steps per variant")
    first_rate = None
    for name in names:
        first, rate = time_variant(name, args.batch, args.steps)
        first_rate = first_rate or rate
        ratio = rate / first_rate
        print(f"{name:>12}: {rate:7.0f} images/s ({ratio:.2f}x), first step {first:.1f} s")


if __name__ == "__main__":
    main()
