"""`cifarlab audit`: near-duplicates across splits and likely label errors in a trained
run's data (the command; the work is cifarlab.audit)."""

from __future__ import annotations

import click

from cifarlab.cli.options import model_option
from cifarlab.config.choices import AUDIT_SPACES


@click.command()
@click.argument("run", type=click.Path())
@click.option("--out", type=click.Path(), default=None, help="Output folder (default RUN/audit).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The run's data folder (default: the one its config records).",
)
@click.option(
    "--space",
    type=click.Choice(AUDIT_SPACES),
    default="features",
    show_default=True,
    help="Compare images by the run's model's penultimate features, or by pixels.",
)
@click.option(
    "--layer",
    default=None,
    help="The module whose output is the features (default: the input of the last nn.Linear).",
)
@click.option(
    "--folds",
    type=int,
    default=0,
    show_default=True,
    help="Also audit the training labels: K-fold cross-validation, K models trained with "
    "the run's recipe (0: off; it says how long it will take).",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 2),
    default=None,
    help="Cosine distance up to which a pair is a near-duplicate (default: a fifth of the "
    "median distance between a test image and its nearest training image).",
)
@click.option(
    "--neighbours",
    type=click.IntRange(1, 20),
    default=3,
    show_default=True,
    help="Nearest training images written per test image.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@model_option
@click.option("--quiet", is_flag=True, help="No progress bars (--folds).")
def audit(
    run, out, data_dir, space, layer, folds, threshold, neighbours, device, model_ref, quiet
) -> None:
    """What is in a trained run's data: near-duplicates and likely label errors.

    For every test image, its nearest training images and its nearest other test image
    by cosine distance (duplicates.csv); the likely label errors of the test set by
    confident learning (cleanlab) on the model's predictions, and with --folds K of the
    training set too (label_issues.csv); the run's test accuracy on every test image,
    without the near-duplicates and without the label issues (audit.json); figures of the
    closest pairs, of the pairs around the threshold and of the flagged images.
    """
    from cifarlab.audit.run import audit_run, summary_lines

    result, folder = audit_run(
        run,
        out,
        data_dir=data_dir,
        space=space,
        layer=layer,
        folds=folds,
        threshold=threshold,
        neighbours=neighbours,
        device=device,
        model=model_ref,
        progress=not quiet,
    )
    click.echo("\n".join(summary_lines(result)))
    click.echo(
        f"wrote {folder}/duplicates.csv, label_issues.csv, audit.json, duplicates.png, "
        "threshold.png and label_issues.png"
    )
