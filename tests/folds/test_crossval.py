"""Cross-validation over antigen clusters: fold hygiene, one encoding for all folds, metrics and reports."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from conftest import mutate, random_sequence, synthetic_frame

from abag.data.folds import fold_split, make_folds
from abag.data.splits import row_groups
from abag.evaluation.metrics import grouped_spearman
from abag.folds.crossval import cross_validate, paired_spearman_difference
from abag.folds.crossval_tables import format_cv_markdown, format_cv_summary
from abag.identity.clustering import cluster_antigens
from abag.model.config import ModelConfig
from abag.training.config import TrainConfig

TINY = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16)


def family_frame(n_families: int = 10, per_family: int = 3, rows_per_antigen: int = 4, seed: int = 0):
    """Antigen families (point mutants of one parent, so they cluster together) of unrelated parents."""
    rng = np.random.default_rng(seed)
    rows = []
    heavy, light = random_sequence(rng, 60), random_sequence(rng, 50)
    for family in range(n_families):
        parent = random_sequence(rng, 70)
        for member in range(per_family):
            antigen = mutate(rng, parent, 3) if member else parent
            for _ in range(rows_per_antigen):
                h = mutate(rng, heavy, 5)
                rows.append({"heavy": h, "light": light, "antigen": antigen, "family": family,
                             "pkd": 6.0 + 0.3 * family + 0.5 * h.count("W") + rng.normal(0, 0.2)})
    frame = pd.DataFrame(rows)
    frame["censored"] = False
    return frame


def quick(tmp_path, **overrides):
    values = dict(epochs=2, progress=False, cache_dir=str(tmp_path / "cache"))
    values.update(overrides)
    return TrainConfig(**values)


# ----------------------------------------------------------------------------------------------- folds

def test_folds_partition_rows_and_keep_clusters_whole():
    frame = family_frame()
    groups, tests, protocol = make_folds(frame, 5, seed=0)
    assert "5-fold" in protocol and "40% identity" in protocol
    everything = np.sort(np.concatenate(tests))
    assert np.array_equal(everything, np.arange(len(frame)))  # each row in exactly one test fold
    # Mutants of one parent are one cluster, so a family never straddles two folds.
    assert len(np.unique(groups)) == 10
    for test in tests:
        inside = set(frame.family.iloc[test])
        outside = set(frame.family.drop(index=test))
        assert not inside & outside


def test_fold_split_takes_validation_groups_from_the_training_folds_only():
    frame = family_frame()
    groups, tests, _ = make_folds(frame, 5, seed=0)
    for i, test in enumerate(tests):
        split = fold_split(groups, test, val_fraction=0.15, seed=i)
        parts = {p: set(groups[split.indices(p)]) for p in ("train", "val", "test")}
        assert np.array_equal(split.indices("test"), np.sort(test))
        assert parts["val"] and parts["train"]
        assert not parts["train"] & parts["val"] and not parts["train"] & parts["test"]
        assert not parts["val"] & parts["test"]
        assert split.sizes()["val"] >= 3
        assert sum(split.sizes().values()) == len(frame)


def test_leave_one_group_out_by_column():
    frame = family_frame(n_families=4)
    groups, tests, protocol = make_folds(frame, "logo", group_column="family")
    assert len(tests) == 4 and "leave-one-group-out" in protocol
    for test in tests:
        assert frame.family.iloc[test].nunique() == 1
    with pytest.raises(ValueError, match="not in table"):
        make_folds(frame, "logo", group_column="nope")
    with pytest.raises(ValueError, match="integer or 'logo'"):
        make_folds(frame, "sideways")


def test_fold_split_needs_two_groups_outside_the_test_fold():
    groups = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="validation slice"):
        fold_split(groups, np.array([0, 1]))


def test_cluster_kfold_folds_match_cluster_ids():
    frame = family_frame(n_families=6)
    groups, tests, _ = make_folds(frame, 3, seed=1)
    assert np.array_equal(groups, cluster_antigens(frame.antigen.tolist()))


def test_folds_take_their_groups_from_the_split_module():
    frame = family_frame(n_families=5)
    groups, _, protocol = make_folds(frame, "logo", group_column="family")
    grouping = row_groups(frame, "group", group_column="family")
    assert np.array_equal(groups, grouping.labels) and grouping.description in protocol
    groups, _, protocol = make_folds(frame, 3, identity=0.9)
    assert np.array_equal(groups, row_groups(frame, "antigen", identity=0.9).labels) and "90% identity" in protocol


# ----------------------------------------------------------------------------------------------- statistics

def test_paired_difference_is_exact_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    good, bad = y + rng.normal(0, 0.5, 200), y + rng.normal(0, 3, 200)
    result = paired_spearman_difference(y, good, bad, n_boot=300)
    from scipy.stats import spearmanr
    expected = spearmanr(y, good).statistic - spearmanr(y, bad).statistic
    assert result["difference"] == pytest.approx(expected)
    lo, hi = result["ci95"]
    assert lo < expected < hi and lo > 0
    same = paired_spearman_difference(y, good, good, n_boot=50)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]


def test_paired_difference_leaves_out_censored_rows():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    a = np.array([1.0, 2.0, 3.0, 4.0, -10.0])
    b = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    result = paired_spearman_difference(y, a, b, censored=[False, False, False, False, True], n_boot=20)
    assert result["n"] == 4 and result["difference"] == pytest.approx(2.0)


# ----------------------------------------------------------------------------------------------- end to end

def test_cross_validate_end_to_end(tmp_path, tiny_encoders, monkeypatch):
    frame = family_frame()
    frame.loc[frame.index[:3], "censored"] = True  # censored rows are predicted but never scored as exact
    encoder = tiny_encoders["tiny"]
    seen: list[str] = []
    original = type(encoder).forward

    def counting(self, chains, *args, **kwargs):
        seen.extend(chains)
        return original(self, chains, *args, **kwargs)

    monkeypatch.setattr(type(encoder), "forward", counting)
    lines: list[str] = []
    # An antigen-aware head, so that antigens are encoded too (antibody_only never encodes them).
    model = ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny", hidden_dim=16, fusion="interaction")
    result = cross_validate(frame, model, quick(tmp_path), folds=3, out_dir=tmp_path / "cv",
                            encoders=tiny_encoders, n_boot=50, log=lines.append)
    # Every distinct chain was encoded exactly once for all three folds (the on-disk cache).
    distinct = set(frame.heavy) | set(frame.light) | set(frame.antigen)
    assert sorted(seen) == sorted(distinct)

    assert len(result.folds) == 3
    # The default model has no post-training correction, so there is no "network_only" column beside it.
    assert set(result.predictors) == {"model", "train_mean", "kmer_ridge"}
    predictions = result.predictions
    assert sorted(predictions["row"]) == list(range(len(frame)))
    assert predictions["model"].between(4.0, 14.0).all()
    for fold in result.folds:
        assert fold.n_train + fold.n_val + fold.n_test == len(frame)
        assert fold.metrics["model"]["n_censored"] == int(frame.censored.iloc[
            predictions.loc[predictions.fold == fold.fold, "row"]].sum())
        # The baselines were fitted on exactly the model's training rows.
        metrics = json.loads((tmp_path / "cv" / f"fold_{fold.fold}" / "metrics.json").read_text())
        assert metrics["data"]["n_train"] == fold.n_train and metrics["data"]["split"] == "cv_fold"
        assert metrics["test"]["spearman"] == pytest.approx(fold.metrics["model"]["spearman"], abs=1e-6)
    assert result.pooled["model"]["n"] == len(frame) - 3 and result.pooled["model"]["n_censored"] == 3
    spearmans = [f.metrics["model"]["spearman"] for f in result.folds]
    assert result.mean["model"]["spearman"] == pytest.approx(np.mean(spearmans))
    assert result.mean["model"]["n_folds"] == 3
    assert len(result.difference["per_fold"]) == 3 and result.difference["reference"] == "kmer_ridge"
    assert (tmp_path / "cv" / "cv_metrics.json").exists() and (tmp_path / "cv" / "cv_predictions.csv").exists()
    document = json.loads((tmp_path / "cv" / "cv_metrics.json").read_text())
    assert document["mean"]["model"]["spearman"] == pytest.approx(result.mean["model"]["spearman"])

    text = format_cv_summary(result)
    assert "mean ± SD" in text and "pooled" in text and "model − kmer_ridge" in text
    assert "kmer_ridge" in format_cv_markdown(result)

    # Within-cluster Spearman: each test fold holds whole clusters, so the pooled value is the mean over all
    # clusters of the out-of-fold predictions, computed on the scored (uncensored) rows only.
    scored = predictions[~predictions.censored]
    for name in result.predictors:
        expected = grouped_spearman(scored.pkd, scored[name], scored.group)
        assert result.pooled[name]["spearman_within_group"] == pytest.approx(expected.mean)
        assert result.pooled[name]["n_groups_within"] == expected.n_groups == 10
        assert result.pooled[name]["spearman_ci95_cluster"][0] is not None
    assert result.folds[0].metrics["model"]["n_groups"] == len(result.folds[0].test_groups)
    assert "spearman_within_group" in result.mean["model"]
    assert "within-group (groups)" in text and "pooled, cluster CI" in text
    assert "within-group Spearman" in format_cv_markdown(result)
    assert any(line.startswith("fold 1/3") for line in lines)


def test_cross_validate_is_deterministic_and_averages_seeds(tmp_path, tiny_encoders):
    frame = synthetic_frame(n=48, n_antigens=6)
    kwargs = dict(folds=3, encoders=tiny_encoders, n_boot=20, log=lambda line: None, baselines=None)
    # The model before the wide part (network + familiar-antigen correction): `network_only` is reported beside it.
    corrected = dataclasses.replace(TINY, wide="none", pooling="mean", familiar_correction="kmer_ridge_context")
    a = cross_validate(frame, corrected, quick(tmp_path), out_dir=tmp_path / "a", **kwargs)
    b = cross_validate(frame, corrected, quick(tmp_path), out_dir=tmp_path / "b", **kwargs)
    np.testing.assert_array_equal(a.predictions["model"], b.predictions["model"])
    assert a.predictors == ["model", "network_only"] and a.difference == {}
    # Held-out antigen clusters are unfamiliar to every fold's model: the correction leaves them to the network.
    np.testing.assert_allclose(a.predictions["model"], a.predictions["network_only"], atol=1e-5)
    two = cross_validate(frame, corrected, quick(tmp_path), out_dir=tmp_path / "two", n_seeds=2, **kwargs)
    assert (tmp_path / "two" / "fold_0" / "seed_1" / "metrics.json").exists()
    assert two.extra["n_seeds"] == 2
    assert not np.allclose(two.predictions["model"], a.predictions["model"])
