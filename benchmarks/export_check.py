"""Check an ONNX export on the whole CIFAR-10 test set: onnxruntime vs PyTorch accuracy.

    python benchmarks/export_check.py RUN --data-dir ../shared/cifar10

Exports RUN with both --input modes into a temporary folder, runs each under onnxruntime
(CPU) on the 10,000 test images and compares accuracy and per-image predictions with
PyTorch in fp32 (the exported graph's precision) and at the run's own precision.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from cifarlab.data import load_cifar10
from cifarlab.evaluate import export
from cifarlab.evaluate import trained as inference


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="run folder or checkpoint")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--batch-size", type=int, default=1000)
    args = p.parse_args()

    data = load_cifar10(args.data_dir)
    labels = data.test.labels.numpy()
    fp32 = inference.load_trained(args.run, device="cpu", precision="fp32")
    torch_preds = inference.evaluate_trained(fp32, data, "full-test")[1].predictions.numpy()
    own = inference.load_trained(args.run, device="cpu")
    own_preds = inference.evaluate_trained(own, data, "full-test")[1].predictions.numpy()
    print(f"PyTorch fp32: accuracy {100 * (torch_preds == labels).mean():.2f}%")
    print(
        f"PyTorch {own.precision} (the run's): accuracy {100 * (own_preds == labels).mean():.2f}%"
    )

    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for kind in export.INPUTS:
            out = Path(tmp) / f"model-{kind}.onnx"
            r = export.export_trained(fp32.ckpt, "onnx", out, kind)
            session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
            t0 = time.perf_counter()
            preds = []
            for start in range(0, len(labels), args.batch_size):
                raw = data.test.images[start : start + args.batch_size]
                x = raw if kind == "raw" else fp32.normalize(raw).contiguous()
                preds.append(session.run(None, {"input": x.numpy()})[0].argmax(1))
            seconds = time.perf_counter() - t0
            preds = np.concatenate(preds)
            acc = (preds == labels).mean()
            differ = int((preds != torch_preds).sum())
            failed |= differ > 0
            print(
                f"ONNX {kind:<10} input: accuracy {100 * acc:.2f}% "
                f"({int((preds == labels).sum())}/{len(labels)}), predictions differing from "
                f"PyTorch fp32: {differ}, from PyTorch {own.precision}: "
                f"{int((preds != own_preds).sum())}; export check max abs diff "
                f"{r['max_abs_diff']:.2e}; onnxruntime {seconds:.2f} s"
            )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
