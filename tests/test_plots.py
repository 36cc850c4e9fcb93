"""abag.plots: each helper returns a Figure with the expected axes, lines and points (Agg backend)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402

from abag.plots import (  # noqa: E402
    plot_pkd_histogram,
    plot_predicted_vs_measured,
    plot_training_curves,
)


def history_frame(n_epochs: int = 5) -> pd.DataFrame:
    epochs = np.arange(1, n_epochs + 1)
    return pd.DataFrame({
        "epoch": epochs,
        "train_loss": 2.0 / epochs,
        "val_loss": 2.5 / epochs,
        "overfit_ratio": 1.25,
        "val_spearman": [0.1, 0.3, 0.5, 0.4, None][:n_epochs],
        "val_rmse": 1.0,
        "learning_rate": [1e-3, 1e-3, 6e-4, 6e-4, 3.6e-4][:n_epochs],
        "pred_min": 5.0, "pred_max": 10.0, "optimizer_steps": 2, "seconds": 1.0,
    })


def test_plots_module_imports_matplotlib_only_inside_functions():
    import abag.plots

    tree = ast.parse(Path(abag.plots.__file__).read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    names = [alias.name for node in top_level for alias in node.names] + \
        [node.module or "" for node in top_level if isinstance(node, ast.ImportFrom)]
    assert not [name for name in names if name.startswith("matplotlib")]


def test_training_curves_has_loss_spearman_and_lr_panels():
    figure = plot_training_curves(history_frame())
    assert isinstance(figure, Figure)
    loss_ax, spearman_ax, lr_ax = figure.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train", "validation"]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), 2.0 / np.arange(1, 6))
    spearman_line, best_line = spearman_ax.get_lines()
    assert len(spearman_line.get_xdata()) == 5
    assert best_line.get_label() == "best epoch 3"  # epoch 3 has the highest validation Spearman
    assert lr_ax.get_yscale() == "log"
    np.testing.assert_allclose(lr_ax.get_lines()[0].get_ydata(), [1e-3, 1e-3, 6e-4, 6e-4, 3.6e-4])
    assert all(ax.get_xlabel() == "epoch" for ax in figure.axes)


def test_training_curves_accepts_the_history_csv_of_a_run(tmp_path):
    path = tmp_path / "history.csv"
    history_frame(3).to_csv(path, index=False)
    figure = plot_training_curves(pd.read_csv(path))
    assert len(figure.axes) == 3
    assert len(figure.axes[2].get_lines()[0].get_xdata()) == 3


def test_training_curves_without_any_spearman_has_no_best_marker():
    history = history_frame(2).assign(val_spearman=None)
    figure = plot_training_curves(history)
    assert len(figure.axes[1].get_lines()) == 1


def test_predicted_vs_measured_plots_one_point_per_row_and_the_diagonal():
    rng = np.random.default_rng(0)
    measured = rng.uniform(5, 11, size=40)
    frame = pd.DataFrame({"pkd": measured, "pkd_pred": measured + rng.normal(0, 0.3, size=40),
                          "censored": [False] * 36 + [True] * 4})
    figure = plot_predicted_vs_measured(frame)
    (ax,) = figure.axes
    exact, censored = ax.collections
    assert exact.get_offsets().shape == (36, 2)
    assert censored.get_offsets().shape == (4, 2)
    np.testing.assert_allclose(exact.get_offsets()[:, 0], measured[:36])
    diagonal = [line for line in ax.get_lines() if line.get_label() == "y = x"]
    assert len(diagonal) == 1
    np.testing.assert_allclose(diagonal[0].get_xdata(), diagonal[0].get_ydata())
    assert ax.get_xlabel() == "measured pKd" and ax.get_ylabel() == "predicted pKd"
    assert "Spearman" in ax.get_title()


def test_predicted_vs_measured_without_censored_column_or_with_missing_values():
    frame = pd.DataFrame({"pkd": [6.0, 7.0, np.nan, 9.0], "pkd_pred": [6.5, 7.5, 8.0, np.nan]})
    (ax,) = plot_predicted_vs_measured(frame, title="new data").axes
    assert len(ax.collections) == 1
    assert ax.collections[0].get_offsets().shape == (2, 2)
    assert ax.get_title() == "new data"  # too few points for a Spearman


def test_pkd_histogram_counts_every_row_and_marks_the_binder_threshold():
    frame = pd.DataFrame({"pkd": np.linspace(5, 11, 50), "censored": [False] * 45 + [True] * 5})
    figure = plot_pkd_histogram(frame, bins=10)
    (ax,) = figure.axes
    heights = [patch.get_height() for patch in ax.patches]
    assert len(heights) == 20  # 10 bins x (exact, censored), stacked
    assert sum(heights) == 50
    threshold = [line for line in ax.get_lines() if "binder threshold" in line.get_label()]
    assert len(threshold) == 1 and threshold[0].get_xdata()[0] == 9.0
    assert ax.get_ylabel() == "rows"


def test_pkd_histogram_of_a_loaded_table():
    import abag

    example = Path(__file__).resolve().parents[1] / "data" / "example_pairs.csv"
    frame, _ = abag.load_pairs(example)
    (ax,) = plot_pkd_histogram(frame).axes
    assert sum(patch.get_height() for patch in ax.patches) == len(frame)


def test_calibration_plot_follows_the_diagonal_for_calibrated_intervals_and_not_for_narrow_ones():
    from abag.plots import plot_calibration
    from abag.posthoc.intervals import IntervalCalibration

    rng = np.random.default_rng(0)

    def draw(n):
        pred, std = rng.uniform(6, 11, n), rng.uniform(0.1, 1.0, n)
        return pred + rng.normal(0, 0.3 + std), pred, std

    classes = np.where(np.arange(3000) % 3 == 0, "in-domain", "novel-antigen").astype(object)
    calibration = IntervalCalibration.fit(*draw(3000), classes)
    y, pred, std = draw(3000)
    censored = np.zeros(3000, bool)
    censored[:10] = True
    figure = plot_calibration(y, pred, std, classes, calibration=calibration, censored=censored)
    (ax,) = figure.axes
    curves = {line.get_label().split(" (")[0]: line for line in ax.get_lines()}
    assert set(curves) == {"nominal = observed", "all", "in-domain", "novel"}
    assert "n=996" in curves["in-domain"].get_label()  # 1000 in-domain rows (every third), 4 of the first 10 censored
    nominal, observed = curves["all"].get_xdata(), curves["all"].get_ydata()
    assert len(nominal) == len(calibration.coverages())
    assert np.max(np.abs(np.asarray(observed) - np.asarray(nominal))) < 0.04
    assert ax.get_xlabel() == "nominal coverage" and ax.get_ylabel() == "observed coverage"
    # Intervals half as wide as calibrated fall below the diagonal.
    halved = {c: ((pred + lo) / 2, (pred + hi) / 2)
              for c, (lo, hi) in ((c, calibration.interval(pred, std, classes, c)) for c in (0.5, 0.8, 0.9))}
    (ax,) = plot_calibration(y, pred, std, classes, low_high=halved).axes
    low = [line for line in ax.get_lines() if line.get_label().startswith("all")][0]
    assert (np.asarray(low.get_ydata()) < np.asarray(low.get_xdata()) - 0.1).all()
    with pytest.raises(ValueError, match="calibration or the intervals"):
        plot_calibration(y, pred, std, classes)
