"""Test-time augmentation view sets, compared on one trained fast network's weights.

    python benchmarks/time_to_94.py --data-dir DATA --model fast-cpu --seeds 1 --save-weights W
    python benchmarks/tta_views.py W/fast-cpu-seed0.pt --data-dir DATA

Computes the logits of every view of the CIFAR-10 test set once (the image shifted by up to
two pixels with reflect padding, and its mirror), then the test accuracy of several ways of
averaging them, for every image (--tta-margin 1) and for the unsure images only (those
whose two most likely classes in the plain view differ in probability by less than
--margin; the others keep their plain logits), as cifarlab's evaluation does. "airbench6"
is cifarlab's flip-translate (airbench's tta_level=2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifarlab.config.options import resolve  # noqa: E402
from cifarlab.data import Normalize, load_cifar10, make_splits  # noqa: E402
from cifarlab.models.builtin import fast_cnn  # noqa: E402
from cifarlab.training.hardware import cpu_name  # noqa: E402

DIAGONAL = [(-1, -1), (1, 1), (-1, 1), (1, -1)]
STRAIGHT = [(0, -1), (0, 1), (-1, 0), (1, 0)]


def shift(x: torch.Tensor, dy: int, dx: int, pad: int = 2) -> torch.Tensor:
    """The batch moved by (dy, dx) pixels, reflect padding."""
    h, w = x.shape[-2:]
    p = F.pad(x, (pad,) * 4, mode="reflect")[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return p.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def view_logits(model, images: torch.Tensor, shifts, batch: int) -> dict:
    """(dy, dx, mirrored) -> the logits of the images shifted by (dy, dx), mirrored or not."""
    out = {}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for dy, dx in shifts:
            for mirrored in (False, True):
                views = (shift(x, dy, dx) for x in images.split(batch))
                views = (v.flip(-1) if mirrored else v for v in views)
                out[(dy, dx, mirrored)] = torch.cat([model(v).float() for v in views])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", type=Path, help="a state_dict of the fast network (--save-weights)")
    p.add_argument("--data-dir", default=None, help="CIFAR-10 folder (default as cifarlab's)")
    p.add_argument("--margin", type=float, default=0.3, help="the unsure images' margin")
    p.add_argument("--batch", type=int, default=250)
    args = p.parse_args()

    cfg = resolve(None, {"model": "fast-cpu"})
    splits = make_splits(load_cifar10(args.data_dir), **cfg.split_args())
    normalize = Normalize.fit(splits.train.images)
    model = fast_cnn().to(memory_format=torch.channels_last)
    model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    model.eval()
    images = normalize(splits.test.images).contiguous(memory_format=torch.channels_last)
    labels = splits.test.labels
    t0 = time.perf_counter()
    shifts = [(0, 0), *DIAGONAL, *STRAIGHT, (-2, -2), (2, 2)]
    logits = view_logits(model, images, shifts, args.batch)
    plain = logits[(0, 0, False)]
    # (dy, dx) -> the mean of the shifted images' logits and of their mirrors'
    v = {s: 0.5 * (logits[(*s, False)] + logits[(*s, True)]) for s in shifts}
    print(f"{len(logits)} views of {len(labels):,} images in {time.perf_counter() - t0:.0f} s")
    print(f"CPU {cpu_name()}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    sets = {
        "none (plain view)": plain,
        "airbench6: mirror 0.5, two diagonal shifts 0.25 each": 0.5 * v[(0, 0)]
        + 0.25 * (v[(-1, -1)] + v[(1, 1)]),
        "ten: mirror 0.5, four diagonal shifts 0.125 each": 0.5 * v[(0, 0)]
        + 0.125 * sum(v[s] for s in DIAGONAL),
        "ten: mirror 0.5, four straight shifts 0.125 each": 0.5 * v[(0, 0)]
        + 0.125 * sum(v[s] for s in STRAIGHT),
        "eighteen: mirror 0.5, eight shifts 0.0625 each": 0.5 * v[(0, 0)]
        + 0.0625 * sum(v[s] for s in DIAGONAL + STRAIGHT),
        "eighteen, equal weights": sum(v[s] for s in [(0, 0), *DIAGONAL, *STRAIGHT]) / 9,
        "airbench6 and two-pixel diagonal shifts (0.4, 0.2, 0.2, 0.1, 0.1)": 0.4 * v[(0, 0)]
        + 0.2 * (v[(-1, -1)] + v[(1, 1)])
        + 0.1 * (v[(-2, -2)] + v[(2, 2)]),
    }
    top2 = plain.softmax(1).topk(2, dim=1).values
    unsure = (top2[:, 0] - top2[:, 1]) < args.margin
    print(f"unsure at margin {args.margin:g}: {unsure.float().mean():.1%} of the test images")
    print(f"{'views':<70}{'every image':>13}{'unsure only':>13}")
    for name, out in sets.items():
        every = (out.argmax(1) == labels).float().mean()
        some = (torch.where(unsure.unsqueeze(1), out, plain).argmax(1) == labels).float().mean()
        print(f"{name:<70}{100 * every:>12.2f}%{100 * some:>12.2f}%")


if __name__ == "__main__":
    main()
