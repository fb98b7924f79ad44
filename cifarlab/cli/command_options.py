"""The options of one command each: train's run options, study's, export's, evaluate's and
tune's, stacked from the shared ones in cli/options.py and the library's choice lists.
"""

from __future__ import annotations

import click

from cifarlab.cli.options import config_option, stacked
from cifarlab.config.choices import (
    BACKENDS,
    EXPORT_FORMATS,
    EXPORT_INPUTS,
    TUNE_METRICS,
    TUNE_PRUNERS,
    TUNE_SAMPLERS,
)

train_run_options = stacked(
    config_option("YAML or TOML file of train options; flags override it."),
    click.option(
        "--out", type=click.Path(), default=None, help="Run folder (default runs/train-<time>)."
    ),
    click.option(
        "--resume",
        type=click.Path(file_okay=False),
        default=None,
        help="Continue the interrupted run in this folder, with its own config.",
    ),
    click.option("--quiet", is_flag=True, help="No progress bar (the per-epoch lines remain)."),
    click.option(
        "--backend",
        type=click.Choice(["auto", *BACKENDS]),
        default="auto",
        show_default=True,
        help="Under torchrun: the process group's backend (auto: nccl on CUDA, gloo on CPUs).",
    ),
    click.option(
        "--dist-timeout",
        type=click.FloatRange(min=1),
        default=600,
        show_default=True,
        help="Under torchrun: seconds a process waits for the others before giving up.",
    ),
)

study_options = stacked(
    click.option(
        "--out",
        type=click.Path(),
        default="runs/study",
        show_default=True,
        help="Study folder; running again reuses its finished runs.",
    ),
    click.option(
        "--spec",
        "spec_file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Your study as a YAML file (dataset, models and their recipes, lrs, seeds, epoch "
        "study); `--print-spec` shows the form. Default: the original study.",
    ),
    click.option(
        "--print-spec",
        is_flag=True,
        help="Print the study that would run (the original, or --spec) as YAML, and stop.",
    ),
    click.option(
        "--quick",
        is_flag=True,
        help="The original study on a small subset with few epochs (a smoke test).",
    ),
    click.option(
        "--seeds-per-config",
        type=click.IntRange(1),
        default=None,
        help="Seeds per configuration in the learning-rate and epoch steps (default: the "
        "spec's, 1 in the original): with 2 or more the report says which differences are "
        "beyond the seed-to-seed spread (paired t-tests, Holm-adjusted).",
    ),
)

export_options = stacked(
    click.option(
        "--format",
        "fmt",
        type=click.Choice(EXPORT_FORMATS),
        default="onnx",
        show_default=True,
    ),
    click.option(
        "--input",
        "input_kind",
        type=click.Choice(EXPORT_INPUTS),
        default="normalized",
        show_default=True,
        help="normalized: float32 NCHW, normalized with the checkpoint's mean/std. "
        "raw: uint8 NCHW in 0..255, the normalization inside the exported model.",
    ),
    click.option(
        "--out",
        type=click.Path(),  # a folder gets export.check_destination's one-line error
        default=None,
        help="File to write (default next to the checkpoint: model[-raw].onnx or "
        "model[-raw].torchscript.pt).",
    ),
)


evaluate_options = stacked(
    click.option(
        "--temperature",
        is_flag=True,
        help="Fit one temperature on the run's validation split (never the test "
        "split) by minimizing NLL, and report calibration before and after.",
    ),
    click.option(
        "--mistakes",
        type=click.IntRange(0),
        default=32,
        show_default=True,
        help="mistakes.png: this many most confident mistakes (0: none).",
    ),
    click.option(
        "--gradcam",
        type=click.IntRange(0),
        default=0,
        metavar="N",
        help="gradcam.png: Grad-CAM maps of the first N images, for the predicted "
        "and the true class.",
    ),
    click.option(
        "--layer",
        default=None,
        metavar="NAME",
        help="With --gradcam: the convolutional layer to explain (default: the "
        "last one that trains).",
    ),
    click.option(
        "--corruptions",
        default=None,
        metavar="all|NAME[,NAME...]",
        help="robustness.json/png: accuracy on the test images under CIFAR-10-C's "
        "corruptions, generated here (cached); with --dataset cifar10-c, on the "
        "official files (default there: all).",
    ),
    click.option(
        "--severities",
        default="1-5",
        show_default=True,
        metavar="RANGE|LIST",
        help="With --corruptions: severities 1..5, a range (1-5) or a list (1,3,5).",
    ),
)

tune_options = stacked(
    click.option(
        "--param",
        "params",
        multiple=True,
        metavar="NAME=SPEC",
        help="A searched train option (repeat for several): NAME=log:LOW:HIGH, "
        "uniform:LOW:HIGH, int:LOW:HIGH or choice:A,B,...; e.g. --param lr=log:0.001:0.1.",
    ),
    click.option(
        "--trials",
        type=int,
        default=20,
        show_default=True,
        help="Trials to finish (complete or pruned), counting those of an earlier run of the "
        "same search in --out.",
    ),
    click.option(
        "--sampler",
        type=click.Choice(TUNE_SAMPLERS),
        default="tpe",
        show_default=True,
        help="How trials are drawn (seeded by --seed): Optuna's TPE, at random, or every "
        "point of the grid of choice/int parameters.",
    ),
    click.option(
        "--pruner",
        type=click.Choice(TUNE_PRUNERS),
        default="median",
        show_default=True,
        help="Which trials stop early, after any epoch: below the median of earlier trials at "
        "that epoch (after 5 trials), successive halving, Hyperband, or none.",
    ),
    click.option(
        "--metric",
        type=click.Choice(list(TUNE_METRICS)),
        default="val_acc",
        show_default=True,
        help="What is chosen on, on the validation split (the test split never is).",
    ),
    click.option(
        "--confirm-seeds",
        type=click.IntRange(0),
        default=0,
        show_default=True,
        help="Then train the best config and the recipe with this many fresh seeds and "
        "compare their test accuracy.",
    ),
    config_option("YAML or TOML file of the fixed train options; flags override it."),
    click.option(
        "--out",
        type=click.Path(),
        default=None,
        help="Search folder (default runs/tune-<time>); run the command again with the same --out "
        "to continue the search.",
    ),
)
