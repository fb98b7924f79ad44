"""cifarlab's fast recipe beside airbench94 (the peer), on the same GPU, in one run.

    python benchmarks/peer_airbench.py --data-dir ../shared/cifar10 --seeds 5
    python benchmarks/peer_airbench.py --data-dir ../shared/cifar10 --seeds 5 --model fast-muon

Installs the peer from the package registry (`pip install airbench==0.1.8 --no-deps`: its
torch is this environment's) unless it is already importable, writes airbench's data files
(cifar10/train.pt and test.pt, in a scratch folder) from the same CIFAR-10 pickles so that
it downloads nothing, and then, after an untimed warm-up of each: airbench's `train94`
followed by its evaluation with test-time augmentation (tta_level 2), and cifarlab's recipe
(benchmarks/time_to_94.py's timing), seed by seed, alternating. Both times cover the
whitening layer's initialization, the training and the final evaluation on all 10,000 test
images; loading and moving the data are excluded for both. airbench runs on CUDA only.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from cifarlab.config.options import resolve  # noqa: E402
from cifarlab.data import load_cifar10  # noqa: E402

PEER = "airbench==0.1.8"


def import_peer():
    """airbench, installed from the registry first if needed (without touching torch)."""
    if importlib.util.find_spec("airbench") is None:
        print(f"installing {PEER} ...", flush=True)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", PEER]
        subprocess.run(cmd, check=True)
    import airbench

    return airbench


def write_peer_data(data, folder: Path) -> None:
    """airbench's cached-dataset files (uint8 NHWC images, labels, class names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train.pt"), ("test", "test.pt")):
        s = getattr(data, split)
        torch.save(
            {
                "images": s.images.permute(0, 2, 3, 1).contiguous(),
                "labels": s.labels,
                "classes": data.classes,
            },
            folder / name,
        )


def time_peer(airbench, seed: int) -> dict:
    torch.manual_seed(seed)
    test_loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model = airbench.train94(verbose=False)
    acc = airbench.evaluate(model, test_loader, tta_level=2)
    torch.cuda.synchronize()
    return {"seed": seed, "test_acc": float(acc), "seconds": time.perf_counter() - t0}


def load_time_to_94():
    spec = importlib.util.spec_from_file_location("time_to_94", HERE / "time_to_94.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--model", default="fast", help="cifarlab's recipe (fast or fast-muon)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("error: airbench's train94 runs on CUDA only, and no GPU is here")
    torch.backends.cudnn.benchmark = True
    t94 = load_time_to_94()
    from cifarlab.config.parse import parse_assignments

    cfg = resolve(None, {"model": args.model, **parse_assignments(args.set)})
    data = load_cifar10(args.data_dir)
    airbench = import_peer()
    scratch = Path(tempfile.mkdtemp(prefix="peer-airbench-"))
    write_peer_data(data, scratch / "cifar10")
    os.chdir(scratch)  # airbench reads ./cifar10/{train,test}.pt
    print("warm-up (untimed) ...", flush=True)
    airbench.warmup94(verbose=False)
    t94.warm_up(cfg, data)
    peer, ours = [], []
    print(f"{'seed':>6}{'airbench94':>14}{'seconds':>9}{cfg.model:>14}{'seconds':>9}")
    for seed in range(args.seeds):
        peer.append(time_peer(airbench, seed))
        ours.append(t94.run_seed(cfg.replace(seed=seed), data))
        a, b = peer[-1], ours[-1]
        print(
            f"{seed:>6}{100 * a['test_acc']:>13.2f}%{a['seconds']:>9.2f}"
            f"{100 * b['test_acc']:>13.2f}%{b['seconds']:>9.2f}",
            flush=True,
        )
    for name, rows in (("airbench94 (airbench 0.1.8, train94)", peer), (cfg.model, ours)):
        accs = [r["test_acc"] for r in rows]
        print(
            f"{name}: {100 * statistics.fmean(accs):.2f}% +- "
            f"{100 * statistics.stdev(accs) if len(accs) > 1 else float('nan'):.2f}, "
            f"mean {statistics.fmean(r['seconds'] for r in rows):.2f} s"
        )
    ratio = statistics.fmean(r["seconds"] for r in ours) / statistics.fmean(
        r["seconds"] for r in peer
    )
    print(
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}: "
        f"cifarlab / airbench time {ratio:.3f}x"
    )


if __name__ == "__main__":
    main()
