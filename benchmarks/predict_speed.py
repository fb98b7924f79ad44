"""Time `cifarlab predict` on the 10,000 CIFAR-10 test images saved as PNG files, and check it.

    python benchmarks/predict_speed.py RUN --data-dir ../shared/cifar10 [--pngs /tmp/pngs]
                                       [--batch-size 1000]

Writes the test images as PNG files (00000.png ... 09999.png, test-set order) if they are
missing, runs `cifarlab predict RUN PNGS --json --batch-size B` as a user would (the wall
time includes starting Python and importing torch), then checks that each file's predicted
class equals the one `cifarlab evaluate RUN --split full-test` gives on the in-memory test
set (same precision; with B = the run's eval batch size the batches are the same too).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from cifarlab.data import load_cifar10
from cifarlab.evaluate import trained as inference


def write_pngs(images, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)

    def save(i: int) -> None:
        Image.fromarray(images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(save, range(len(images))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder or checkpoint")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--pngs", default="/tmp/pngs", help="folder of the PNG files")
    p.add_argument("--batch-size", type=int, default=1000)
    args = p.parse_args()

    data = load_cifar10(args.data_dir)
    pngs = Path(args.pngs)
    if len(list(pngs.glob("*.png"))) != len(data.test):
        t0 = time.perf_counter()
        write_pngs(data.test.images, pngs)
        print(f"wrote {len(data.test):,} PNG files to {pngs} in {time.perf_counter() - t0:.1f} s")

    exe = shutil.which("cifarlab") or "cifarlab"
    cmd = [exe, "predict", args.run, str(pngs), "--json", "--batch-size", str(args.batch_size)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"predict failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    print(f"$ cifarlab predict {args.run} {pngs} --json --batch-size {args.batch_size}")
    print(f"  {len(rows):,} files in {wall:.2f} s wall: {len(rows) / wall:,.0f} files/s")

    t = inference.load_trained(args.run)
    report, result = inference.evaluate_trained(t, data, "full-test")
    by_file = {Path(r["file"]).name: r["index"] for r in rows}
    predicted = [by_file.get(f"{i:05d}.png") for i in range(len(data.test))]
    differ = sum(a != b for a, b in zip(predicted, result.predictions.tolist(), strict=True))
    acc = sum(a == y for a, y in zip(predicted, data.test.labels.tolist(), strict=True))
    print(
        f"  evaluate --split full-test ({t.precision}, batch {report['batch_size']}): "
        f"accuracy {100 * report['accuracy']:.2f}%; predict on the PNG files: "
        f"{100 * acc / len(data.test):.2f}%; predictions that differ: {differ}"
    )
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
