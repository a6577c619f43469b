"""safety_by_category.png: a model at 0.0 is visible, a category a model lacks says n/a, the legend sits
outside the bars, and the bars of each group run top-down in legend order (checked on the figure's artists)."""

import pytest

from safealign.evaluation.bars import safety_bar_chart, safety_bar_figure

BY_MODEL = {
    "base": {"violence": {"rate": 0.0, "ci95": [0.0, 0.2]}, "weapons": {"rate": 0.3, "ci95": [0.1, 0.5]},
             "privacy": {"rate": 1.0, "ci95": [0.8, 1.0]}},
    "aligned": {"violence": {"rate": 0.6, "ci95": [0.4, 0.8]}, "weapons": {"rate": 0.9, "ci95": [0.7, 0.97]},
                "privacy": {"rate": 1.0, "ci95": [0.8, 1.0]}},
    "distilled": {"violence": {"rate": 0.5, "ci95": [0.3, 0.7]}, "weapons": {"rate": None, "ci95": None}},
}


@pytest.fixture
def fig():
    import matplotlib.pyplot as plt

    f = safety_bar_figure(BY_MODEL)
    f.canvas.draw()
    yield f
    plt.close(f)


def _bars(ax, i):
    from matplotlib.container import BarContainer

    return [c for c in ax.containers if isinstance(c, BarContainer)][i].patches


def _bar_centres(ax, i):
    """Display-space (x_end, y_centre) of model i's bars."""
    out = []
    for patch in _bars(ax, i):
        x, y = ax.transData.transform((patch.get_x() + patch.get_width(), patch.get_y() + patch.get_height() / 2))
        out.append((x, y))
    return out


def test_a_rate_of_zero_is_drawn(fig):
    ax = fig.axes[0]
    [marker] = [ln for ln in ax.get_lines() if ln.get_gid() == "marker:base"]
    cats = [t.get_text() for t in ax.get_yticklabels()]
    assert cats == ["privacy", "violence", "weapons"]
    xs = list(marker.get_xdata())
    assert xs[cats.index("violence")] == 0.0 and marker.get_markersize() > 0 and marker.get_marker() == "D"
    assert ax.get_xlim()[0] < 0.0 < 1.0 < ax.get_xlim()[1]  # the marker at 0 (and at 1) is inside the axes


def test_missing_category_is_marked_not_zero(fig):
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts if t.get_gid() == "missing:distilled"] == ["n/a", "n/a"]  # privacy, weapons
    assert len(_bars(ax, 2)) == 1  # distilled: one bar (violence), none drawn as 0


def test_legend_is_outside_the_bars(fig):
    ax = fig.axes[0]
    legend = ax.get_legend()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1
    assert [t.get_text() for t in legend.get_texts()] == list(BY_MODEL)


def test_bars_run_top_down_in_legend_order(fig):
    ax = fig.axes[0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    cats = [t.get_text() for t in ax.get_yticklabels()]
    ys = {name: dict(zip([c for c in cats if (BY_MODEL[name].get(c) or {}).get("rate") is not None],
                         [y for _, y in _bar_centres(ax, i)]))
          for i, name in enumerate(BY_MODEL)}
    for cat in cats:
        present = [m for m in legend if cat in ys[m]]
        tops = [ys[m][cat] for m in present]
        assert tops == sorted(tops, reverse=True), cat  # display y grows upwards: first in legend = highest
    # and categories run top-down in their (alphabetical) order
    assert ys["aligned"]["privacy"] > ys["aligned"]["violence"] > ys["aligned"]["weapons"]


def test_chart_file_and_nothing_to_draw(tmp_path):
    path = safety_bar_chart(BY_MODEL, tmp_path / "safety_by_category.png")
    assert path.stat().st_size > 1000
    assert safety_bar_chart({"base": {}}, tmp_path / "none.png") is None and not (tmp_path / "none.png").exists()
