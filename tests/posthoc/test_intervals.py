"""Conformal intervals and applicability classes (abag.intervals)."""

from __future__ import annotations

import numpy as np
import pytest

from abag.posthoc.intervals import (
    APPLICABILITY_CLASSES,
    MIN_CLASS_ROWS,
    IntervalCalibration,
    IntervalScale,
    applicability,
    interval_coverage,
)


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
    assert calibration.scale.spread == 0.0
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


# ------------------------------------------------------------------ novelty in the scale, honest spread only

def _novel_rows(rng, n, share_novel_antibody):
    """Rows of unseen antigens whose error sd grows linearly with the antibody's distance from training."""
    antigen = rng.uniform(0.05, 0.35, n)
    novel = np.arange(n) < round(share_novel_antibody * n)  # an exact count, not a random one
    antibody = np.where(novel, rng.uniform(0.30, 0.78, n), rng.uniform(0.82, 1.0, n))
    pred = rng.uniform(6, 11, n)
    y = pred + rng.normal(0, 0.3 + 2.5 * (1 - antibody))
    return pred, y, antigen, antibody, applicability(antigen, antibody)


def _pooled_floor_intervals(y, pred, std, classes, coverage, test_pred, test_std, test_classes):
    """The first calibration (bench/RESULTS.md): |y − ŷ| / (std + floor) per class, pooled below 30 rows."""
    positive = std[std > 0]
    floor = float(np.median(positive)) if len(positive) else 1.0
    scores = np.abs(y - pred) / (std + floor)

    def quantile(values):
        return np.sort(values)[int(np.ceil((len(values) + 1) * coverage)) - 1]

    q = {name: quantile(scores[classes == name]) if np.sum(classes == name) >= MIN_CLASS_ROWS else quantile(scores)
         for name in APPLICABILITY_CLASSES}
    half = np.array([q[c] for c in test_classes]) * (test_std + floor)
    return test_pred - half, test_pred + half


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_a_sparse_novel_class_is_covered_because_the_scale_carries_novelty(coverage):
    # Calibration: 10,000 rows, 25 of them with a novel antibody (too few for their own quantile, so the
    # novelty slope must come from the spread of distances among the familiar antibodies); the new rows hold
    # 3,000 of each class. Fixed seeds; the tolerance is 3 sd of the observed coverage (binomial over the new
    # rows plus the calibration quantile's own sampling error). Passes for 40 of 40 other seed pairs.
    pred, y, antigen, antibody, classes = _novel_rows(np.random.default_rng(10), 10_000, 0.0025)
    assert np.sum(classes == "novel-both") == 25 < MIN_CLASS_ROWS
    std = np.zeros(len(y))
    calibration = IntervalCalibration.fit(y, pred, std, classes, coverages=(coverage,), antigen_identity=antigen,
                                          antibody_identity=antibody)
    assert calibration.scale.antibody_distance > 0
    rng = np.random.default_rng(11)
    parts = [_novel_rows(rng, 3000, share) for share in (0.0, 1.0)]
    p, t, ag, ab, c = (np.concatenate(x) for x in zip(*parts))
    tolerance = 3 * np.sqrt(coverage * (1 - coverage) * (1 / 3000 + 1 / len(y)))
    new = interval_coverage(t, *calibration.interval(p, np.zeros(len(p)), c, coverage, ag, ab), c)
    old = interval_coverage(t, *_pooled_floor_intervals(y, pred, std, classes, coverage, p, np.zeros(len(p)), c), c)
    for name in ("novel-antigen", "novel-both"):
        assert abs(new[name]["coverage"] - coverage) < tolerance, (name, new[name], tolerance)
    assert old["novel-both"]["coverage"] < coverage - 3 * tolerance, old["novel-both"]  # the old one undercovers


def test_the_novelty_scale_does_not_extrapolate_to_rows_more_familiar_than_any_calibration_row():
    pred, y, antigen, antibody, classes = _novel_rows(np.random.default_rng(12), 1000, 0.3)
    calibration = IntervalCalibration.fit(y, pred, np.zeros(1000), classes, antigen_identity=antigen,
                                          antibody_identity=antibody)
    familiar = calibration.scale(np.zeros(3), None, np.array([1.0, 0.9, 0.65]), np.array([1.0, 1.0, 1.0]))
    least_novel = calibration.scale(np.zeros(1), None, np.array([antigen.max()]), np.array([antibody.max()]))
    np.testing.assert_allclose(familiar, least_novel[0])
    unknown = calibration.scale(np.zeros(1), None, np.array([np.nan]), np.array([np.nan]))
    assert least_novel[0] <= unknown[0] <= calibration.scale(np.zeros(1), None, [antigen.min()], [antibody.min()])[0]


