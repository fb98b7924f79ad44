"""A search's learning curves and parallel coordinates: where values sit on their axes, the
labels they carry, and trials that end at one point named together."""

import pytest

from cifarlab.report import search_figures
from cifarlab.report.search_figures import Axis, TrialCurve


@pytest.fixture
def drawn(monkeypatch):
    """The figure each call draws, kept open for the test to read."""
    figs = []

    def keep(fig, path):
        figs.append(fig)
        return path

    monkeypatch.setattr(search_figures, "save_figure", keep)
    return figs


def test_a_log_axis_places_the_geometric_middle_halfway():
    at, ticks = search_figures._positions(Axis("lr", [0.001, 0.1, 0.01], log=True))
    assert at == pytest.approx([0.0, 1.0, 0.5])
    assert [t for _, t in ticks] == ["0.001", "0.01", "0.1"]
    at, ticks = search_figures._positions(Axis("lr", [0.001, 0.1, 0.01], log=False))
    assert at[2] == pytest.approx(0.009 / 0.099)  # linear: near the bottom
    assert [t for _, t in ticks] == ["0.001", "0.0505", "0.1"]


def test_categories_keep_their_order_and_one_value_sits_in_the_middle():
    at, ticks = search_figures._positions(Axis("optimizer", ["sgd", "adam", "sgd", "muon"]))
    assert at == [0.0, 0.5, 0.0, 1.0] and [t for _, t in ticks] == ["sgd", "adam", "muon"]
    at, ticks = search_figures._positions(Axis("wd", [0.1, 0.1]))
    assert at == [0.5, 0.5] and len(ticks) == 1


def test_curves_name_every_complete_trial_and_join_those_ending_together(drawn, tmp_path):
    curves = [
        TrialCurve(0, [1, 2], [0.3, 0.5], pruned=False),
        TrialCurve(1, [1, 2], [0.4, 0.5], pruned=False),
        TrialCurve(2, [1, 2], [0.2, 0.7], pruned=False),
        TrialCurve(3, [1], [0.1], pruned=True),
    ]
    search_figures.search_curves(curves, "val_acc", tmp_path / "c.png")
    ax = drawn[0].axes[0]
    labels = {t.get_text(): t.get_fontweight() for t in ax.texts}
    assert labels == {"#0, #1": "normal", "#2": "bold"}  # #2 is the best
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "best trial (#2)" and legend[-1].startswith("pruned trial")
    assert ax.get_title() == "Learning curves of the 4 trials (3 complete, 1 pruned)"


def test_parallel_coordinates_label_each_axis_beside_it_and_thicken_the_best(drawn, tmp_path):
    axes = [Axis("lr", [0.01, 0.1, 0.03], log=True), Axis("optimizer", ["sgd", "adam", "sgd"])]
    search_figures.parallel_coordinates(axes, [0.6, 0.4, 0.2], "val_loss", tmp_path / "p.png")
    ax = drawn[0].axes[0]
    widths = [line.get_linewidth() for line in ax.lines if len(line.get_xdata()) == 3]
    assert sorted(widths) == [1.3, 1.3, 2.8] and widths[-1] == 2.8  # loss: lowest is best
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lr", "optimizer", "validation loss"]
    for text in ax.texts:  # every label is left of its axis, on white
        x, _ = text.get_position()
        assert x % 1 == pytest.approx(0.96) and text.get_bbox_patch().get_facecolor()[:3] == (
            1,
            1,
            1,
        )


def test_an_optuna_plot_leaves_the_style_of_later_figures_alone():
    import optuna

    from cifarlab.report.canvas import plt
    from cifarlab.tune.report import _quiet_plot

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    before = plt.rcParams["axes.facecolor"]
    _quiet_plot(optuna.visualization.matplotlib.plot_optimization_history, study)
    plt.close("all")
    assert plt.rcParams["axes.facecolor"] == before  # optuna's "ggplot" is grey
