"""`abag.suggest.suggest_batch`: the batch contract, seeds, the diversity rule, the strategies and the model choice,
on toy combinatorial landscapes whose optimum is known."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from conftest import random_sequence

from abag.data import DataValidationError
from abag.suggest import SuggestConfig, SuggestError, suggest_batch
from abag.suggest.acquisition import acquisition
from abag.suggest.encoding import encode_variants, pairwise_hamming
from abag.suggest.selection import top_lift
from abag.suggest.variant_models import Prediction

SITES = 8  # positions of the toy heavy chain that vary, two residues each: 256 variants


def toy_landscape(kind: str = "additive", seed: int = 0) -> pd.DataFrame:
    """All 2**SITES combinations of SITES mutations of a random parent, with a hidden pKd.

    additive: pKd = 7 + sum of fixed per-site effects (optimum: every positive site mutated);
    epistatic: pKd = 7 + 2 if sites 0 and 1 are both mutated, XOR-like elsewhere (no additive signal).
    """
    rng = np.random.default_rng(seed)
    heavy, light, antigen = random_sequence(rng, 60), random_sequence(rng, 50), random_sequence(rng, 40)
    sites = rng.choice(np.arange(5, 55), size=SITES, replace=False)
    new = [next(a for a in "WYFHKRDE" if a != heavy[s]) for s in sites]
    effects = np.array([0.8, 0.6, -0.5, 0.4, -0.7, 0.3, 0.2, -0.4])
    rows = []
    for genotype in itertools.product((0, 1), repeat=SITES):
        chars = list(heavy)
        for on, site, residue in zip(genotype, sites, new):
            if on:
                chars[site] = residue
        g = np.array(genotype)
        if kind == "additive":
            pkd = 7.0 + float(effects @ g)
        else:
            pkd = 7.0 + 2.0 * g[0] * g[1] + 1.0 * (g[2] ^ g[3]) - 1.0 * (g[0] ^ g[1])
        rows.append({"heavy": "".join(chars), "light": light, "antigen": antigen, "pkd": pkd,
                     "genotype": "".join(map(str, genotype))})
    return pd.DataFrame(rows)


def split(landscape: pd.DataFrame, n_measured: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = np.random.default_rng(seed).permutation(len(landscape))
    measured = landscape.iloc[rows[:n_measured]].reset_index(drop=True)
    candidates = landscape.iloc[rows[n_measured:]].drop(columns="pkd").reset_index(drop=True)
    return measured, candidates


# ----------------------------------------------------------------------------------------------- the batch contract

def test_the_batch_is_n_distinct_candidate_rows_with_the_output_columns():
    measured, candidates = split(toy_landscape(), 40)
    result = suggest_batch(candidates, measured, SuggestConfig(n=12))
    batch = result.batch
    assert len(batch) == 12 and batch["genotype"].is_unique
    assert set(batch["genotype"]) <= set(candidates["genotype"])
    assert not set(batch["genotype"]) & set(measured["genotype"])
    assert list(batch["pick"]) == list(range(1, 13))
    assert np.isfinite(batch[["pkd_pred", "pkd_std", "acquisition"]].to_numpy()).all()
    assert (batch["pkd_std"] >= 0).all()
    assert result.scored["pick"].notna().sum() == 12 and len(result.scored) == len(candidates)


def test_input_columns_named_like_an_output_column_are_kept_renamed():
    measured, candidates = split(toy_landscape(), 40)
    candidates["pkd_pred"] = "from the lab"
    batch = suggest_batch(candidates, measured, SuggestConfig(n=4)).batch
    assert (batch["pkd_pred_input"] == "from the lab").all() and batch["pkd_pred"].dtype.kind == "f"


def test_measured_variants_and_repeats_among_the_candidates_are_never_picked():
    landscape = toy_landscape()
    measured, candidates = split(landscape, 40)
    candidates = pd.concat([candidates, candidates.iloc[:5], measured.drop(columns="pkd")], ignore_index=True)
    result = suggest_batch(candidates, measured, SuggestConfig(n=30))
    assert result.batch["genotype"].is_unique and not set(result.batch["genotype"]) & set(measured["genotype"])
    report = result.report
    assert (report.n_repeats_dropped, report.n_measured_dropped) == (5, 40)
    assert report.n_ranked == len(landscape) - 40


@pytest.mark.parametrize("strategy", ["greedy", "ucb", "thompson"])
def test_the_same_seed_gives_the_same_batch(strategy):
    measured, candidates = split(toy_landscape(), 40)
    first = suggest_batch(candidates, measured, SuggestConfig(n=10, strategy=strategy, seed=3)).batch
    again = suggest_batch(candidates, measured, SuggestConfig(n=10, strategy=strategy, seed=3)).batch
    pd.testing.assert_frame_equal(first, again)


def test_thompson_batches_differ_between_seeds():
    measured, candidates = split(toy_landscape(), 40)
    batches = {tuple(suggest_batch(candidates, measured, SuggestConfig(n=10, strategy="thompson", seed=s))
                     .batch["genotype"]) for s in range(4)}
    assert len(batches) > 1


def test_asking_for_more_than_the_candidates_is_a_clear_error():
    measured, candidates = split(toy_landscape(), 250)
    with pytest.raises(SuggestError, match=r"only 6 candidates remain .* batch of 10"):
        suggest_batch(candidates, measured, SuggestConfig(n=10))


def test_nothing_to_rank_by_is_a_clear_error():
    _, candidates = split(toy_landscape(), 40)
    with pytest.raises(SuggestError, match="nothing to rank"):
        suggest_batch(candidates, None, SuggestConfig(n=5))


def test_a_measured_row_without_a_pkd_is_named_by_row_and_column():
    measured, candidates = split(toy_landscape(), 40)
    measured.loc[3, "pkd"] = np.nan
    with pytest.raises(DataValidationError, match=r"row 4, column 'pkd': a measured variant needs a finite pKd"):
        suggest_batch(candidates, measured, SuggestConfig(n=5))


@pytest.mark.parametrize("field, value", [("n", 0), ("strategy", "best"), ("min_distance", 0), ("beta", -1.0),
                                          ("models", ("forest",))])
def test_bad_settings_are_refused_with_their_name(field, value):
    with pytest.raises(SuggestError, match=field if field != "models" else "unknown model"):
        SuggestConfig(**{field: value})


# ----------------------------------------------------------------------------------------------- diversity

def _min_and_mean_distance(batch: pd.DataFrame) -> tuple[int, float]:
    distances = pairwise_hamming(encode_variants(batch).codes)
    upper = distances[np.triu_indices(len(batch), 1)]
    return int(upper.min()), float(upper.mean())


def test_the_diversity_rule_spreads_the_batch():
    measured, candidates = split(toy_landscape(), 40)
    tight = suggest_batch(candidates, measured, SuggestConfig(n=8, min_distance=1)).batch
    spread = suggest_batch(candidates, measured, SuggestConfig(n=8, min_distance=3)).batch
    tight_min, tight_mean = _min_and_mean_distance(tight)
    spread_min, spread_mean = _min_and_mean_distance(spread)
    assert tight_min == 1                # greedy alone takes neighbours of the predicted optimum
    assert spread_min >= 3 and spread_mean > tight_mean
    assert tight["pkd_pred"].mean() >= spread["pkd_pred"].mean()  # the price: lower predicted means


def test_the_radius_relaxes_when_no_candidate_is_far_enough_and_the_batch_stays_full():
    measured, candidates = split(toy_landscape(), 40)
    # At most 2**8 / (sum of binomials up to radius 2) ~ 7 codes of 8 bits lie 5 apart: 30 picks cannot.
    result = suggest_batch(candidates, measured, SuggestConfig(n=30, min_distance=5))
    radius = np.array(result.report.radius)
    assert len(result.batch) == 30 and result.batch["genotype"].is_unique
    assert radius[0] == 5 and radius[-1] < 5 and (np.diff(radius) <= 0).all()
    assert "radius relaxed at pick" in result.report.summary()


def test_single_mutants_take_one_substitution_per_position_first():
    from abag.suggest import single_mutants

    landscape = toy_landscape()
    parent = landscape.iloc[0]
    candidates = single_mutants(parent, [("heavy", p) for p in (10, 20, 30)])
    measured = landscape.iloc[:30]
    spread = suggest_batch(candidates, measured, SuggestConfig(n=3, min_distance=2)).batch
    assert {m.split(":")[1][1:-1] for m in spread["mutations"]} == {"10", "20", "30"}


# ----------------------------------------------------------------------------------------------- strategies

def test_greedy_puts_the_known_optimum_of_an_additive_landscape_first():
    landscape = toy_landscape("additive")
    best = landscape.loc[landscape["pkd"].idxmax(), "genotype"]
    measured, candidates = split(landscape, 40)
    assert best in set(candidates["genotype"])
    batch = suggest_batch(candidates, measured, SuggestConfig(n=5, strategy="greedy")).batch
    assert batch["genotype"].iloc[0] == best
    assert batch["acquisition"].is_monotonic_decreasing  # greedy: scores in pick order
    np.testing.assert_allclose(batch["acquisition"], batch["pkd_pred"])


def test_ucb_prefers_the_uncertain_candidate_at_an_equal_mean():
    prediction = Prediction(mean=np.array([8.0, 8.0, 7.0]), std=np.array([0.1, 0.5, 2.0]))
    scores = acquisition("ucb", prediction, beta=2.0, rng=np.random.default_rng(0))(0)
    np.testing.assert_allclose(scores, [8.2, 9.0, 11.0])
    greedy = acquisition("greedy", prediction, beta=2.0, rng=np.random.default_rng(0))(0)
    assert np.argmax(greedy) == 0 and np.argmax(scores) == 2


def test_ucb_with_a_gp_explores_where_the_measured_variants_never_went():
    landscape = toy_landscape("additive")
    g = landscape["genotype"].str
    # Everything measured leaves sites 6 and 7 unmutated: the GP is unsure about variants that mutate them.
    measured = landscape[(g[6] == "0") & (g[7] == "0")].sample(40, random_state=0)
    candidates = landscape.drop(index=measured.index).drop(columns="pkd")
    config = dict(n=10, models=("gp",), min_distance=1)
    greedy = suggest_batch(candidates, measured, SuggestConfig(strategy="greedy", **config)).batch
    ucb = suggest_batch(candidates, measured, SuggestConfig(strategy="ucb", beta=3.0, **config)).batch
    unexplored = lambda batch: int(((batch["genotype"].str[6] == "1") & (batch["genotype"].str[7] == "1")).sum())
    assert unexplored(ucb) > unexplored(greedy)
    assert ucb["pkd_std"].mean() > greedy["pkd_std"].mean()


def test_thompson_follows_the_posterior():
    # Candidate 0: mean 1, certain; candidate 1: mean 0.9, std 1 -> wins a draw with P(z > 0.1) = 0.46.
    prediction = Prediction(mean=np.array([1.0, 0.9]), std=np.array([0.0, 1.0]))
    draws = acquisition("thompson", prediction, beta=2.0, rng=np.random.default_rng(0))
    share = np.mean([np.argmax(draws(i)) == 1 for i in range(2000)])
    assert 0.41 < share < 0.51
    members = Prediction(mean=np.zeros(3), std=np.ones(3), draws=np.array([[0, 1, 0], [0, 0, 1.0]]))
    member_draws = acquisition("thompson", members, beta=2.0, rng=np.random.default_rng(1))
    picks = {int(np.argmax(member_draws(i))) for i in range(50)}
    assert picks == {1, 2}  # a draw is one bootstrap member, coherent across candidates


@pytest.mark.parametrize("strategy", ["greedy", "ucb", "thompson"])
def test_every_strategy_finds_the_known_optimum_within_three_rounds(strategy):
    landscape = toy_landscape("additive", seed=1)
    best = landscape["pkd"].max()
    measured, _ = split(landscape, 16, seed=2)
    for _ in range(3):
        candidates = landscape[~landscape["genotype"].isin(measured["genotype"])].drop(columns="pkd")
        batch = suggest_batch(candidates, measured, SuggestConfig(n=8, strategy=strategy, seed=0)).batch
        measured = pd.concat([measured, landscape[landscape["genotype"].isin(batch["genotype"])]])
    assert measured["pkd"].max() == best


# ----------------------------------------------------------------------------------------------- model choice

def test_cross_validation_keeps_ridge_on_an_additive_landscape_and_reports_every_model():
    measured, candidates = split(toy_landscape("additive"), 60)
    report = suggest_batch(candidates, measured, SuggestConfig(n=5)).report
    assert report.model.chosen == "onehot_ridge"
    assert [s.name for s in report.model.scores] == ["onehot_ridge", "gp"]
    ridge = report.model.scores[0]
    assert ridge.spearman > 0.9 and ridge.n_folds == 10
    assert "one standard error" in report.model.rule


def test_cross_validation_chooses_the_gp_when_the_landscape_is_epistatic():
    landscape = toy_landscape("epistatic")
    measured, candidates = split(landscape, 120)
    result = suggest_batch(candidates, measured, SuggestConfig(n=5))
    scores = {s.name: s for s in result.report.model.scores}
    assert result.report.model.chosen == "gp"
    assert scores["gp"].top_lift > scores["onehot_ridge"].top_lift + scores["gp"].top_lift_se
    assert result.batch["pkd_pred"].iloc[0] > 8.5  # the epistatic optimum (9 or 10) is found by the GP


def test_top_lift_rewards_ranking_the_best_first_and_ignores_file_order_for_ties():
    y = np.arange(20, dtype=float)
    tie = np.random.default_rng(0).random(20)
    assert top_lift(y, y, 0.1, tie) == pytest.approx(18.5 - 9.5)
    assert top_lift(y, -y, 0.1, tie) == pytest.approx(0.5 - 9.5)
    constant = [top_lift(y, np.zeros(20), 0.1, np.random.default_rng(s).random(20)) for s in range(200)]
    assert abs(np.mean(constant)) < 1.0  # a constant prediction is worth nothing on average


def test_unequal_chain_lengths_fall_back_to_composition_features_and_say_so():
    measured, candidates = split(toy_landscape(), 40)
    candidates.loc[:4, "heavy"] = candidates.loc[:4, "heavy"] + "GS"
    result = suggest_batch(candidates, measured, SuggestConfig(n=6))
    assert "differ in length" in result.report.features and len(result.batch) == 6


def test_replicate_measurements_are_averaged_before_cross_validation():
    measured, candidates = split(toy_landscape(), 40)
    replicates = pd.concat([measured, measured.iloc[:10].assign(pkd=measured["pkd"].iloc[:10] + 1.0)])
    report = suggest_batch(candidates, replicates, SuggestConfig(n=4)).report
    assert report.n_measured == 40
    single = suggest_batch(candidates, measured.assign(pkd=np.r_[measured["pkd"].iloc[:10] + 0.5,
                                                                 measured["pkd"].iloc[10:]]),
                           SuggestConfig(n=4)).report
    assert report.model.scores == single.model.scores  # the same as measuring the mean once