def test_without_an_honest_spread_the_interval_ignores_pkd_std():
    # A fold ensemble's spread on out-of-fold rows tracks their residuals (most members trained on the row):
    # calibrating on it would give a quantile that is too small wherever the spread is honest.
    rng = np.random.default_rng(13)
    pred = rng.uniform(6, 11, 800)
    y = pred + rng.normal(0, 1.0, 800)
    leaky_std = 0.5 * np.abs(y - pred) + rng.uniform(0, 0.05, 800)
    classes = np.full(800, "novel-antigen", dtype=object)
    leaky = IntervalCalibration.fit(y, pred, leaky_std, classes)
    honest = IntervalCalibration.fit(y, pred, None, classes)
    assert honest.scale.spread == 0.0 and leaky.scale.spread > 0
    p = rng.uniform(6, 11, 4000)
    t, s = p + rng.normal(0, 1.0, 4000), rng.uniform(0, 1.0, 4000)  # new rows: spread unrelated to the error
    low, high = honest.interval(p, s, np.full(4000, "novel-antigen", dtype=object))
    assert np.allclose(high - low, (high - low)[0])
    assert abs(interval_coverage(t, low, high)["all"]["coverage"] - 0.8) < 3 * np.sqrt(0.16 * (1 / 800 + 1 / 4000))
    low, high = leaky.interval(p, s, np.full(4000, "novel-antigen", dtype=object))
    assert interval_coverage(t, low, high)["all"]["coverage"] < 0.7


def test_the_spread_scales_only_the_classes_where_it_was_measured_honestly():
    # In-domain calibration rows: the error grows with an honest spread. Novel rows: the spread tracks the
    # residual itself (the fold-ensemble leak), so it must not enter their scale.
    rng = np.random.default_rng(14)
    n = 3000
    pred, std = rng.uniform(6, 11, n), rng.uniform(0.1, 1.0, n)
    novel = np.arange(n) % 2 == 1
    y = pred + rng.normal(0, np.where(novel, 1.0, 0.2 + 1.5 * std))
    std = np.where(novel, 0.5 * np.abs(y - pred), std)
    classes = np.where(novel, "novel-antigen", "in-domain").astype(object)
    calibration = IntervalCalibration.fit(y, pred, std, classes, spread_classes=("in-domain",))
    assert calibration.scale.spread > 0 and calibration.scale.spread_classes == ("in-domain",)
    again = IntervalCalibration.from_state(calibration.to_state())
    assert again == calibration
    p, s = rng.uniform(6, 11, n), rng.uniform(0.1, 1.0, n)
    t = p + rng.normal(0, np.where(novel, 1.0, 0.2 + 1.5 * s))  # new rows: honest spread in both classes
    low, high = calibration.interval(p, s, classes)
    width = high - low
    assert np.corrcoef(width[~novel], s[~novel])[0, 1] > 0.99 and np.ptp(width[novel]) < 1e-9
    report = interval_coverage(t, low, high, classes)
    tolerance = 3 * np.sqrt(0.16 * (1 / (n / 2) + 1 / (n / 2)))
    for name in ("in-domain", "novel-antigen"):
        assert abs(report[name]["coverage"] - 0.8) < tolerance, report
    with pytest.raises(ValueError, match="pass the rows' classes"):
        calibration.scale(s)


def test_a_calibration_saved_before_the_fitted_scale_keeps_its_pkd_std_plus_floor():
    old = IntervalCalibration.from_state({"floor": 0.4, "quantiles": {"0.8": {"all": 2.0, "in-domain": 1.5}},
                                          "counts": {"all": 50}})
    assert old.scale == IntervalScale(intercept=0.4, spread=1.0)
    low, high = old.interval(np.array([8.0, 8.0]), np.array([0.0, 0.6]), np.array(["in-domain", "novel-both"]))
    np.testing.assert_allclose(high - 8.0, [1.5 * 0.4, 2.0 * 1.0])
