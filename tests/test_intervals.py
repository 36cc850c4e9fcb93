"""Conformal intervals and applicability classes (abag.intervals)."""

from __future__ import annotations

import numpy as np
import pytest

from abag.intervals import (APPLICABILITY_CLASSES, IntervalCalibration, applicability, interval_coverage)


def _noisy(rng, n, heteroscedastic=True):
    """Predictions, member spreads and measurements whose error grows with the spread (known noise)."""
    pred = rng.uniform(6, 11, n)
    std = rng.uniform(0.1, 1.0, n) if heteroscedastic else np.zeros(n)
    noise_sd = 0.3 + 1.5 * std
    return pred, std, pred + rng.normal(0, noise_sd)


@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.9])
def test_the_interval_covers_its_nominal_share_on_new_rows(coverage):
    rng = np.random.default_rng(0)
    pred, std, y = _noisy(rng, 2000)
    classes = np.full(2000, "novel-antigen", dtype=object)
    calibration = IntervalCalibration.fit(y, pred, std, classes, coverages=(coverage,))
    observed = []
    for seed in range(1, 6):
        p, s, t = _noisy(np.random.default_rng(seed), 2000)
        low, high = calibration.interval(p, s, np.full(2000, "novel-antigen", dtype=object), coverage)
        observed.append(interval_coverage(t, low, high)["all"]["coverage"])
    assert abs(np.mean(observed) - coverage) < 0.02, observed


def test_scaling_by_spread_gives_narrow_intervals_where_members_agree():
    rng = np.random.default_rng(1)
    pred, std, y = _noisy(rng, 3000)
    calibration = IntervalCalibration.fit(y, pred, std, np.full(3000, "in-domain", dtype=object))
    low, high = calibration.interval(pred, std, np.full(3000, "in-domain", dtype=object))
    width = high - low
    assert np.corrcoef(width, std)[0, 1] > 0.99
    # …and coverage is more even across spreads than with one constant width (the spread is ignored there)
    constant = IntervalCalibration.fit(y, pred, np.zeros(3000), np.full(3000, "in-domain", dtype=object))
    p, s, t = _noisy(np.random.default_rng(2), 4000)
    classes = np.full(4000, "in-domain", dtype=object)
    gaps = []
    for lo, hi in (calibration.interval(p, s, classes), constant.interval(p, np.zeros(4000), classes)):
        inside = (t >= lo) & (t <= hi)
        gaps.append(abs(inside[s < np.median(s)].mean() - inside[s >= np.median(s)].mean()))
    assert gaps[0] < gaps[1] / 2, gaps


def test_one_member_means_the_interval_comes_from_the_residuals_alone():
    rng = np.random.default_rng(3)
    pred, std, y = _noisy(rng, 1000, heteroscedastic=False)
    classes = np.full(1000, "in-domain", dtype=object)
    calibration = IntervalCalibration.fit(y, pred, std, classes)
    assert calibration.floor == 1.0
    low, high = calibration.interval(pred, std, classes)
    half = (high - low) / 2
    assert np.allclose(half, half[0])
    expected = np.sort(np.abs(y - pred))[int(np.ceil(1001 * 0.8)) - 1]
    assert half[0] == pytest.approx(expected)


def test_novel_rows_get_wider_intervals_when_their_errors_are_larger():
    rng = np.random.default_rng(4)
    n = 1500
    pred, std = rng.uniform(6, 11, n), rng.uniform(0.2, 0.4, n)
    novel = rng.random(n) < 0.5
    y = pred + rng.normal(0, np.where(novel, 1.5, 0.4))
    classes = np.where(novel, "novel-antigen", "in-domain").astype(object)
    calibration = IntervalCalibration.fit(y, pred, std, classes)
    q = calibration.quantiles["0.8"]
    assert q["novel-antigen"] > 2.5 * q["in-domain"]
    p, s = rng.uniform(6, 11, n), rng.uniform(0.2, 0.4, n)
    t = p + rng.normal(0, np.where(novel, 1.5, 0.4))
    low, high = calibration.interval(p, s, classes)
    report = interval_coverage(t, low, high, classes)
    for name in ("in-domain", "novel-antigen"):
        assert abs(report[name]["coverage"] - 0.8) < 0.05, report


def test_a_class_with_few_calibration_rows_uses_the_pooled_quantile():
    rng = np.random.default_rng(5)
    pred, std, y = _noisy(rng, 500)
    classes = np.full(500, "novel-antigen", dtype=object)
    classes[:5] = "in-domain"
    calibration = IntervalCalibration.fit(y, pred, std, classes)
    table = calibration.quantiles["0.8"]
    assert table["in-domain"] == table["all"] and table["novel-both"] == table["all"]
    assert calibration.counts["in-domain"] == 5


def test_censored_rows_do_not_calibrate_and_bad_requests_are_refused():
    rng = np.random.default_rng(6)
    pred, std, y = _noisy(rng, 200)
    censored = np.zeros(200, dtype=bool)
    censored[:100] = True
    y_bad = y.copy()
    y_bad[:100] = 100.0  # would blow the quantile up if used
    calibration = IntervalCalibration.fit(y_bad, pred, std, np.full(200, "in-domain", dtype=object),
                                          censored=censored)
    assert calibration.counts["all"] == 100
    assert calibration.quantiles["0.8"]["all"] < 10
    with pytest.raises(ValueError, match="not calibrated"):
        calibration.interval(pred, std, np.full(200, "in-domain", dtype=object), coverage=0.72)
    with pytest.raises(ValueError, match="no calibration rows"):
        IntervalCalibration.fit(y, pred, std, np.full(200, "in-domain", dtype=object),
                                censored=np.ones(200, dtype=bool))


def test_the_calibration_round_trips_through_plain_state():
    rng = np.random.default_rng(7)
    pred, std, y = _noisy(rng, 300)
    classes = np.array(APPLICABILITY_CLASSES * 75, dtype=object)
    calibration = IntervalCalibration.fit(y, pred, std, classes)
    again = IntervalCalibration.from_state(calibration.to_state())
    assert again == calibration
    with pytest.raises(ValueError, match="malformed"):
        IntervalCalibration.from_state({"floor": 1.0})


def test_applicability_classes_follow_the_thresholds():
    antigen = np.array([0.95, 0.30, 0.95, 0.10, 0.40])
    antibody = np.array([0.99, 0.99, 0.50, 0.20, 0.80])
    assert list(applicability(antigen, antibody)) == [
        "in-domain", "novel-antigen", "novel-antibody", "novel-both", "in-domain"]
