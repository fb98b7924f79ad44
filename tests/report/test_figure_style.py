"""The one figure style: dot plots with intervals cut to the metric's range, series told
apart by colour and marker, legends that match, vector formats on request."""

import matplotlib.pyplot as plt
import pytest

from cifarlab.errors import CifarlabError
from cifarlab.report import figures, style

FAMILIES = {"gaussian_noise": "noise", "fog": "weather"}


@pytest.fixture
def drawn(monkeypatch):
    """The figures a function draws, kept open instead of written."""
    kept = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: kept.append(fig) or path)
    yield kept
    plt.close("all")


def test_seed_results_is_a_dot_plot_with_the_mean_and_its_interval(drawn, tmp_path):
    rows = [{"seed": s, "test_acc": a} for s, a in [(1, 0.72), (2, 0.71), (3, 0.73)]]
    figures.seed_results(rows, {"mean": 0.72, "ci95_low": 0.695, "ci95_high": 0.745}, tmp_path)
    ax = drawn[0].axes[0]
    assert not [p for p in ax.patches if isinstance(p, plt.Rectangle)]  # no bars
    assert ax.get_title() == "Test accuracy over 3 seeds: mean 72.00% (95% CI 69.50-74.50%)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "mean"]


def test_group_intervals_are_cut_to_the_metric_range_and_marked(drawn, tmp_path):
    groups = [
        {"name": "one", "values": [0.5], "mean": 0.5, "ci95": None},
        {"name": "two", "values": [0.01, 0.05], "mean": 0.03, "ci95": (-0.2, 0.26)},
    ]
    figures.group_comparison(groups, "test_acc", tmp_path)
    ax = drawn[0].axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["one\n(1 run: no interval)", "two"]
    bar = ax.containers[0]  # the one error bar: cut at 0%, not at -20%
    segment = bar.lines[2][0].get_segments()[0]
    assert segment[0][1] == pytest.approx(0.0) and segment[1][1] == pytest.approx(26.0)
    assert "cut there" in ax.get_title() and ax.get_ylabel() == "test accuracy (%)"


def test_robustness_models_differ_in_colour_and_the_legend_names_them(drawn, tmp_path):
    def result(clean):
        runs = {"1": clean - 0.1, "2": clean - 0.2}
        return {
            "clean_acc": clean,
            "families": FAMILIES,
            "corruptions": dict.fromkeys(FAMILIES, runs),
        }

    figures.robustness_curves({"base": result(0.7), "improved": result(0.8)}, tmp_path, "t")
    fig = drawn[0]
    colours = {line.get_color() for line in fig.axes[0].get_lines()}
    assert colours == {style.PALETTE[0], style.PALETTE[1]}
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["base", "improved"]
    assert [h.get_color() for h in legend.legend_handles] == [style.PALETTE[0], style.PALETTE[1]]


def test_series_are_told_apart_by_marker_as_well_as_colour():
    looks = [style.series(k) for k in range(len(style.PALETTE))]
    assert len({s["color"] for s in looks}) == len({s["marker"] for s in looks}) == len(looks)


def test_vector_formats_are_written_beside_the_png(tmp_path, monkeypatch):
    monkeypatch.setenv(style.FORMATS_VAR, "png")  # restored after the test
    assert style.set_formats("svg,pdf") == ("png", "svg", "pdf")
    figures.class_distribution([3, 5], ["a", "b"], "images per class", tmp_path / "c.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pdf", "c.png", "c.svg"]
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "c.pdf").read_bytes()[:5] == b"%PDF-"


def test_an_image_grid_keeps_its_own_layout_in_every_format(tmp_path, monkeypatch):
    """The grid places its one Axes itself: saving it as SVG after PNG must not switch
    matplotlib's constrained layout back on (it warned, and moved nothing, on every study
    run with --figure-format)."""
    import warnings

    import torch

    from cifarlab.report.image_figures import image_grid

    monkeypatch.setenv(style.FORMATS_VAR, "png,svg,pdf")
    images = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image_grid(images, ["a\nb"] * 3, tmp_path / "g.png", "three images")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pdf", "g.png", "g.svg"]


def test_a_format_cifarlab_cannot_write_is_refused_in_one_line():
    with pytest.raises(CifarlabError, match=r"--figure-format 'jpg': choose from png, svg, pdf"):
        style.parse_formats("svg,jpg")


def test_metric_labels_say_what_and_in_which_unit():
    assert figures.metric_label("test_acc") == "test accuracy (%)"
    assert figures.metric_label("val_loss") == "validation loss"


def test_the_command_line_writes_vector_figures_when_asked(tmp_path, monkeypatch, cifar_dir):
    from conftest import cli

    monkeypatch.setenv(style.FORMATS_VAR, "png")  # restored after the test
    out = tmp_path / "a"
    code = cli(
        monkeypatch, "--figure-format", "svg", "analyze", "--data-dir", cifar_dir, "--out", out
    )
    assert code == 0
    pngs = sorted(p.stem for p in out.rglob("*.png"))
    assert pngs and pngs == sorted(p.stem for p in out.rglob("*.svg"))
    assert cli(monkeypatch, "--figure-format", "jpg", "analyze", "--out", tmp_path / "b") == 2
