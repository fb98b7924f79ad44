"""Dataset analysis (study steps 1-2): composition, format, per-channel statistics."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from cifarlab.data import Dataset, Normalize, channel_histograms, load_dataset, moments, to_unit
from cifarlab.files import write_json
from cifarlab.report import figures as plots
from cifarlab.report import image_figures
from cifarlab.runs.folder import make_dir, new_run_dir


def channel_names(n: int) -> list[str]:
    return (
        ["red", "green", "blue"]
        if n == 3
        else ["grey"]
        if n == 1
        else [f"channel {i}" for i in range(n)]
    )


def class_counts(labels: torch.Tensor, n_classes: int) -> list[int]:
    return torch.bincount(labels, minlength=n_classes).tolist()


def analyze(data: Dataset) -> dict:
    """Everything the study reports about the dataset, as a JSON-ready dict.

    uint8 pixels take only 256 values, so every statistic is computed exactly from one
    histogram per channel: the moments of the [0, 1] values, and the moments of the values
    that `Normalize` produces for each of the 256 levels (the normalized training set).
    """
    train = data.train.images
    n_channels = train.shape[1]
    hist = channel_histograms(train)
    levels = torch.arange(256, dtype=torch.uint8)
    unit = to_unit(levels).expand(n_channels, 256)
    mean, std = moments(hist, unit)
    as_image = levels.view(1, 1, 1, 256).expand(1, n_channels, 1, 256)
    normalized = Normalize(mean, std)(as_image).reshape(n_channels, 256)
    norm_mean, norm_std = moments(hist, normalized)
    present = (hist.sum(dim=0) > 0).nonzero().flatten()
    lo, hi = int(present.min()), int(present.max())
    return {
        "dataset": data.name,
        "data_dir": str(data.root),
        "train_size": len(data.train),
        "test_size": len(data.test),
        "classes": data.classes,
        "num_classes": len(data.classes),
        "train_class_counts": class_counts(data.train.labels, len(data.classes)),
        "test_class_counts": class_counts(data.test.labels, len(data.classes)),
        "image_shape": list(train.shape[1:]),
        "elements_per_image": int(train[0].numel()),
        "channel_order": channel_names(n_channels),
        "before_conversion": {"dtype": "uint8", "min": lo, "max": hi},
        "after_conversion": {
            "dtype": "float32",
            "min": float(to_unit(torch.tensor(lo, dtype=torch.uint8))),
            "max": float(to_unit(torch.tensor(hi, dtype=torch.uint8))),
        },
        "mean": mean,
        "std": std,
        "normalized_mean": norm_mean,
        "normalized_std": norm_std,
    }


def format_table(result: dict) -> str:
    """A readable summary of `analyze` for the terminal."""
    b, a = result["before_conversion"], result["after_conversion"]
    w = max(12, 1 + max(map(len, result["classes"])))
    lines = [
        f"{result.get('dataset', 'cifar10')} at {result['data_dir']}",
        f"  train images   {result['train_size']:>7,}    test images {result['test_size']:>7,}",
        f"  image shape    {tuple(result['image_shape'])} (C, H, W), "
        f"{result['elements_per_image']:,} elements",
        f"  before         {b['dtype']} in [{b['min']}, {b['max']}]",
        f"  after          {a['dtype']} in [{a['min']:.1f}, {a['max']:.1f}]",
        "",
        f"  {'class':<{w}}{'train':>8}{'test':>8}",
    ]
    for name, tr, te in zip(
        result["classes"], result["train_class_counts"], result["test_class_counts"], strict=True
    ):
        lines.append(f"  {name:<{w}}{tr:>8,}{te:>8,}")
    lines += ["", f"  {'channel':<10}{'mean':>9}{'std':>9}{'norm mean':>12}{'norm std':>10}"]
    for i, ch in enumerate(result["channel_order"]):
        nm = result["normalized_mean"][i]
        nm = 0.0 if abs(nm) < 5e-5 else nm  # print -0.0000 as 0.0000
        lines.append(
            f"  {ch:<10}{result['mean'][i]:>9.4f}{result['std'][i]:>9.4f}"
            f"{nm:>12.4f}{result['normalized_std'][i]:>10.4f}"
        )
    return "\n".join(lines)


FIGURES = (
    "samples_train.png",
    "samples_test.png",
    "class_distribution_train.png",
    "class_distribution_test.png",
)


def write_analysis(data: Dataset, out: Path) -> dict:
    """analyze() into out/analysis.json, plus the four figures of the study's steps 1-2."""
    out = Path(out)
    make_dir(out)
    t0 = time.perf_counter()
    result = analyze(data)
    result["seconds_statistics"] = round(time.perf_counter() - t0, 3)
    write_json(out / "analysis.json", result)
    for split in ("train", "test"):
        s = getattr(data, split)
        image_figures.sample_grid(
            s.images,
            s.labels,
            data.classes,
            f"Sample images: {split}",
            out / f"samples_{split}.png",
        )
        plots.class_distribution(
            result[f"{split}_class_counts"],
            data.classes,
            f"Class distribution: {split}",
            out / f"class_distribution_{split}.png",
        )
    return result


def analyze_command(data_args: dict, out: str | Path | None) -> tuple[dict, Path, float]:
    """`cifarlab analyze`: load the dataset (first: bad data leaves no empty run folder),
    then write the analysis into `out` (default runs/analyze-<time>). The result, the folder and
    the seconds the loading took."""
    t0 = time.perf_counter()
    data = load_dataset(**data_args)
    seconds = time.perf_counter() - t0
    run_dir = new_run_dir(out, "analyze")
    return write_analysis(data, run_dir), run_dir, seconds
