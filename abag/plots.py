"""Figures for a training run: pKd histogram, training curves, predicted vs measured pKd, interval calibration.

Each function returns a matplotlib `Figure` and draws nothing else; matplotlib is imported inside the
functions, so `import abag` neither needs it nor touches the plotting backend. Install it with
`pip install "abag[notebook]"` (Colab already has it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from abag.evaluation.metrics import regression_metrics
from abag.policy import BINDER_THRESHOLD
from abag.policy import PKD_RANGE as PKD_MODEL_RANGE
from abag.posthoc.intervals import interval_coverage

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from abag.posthoc.intervals import IntervalCalibration


def _new_figure(ncols: int = 1, width: float = 5.0, height: float = 4.0):
    # lazy: matplotlib is an optional dependency (the notebook extra)
    from matplotlib.figure import Figure

    # A bare Figure (not pyplot) keeps no global state; notebooks still display it as the cell's value.
    figure = Figure(figsize=(width * ncols, height), layout="constrained")
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, list(axes)


def _censored_mask(frame: pd.DataFrame) -> np.ndarray:
    if "censored" not in frame:
        return np.zeros(len(frame), dtype=bool)
    return frame["censored"].eq(True).to_numpy()  # missing counts as not censored


def plot_pkd_histogram(frame: pd.DataFrame, *, bins: int = 30,
                       binder_threshold: float = BINDER_THRESHOLD) -> Figure:
    """Histogram of `frame["pkd"]` (censored rows stacked separately), with the binder threshold marked."""
    figure, (ax,) = _new_figure()
    pkd = pd.to_numeric(frame["pkd"], errors="coerce").to_numpy(dtype=float)
    censored = _censored_mask(frame)
    finite = np.isfinite(pkd)
    exact, bounded = pkd[finite & ~censored], pkd[finite & censored]
    edges = np.histogram_bin_edges(pkd[finite] if finite.any() else [0.0, 1.0], bins=bins)
    series, labels = [exact], [f"exact (n={exact.size})"]
    if bounded.size:
        series.append(bounded)
        labels.append(f"censored, true pKd ≤ value (n={bounded.size})")
    ax.hist(series, bins=edges, stacked=True, label=labels, edgecolor="white", linewidth=0.5)
    ax.axvline(binder_threshold, color="black", linestyle="--", linewidth=1,
               label=f"binder threshold (pKd ≥ {binder_threshold:g})")
    ax.set_xlabel("pKd (−log10 Kd [M])")
    ax.set_ylabel("rows")
    ax.set_title(f"pKd distribution ({int(finite.sum())} rows)")
    ax.legend(fontsize="small")
    return figure


def plot_training_curves(history: pd.DataFrame) -> Figure:
    """Three panels from `history.csv`: training/validation loss, validation Spearman, learning rate."""
    # lazy: matplotlib is an optional dependency (the notebook extra)
    from matplotlib.ticker import MaxNLocator

    history = pd.DataFrame(history)
    figure, (loss_ax, spearman_ax, lr_ax) = _new_figure(ncols=3, width=4.5, height=3.5)
    epochs = history["epoch"].to_numpy()
    loss_ax.plot(epochs, history["train_loss"], marker="o", markersize=3, label="train")
    loss_ax.plot(epochs, history["val_loss"], marker="o", markersize=3, label="validation")
    loss_ax.set_title("loss (StableCombinedLoss)")
    loss_ax.legend(fontsize="small")

    spearman = pd.to_numeric(history["val_spearman"], errors="coerce").to_numpy(dtype=float)
    spearman_ax.plot(epochs, spearman, marker="o", markersize=3, color="tab:green", label="validation Spearman")
    if np.isfinite(spearman).any():
        best = int(np.nanargmax(spearman))  # the epoch whose weights best.pt holds
        spearman_ax.axvline(epochs[best], color="gray", linestyle=":", linewidth=1,
                            label=f"best epoch {epochs[best]}")
    spearman_ax.set_title("validation Spearman")
    spearman_ax.legend(fontsize="small")

    lr_ax.plot(epochs, history["learning_rate"], marker="o", markersize=3, color="tab:red")
    lr_ax.set_yscale("log")
    lr_ax.set_title("learning rate (ReduceLROnPlateau)")
    for ax in (loss_ax, spearman_ax, lr_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return figure


def plot_predicted_vs_measured(frame: pd.DataFrame, *, binder_threshold: float = BINDER_THRESHOLD,
                               title: str = "test set") -> Figure:
    """Scatter of `pkd_pred` against measured `pkd` with the y = x line; censored rows drawn as open marks."""
    figure, (ax,) = _new_figure(width=5.0, height=5.0)
    measured = pd.to_numeric(frame["pkd"], errors="coerce").to_numpy(dtype=float)
    predicted = pd.to_numeric(frame["pkd_pred"], errors="coerce").to_numpy(dtype=float)
    censored = _censored_mask(frame)
    usable = np.isfinite(measured) & np.isfinite(predicted)
    exact, bounded = usable & ~censored, usable & censored
    ax.scatter(measured[exact], predicted[exact], s=14, alpha=0.7, label=f"exact pKd (n={int(exact.sum())})")
    if bounded.any():
        ax.scatter(measured[bounded], predicted[bounded], s=18, facecolors="none", edgecolors="tab:orange",
                   label=f"censored: true pKd ≤ x (n={int(bounded.sum())})")
    values = np.concatenate([measured[usable], predicted[usable]])
    low, high = (float(values.min()) - 0.5, float(values.max()) + 0.5) if values.size else PKD_MODEL_RANGE
    ax.plot([low, high], [low, high], color="black", linewidth=1, label="y = x")
    ax.axvline(binder_threshold, color="gray", linestyle=":", linewidth=1)
    ax.axhline(binder_threshold, color="gray", linestyle=":", linewidth=1)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("measured pKd")
    ax.set_ylabel("predicted pKd")
    scores = regression_metrics(measured[exact], predicted[exact])
    if scores["spearman"] is not None:
        title = f"{title}: Spearman {scores['spearman']:.3f}, RMSE {scores['rmse']:.2f}"
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left")
    return figure


def plot_calibration(y, pred, std, classes, *, calibration: IntervalCalibration | None = None,
                     low_high: dict | None = None, censored=None, title: str = "prediction intervals",
                     antigen_identity=None, antibody_identity=None) -> Figure:
    """Nominal against observed coverage of the prediction intervals, for all rows, in-domain and novel rows,
    with the diagonal and a ±5-point band.

    The intervals come from `calibration` (at each coverage it was fitted for) or are given as `low_high`
    ({coverage: (low, high)}). Rows should be held out from the calibration, or the curve is in-sample.
    """

    y, pred, std = (np.asarray(a, dtype=float) for a in (y, pred, std))
    classes = np.asarray(classes, dtype=object)
    censored = np.zeros(len(y), bool) if censored is None else np.asarray(censored, dtype=bool)
    if low_high is None:
        if calibration is None:
            raise ValueError("plot_calibration needs a calibration or the intervals (low_high)")
        low_high = {c: calibration.interval(pred, std, classes, c, antigen_identity, antibody_identity)
                    for c in calibration.coverages()}
    nominal = sorted(float(c) for c in low_high)
    groups = {"all": np.ones(len(y), bool), "in-domain": classes == "in-domain", "novel": classes != "in-domain"}
    figure, (ax,) = _new_figure(width=5.0, height=5.0)
    ax.fill_between([0, 1], [-0.05, 0.95], [0.05, 1.05], color="gray", alpha=0.15, label="±5 points")
    ax.plot([0, 1], [0, 1], color="black", linewidth=1, label="nominal = observed")
    for name, mask in groups.items():
        observed = []
        for c in nominal:
            low, high = (np.asarray(a, dtype=float) for a in low_high[c])
            observed.append(interval_coverage(y[mask], low[mask], high[mask], None, censored[mask])["all"]["coverage"])
        if observed and observed[0] is not None:
            n = int(np.sum(mask & ~censored & np.isfinite(y)))
            ax.plot(nominal, observed, marker="o", markersize=4, label=f"{name} (n={n})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="upper left")
    return figure
