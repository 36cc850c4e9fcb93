"""The `ridge_choice` and `ridge_blend` wide parts: the k-mer parts or a ridge on the IMGT-aligned one-hot of VH and
VL, whichever predicts held-out groups of the training rows better, or the two weighed by that error."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import abag.model.wide as wide
from abag.model.apply import prepare_wide
from abag.model.wide import (
    CANDIDATES,
    INTEGER_STATE,
    ONEHOT_ENCODER,
    ONEHOT_WIDTH,
    OneHotBlock,
    OneHotRidge,
    WidePart,
    WideSlot,
    choose,
    cross_fit_folds,
    cross_fitted,
    fit_wide,
    state_shapes,
)
from abag.model.ridge import KmerRidgeBaseline
from abag.numbering import number_chain
from abag.numbering.domains import SHARED_NUMBERING
from abag.numbering.onehot import ALPHABET, AlignedOneHotEncoder, imgt_grid

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "numbering"))
from numbering_sequences import HER2_FRAGMENT, TRASTUZUMAB_VH, TRASTUZUMAB_VL  # noqa: E402

pytest.importorskip("anarcism")

VH, VL, ANTIGEN = TRASTUZUMAB_VH, TRASTUZUMAB_VL, HER2_FRAGMENT  # trastuzumab and a fragment of its antigen
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
UNNUMBERABLE = "ACDEFGHIKACDEFGHIK"

# Mutable sites: HCDR3, HCDR2, LCDR3, LCDR1 (offsets in VH / VL).
SITES = ([("heavy", VH.index("WGGDGFYAMDY") + i) for i in range(11)]
         + [("heavy", VH.index("IYPTNGYT") + i) for i in range(8)]
         + [("light", VL.index("QQHYTTPPT") + i) for i in range(9)]
         + [("light", VL.index("QDVNTA") + i) for i in range(6)])
HOT = {2: -2.0, 6: -2.0, 30: -2.0}
"""Planted position effect: any substitution at these SITES costs 2 pKd, whatever the new residue."""


def variants(n: int, seed: int, signal: bool = True) -> pd.DataFrame:
    """`n` point mutants of trastuzumab (1-3 substitutions among SITES); pKd 8 + the planted effect + noise (pure
    noise of SD 1 when `signal` is False)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        chains = {"heavy": list(VH), "light": list(VL)}
        effect = 0.0
        for site in rng.choice(len(SITES), size=int(rng.integers(1, 4)), replace=False):
            side, offset = SITES[site]
            residue = RESIDUES[int(rng.integers(20))]
            if residue != chains[side][offset]:
                chains[side][offset] = residue
                effect += HOT.get(int(site), 0.0)
        pkd = 8.0 + effect + rng.normal(0, 0.2) if signal else 8.0 + rng.normal(0, 1.0)
        rows.append({"heavy": "".join(chains["heavy"]), "light": "".join(chains["light"]), "antigen": ANTIGEN,
                     "pkd": pkd})
    return pd.DataFrame(rows).assign(censored=False)


def composition(n: int, seed: int) -> pd.DataFrame:
    """The same variants with a k-mer composition effect instead: 0.7 pKd per tryptophan, wherever it sits."""
    frame = variants(n, seed)
    tryptophans = (frame["heavy"] + frame["light"]).str.count("W").to_numpy(float)
    return frame.assign(pkd=8.0 + 0.7 * tryptophans + np.random.default_rng(seed).normal(0, 0.2, n))


def groups_of(frame: pd.DataFrame) -> np.ndarray:
    """Eight groups of rows, as a split's clusters would be."""
    return np.arange(len(frame)) % 8


def column(side: str, offset: int, residue: str) -> int:
    """The block's column of `residue` at the IMGT position of trastuzumab's residue `offset` on `side`."""
    domain = number_chain(VH if side == "heavy" else VL).domain_of(side)
    label = domain.labels()[offset - domain.start]
    return ONEHOT_ENCODER.feature_names().index(f"{side[0].upper()}{label}_{residue}")


def rmse(predicted: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - y) ** 2)))


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return variants(240, seed=1)


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    return variants(120, seed=2)


@pytest.fixture(scope="module")
def chosen(train) -> WidePart:
    return WidePart.fit(train, "ridge_choice", groups_of(train))


# ----------------------------------------------------------------------------------------------- the grid

def test_the_grid_is_fixed_and_a_residue_off_it_is_ignored_and_counted():
    grid = imgt_grid()
    assert len(grid) == 168 and grid[0] == (1, "") and grid[-1] == (128, "")
    assert grid.index((111, "J")) < grid.index((112, "J")) < grid.index((112, "A")) < grid.index((112, ""))
    encoder = AlignedOneHotEncoder.on_grid()
    assert encoder.n_features == ONEHOT_WIDTH == 2 * 168 * len(ALPHABET)
    long_cdr3 = VH.replace("WGGDGFYAMDY", "WGGDGFYAMDY" + "GSGSGSGSGSGSGSGSGSGSGSGSG")  # 36-residue HCDR3
    chains = [number_chain(VH), number_chain(long_cdr3)]
    features = encoder.transform(chains, [None, None])
    assert features.unseen.tolist()[0] == 0 and features.unseen[1] > 0  # insertions beyond 111J/112J: off the grid
    assert features.matrix[1].sum() == 168  # every grid position still one column (residue or gap)


# ----------------------------------------------------------------------------------------------- the block

def test_the_block_recovers_a_planted_position_effect(train, held_out):
    target = train["pkd"].to_numpy() - train["pkd"].mean()
    block = OneHotBlock.fit(train["heavy"].tolist(), train["light"].tolist(), target)
    assert np.isfinite(block.alpha) and block.antibodies == train[["heavy", "light"]].drop_duplicates().shape[0]
    for site, (side, offset) in enumerate(SITES):
        wild_type = (VH if side == "heavy" else VL)[offset]
        others = [block.coef[column(side, offset, r)] for r in RESIDUES if r != wild_type]
        gain = block.coef[column(side, offset, wild_type)] - np.mean(others)  # keeping the wild type, vs not
        if site in HOT:
            assert gain > 1.0, (site, gain)  # planted: 2.0
        else:
            assert abs(gain) < 0.5, (site, gain)
    predicted = block.predict(held_out["heavy"].tolist(), held_out["light"].tolist())
    assert stats.pearsonr(predicted, held_out["pkd"]).statistic > 0.9


def test_the_dual_and_primal_solves_agree(train):
    target = train["pkd"].to_numpy() - train["pkd"].mean()
    heavy, light = train["heavy"].tolist(), train["light"].tolist()
    dual = OneHotBlock.fit(heavy, light, target, form="dual")
    primal = OneHotBlock.fit(heavy, light, target, form="primal")
    assert dual.alpha == primal.alpha and np.isfinite(dual.alpha)
    assert np.allclose(dual.coef, primal.coef, atol=1e-8) and np.allclose(dual.shift, primal.shift, atol=1e-8)
    # Above the cap both forms are too big: a seeded sample of antibodies, whatever the row order.
    sampled = OneHotBlock.fit(heavy, light, target, max_antibodies=100)
    reordered = OneHotBlock.fit(heavy[::-1], light[::-1], target[::-1], max_antibodies=100)
    assert sampled.antibodies == 100 and sampled.alpha == reordered.alpha
    assert np.allclose(sampled.coef, reordered.coef, atol=1e-10) and np.any(sampled.coef)
    assert not np.allclose(sampled.coef, dual.coef, atol=1e-3)


def test_rows_of_one_antibody_count_by_their_number(train):
    target = train["pkd"].to_numpy() - train["pkd"].mean()
    heavy, light = train["heavy"].tolist(), train["light"].tolist()
    twice = OneHotBlock.fit(heavy * 2, light * 2, np.concatenate([target, target]))
    once = OneHotBlock.fit(heavy, light, target)
    assert twice.antibodies == once.antibodies and twice.alpha == once.alpha
    assert np.allclose(twice.coef, once.coef)


# ----------------------------------------------------------------------------------------------- the choice

def test_a_position_effect_chooses_the_one_hot_ridge_which_beats_kmer_ridge_on_held_out_rows(chosen, train,
                                                                                           held_out):
    assert CANDIDATES[chosen.choice] == "one-hot ridge" and chosen.cv_folds == 5
    assert chosen.cv_rmse[1] < 0.8 * chosen.cv_rmse[0], chosen.cv_rmse
    described = chosen.describe()["choice"]
    assert described["chosen"] == "one-hot ridge" and described["held_out_rmse"]["k-mer ridge"] == chosen.cv_rmse[0]
    ridge_alone = OneHotRidge.fit(train)
    assert np.array_equal(chosen.predict(held_out), ridge_alone.predict(held_out))  # the one-hot ridge alone
    y = held_out["pkd"].to_numpy()
    kmer, mine = WidePart.fit(train, "kmer_ridge").predict(held_out), chosen.predict(held_out)
    assert stats.spearmanr(mine, y).statistic > stats.spearmanr(kmer, y).statistic + 0.02
    assert rmse(mine, y) < 0.8 * rmse(kmer, y)


def test_a_composition_effect_keeps_the_kmer_parts_exactly(held_out):
    frame = composition(240, seed=3)
    part = WidePart.fit(frame, "ridge_choice", groups_of(frame))
    kmer = WidePart.fit(frame, "kmer_ridge")
    assert part.choice == 0 and part.cv_folds == 5 and part.cv_rmse[0] < part.cv_rmse[1], part.cv_rmse
    # The one-hot kinds' k-mer parts are kmer_ridge's pair ridge without its heavy 3-mer block.
    assert np.array_equal(part.predict(held_out), KmerRidgeBaseline().fit(frame).predict(held_out))
    kmer_state, state = kmer.to_state(), part.to_state()
    ridge_keys = [k for k in kmer_state if k.startswith("ridge_")]
    assert ridge_keys and all(torch.equal(kmer_state[k], state[k]) for k in ridge_keys)
    assert any(k.startswith("heavy_") for k in kmer_state) and not any(k.startswith("heavy_") for k in state)


@pytest.mark.parametrize("seed", [1, 3, 5])
def test_the_block_does_not_fit_pure_noise(seed):
    # The leave-one-antibody-out counts the mean's leverage: without it, near-interpolation (alpha 0.001, more
    # columns than antibodies) looked better than no block on noise, and then predicted held-out rows worse than
    # the mean (1.31 against 0.86 RMSE, refitting without each of 40 antibodies).
    noise = variants(240, seed=seed, signal=False)
    ridge = OneHotRidge.fit(noise)
    assert ridge.block.alpha >= 1.0, ridge.block.alpha


def test_fewer_than_two_groups_keep_the_kmer_parts_without_cross_validation(train, held_out):
    part = WidePart.fit(train, "ridge_choice", np.zeros(len(train)))  # a position effect, but one group
    assert (part.choice, part.cv_folds) == (0, 0) and np.isnan(part.cv_rmse).all()
    assert part.describe()["choice"]["held_out_rmse"] == {"k-mer ridge": None, "one-hot ridge": None}
    assert np.array_equal(part.predict(held_out), KmerRidgeBaseline().fit(train).predict(held_out))
    with pytest.raises(ValueError, match="240 rows but 3 groups"):
        choose(train, "ridge_choice", np.zeros(3))


def test_the_choice_scores_only_exact_rows_on_the_folds_cross_fitted_deals(train):
    # Censored rows (here with a pKd far off) neither train nor score a candidate.
    censored = train.assign(censored=np.arange(len(train)) % 5 == 0)
    moved = censored.assign(pkd=np.where(censored["censored"], 30.0, censored["pkd"]))
    groups = groups_of(train)
    assert choose(censored, "ridge_choice", groups) == choose(moved, "ridge_choice", groups)
    # The errors are those of the candidates fitted on each fold's complement, as cross_fitted fits them.
    exact = ~censored["censored"].to_numpy()
    y = train["pkd"].to_numpy()
    errors = [rmse(cross_fitted(censored, "ridge_choice", groups, weight=c)[exact], y[exact]) for c in (0, 1)]
    assert choose(censored, "ridge_choice", groups).rmse == pytest.approx(tuple(errors), rel=1e-12)


# ----------------------------------------------------------------------------------------------- cross-fitting

def test_cross_fitted_uses_the_given_choice_and_never_chooses_again(monkeypatch):
    frame = composition(120, seed=4)
    groups = groups_of(frame)
    assert choose(frame, "ridge_choice", groups).choice == 0
    expected, pair_ridge = np.empty(len(frame)), np.empty(len(frame))
    fold = cross_fit_folds(len(frame), groups)
    for k in np.unique(fold):
        expected[fold == k] = OneHotRidge.fit(frame.loc[fold != k]).predict(frame.loc[fold == k])
        pair_ridge[fold == k] = KmerRidgeBaseline().fit(frame.loc[fold != k]).predict(frame.loc[fold == k])
    unchosen = cross_fitted(frame, "ridge_choice", groups)
    monkeypatch.setattr(wide, "choose", lambda *a, **k: pytest.fail("cross_fitted chose again"))
    assert np.array_equal(cross_fitted(frame, "ridge_choice", groups, weight=1.0), expected)
    assert np.array_equal(cross_fitted(frame, "ridge_choice", groups, weight=0.0), pair_ridge)
    assert np.array_equal(cross_fitted(frame, "ridge_choice", groups, weight=0.0), unchosen)  # None: chosen once


def test_the_choice_hands_on_its_out_of_fold_predictions_and_cross_fitted_reuses_them(train, monkeypatch):
    groups = groups_of(train)
    censored = train.assign(censored=np.arange(len(train)) % 7 == 0)
    part = WidePart.fit(censored, "ridge_choice", groups)
    recomputed = cross_fitted(censored, "ridge_choice", groups, weight=part.onehot_weight)
    assert part.out_of_fold is not None and np.array_equal(part.out_of_fold, recomputed)  # censored rows too
    monkeypatch.setattr(wide, "_candidate", lambda *a, **k: pytest.fail("a fold was fitted again"))
    assert np.array_equal(cross_fitted(censored, "ridge_choice", groups, weight=part.onehot_weight,
                                       known=part.out_of_fold), recomputed)
    with pytest.raises(ValueError, match="known predictions"):
        cross_fitted(censored, "ridge_choice", groups, weight=part.onehot_weight, known=part.out_of_fold[1:])
    # A fold `choose` did not predict (NaN) is fitted as before.
    monkeypatch.undo()
    partial = part.out_of_fold.copy()
    partial[cross_fit_folds(len(censored), groups) == 0] = np.nan
    assert np.array_equal(cross_fitted(censored, "ridge_choice", groups, weight=part.onehot_weight, known=partial),
                          recomputed)


def test_fit_wide_takes_the_groups_and_says_what_to_do_without_usable_rows():
    frame = variants(30, seed=4)
    assert fit_wide(frame, "ridge_choice", groups_of(frame)).kind == "ridge_choice"
    with pytest.raises(ValueError, match="needs training rows"):
        fit_wide(frame.assign(censored=True), "ridge_choice", groups_of(frame))
    with pytest.raises(ValueError, match="unknown wide part"):
        fit_wide(frame, "kmer_onehot")


# ----------------------------------------------------------------------------------------------- state, counts

def test_state_round_trip_is_bit_identical_with_the_kinds_shapes(chosen, held_out):
    state = chosen.to_state()
    assert {k: tuple(v.shape) for k, v in state.items()} == state_shapes("ridge_choice")
    assert all(v.dtype == (torch.int64 if k in INTEGER_STATE else torch.float64) for k, v in state.items())
    assert int(state["choice"]) == 1 and int(state["cv_folds"]) == 5
    restored = WidePart.from_state(state, "ridge_choice")
    assert all(torch.equal(v, restored.to_state()[k]) for k, v in state.items())
    assert np.array_equal(restored.predict(held_out), chosen.predict(held_out))
    assert restored.describe() == chosen.describe() and restored.cv_rmse == chosen.cv_rmse
    slot = WideSlot("ridge_choice")
    assert slot.get_buffer("choice").dtype == torch.int64
    slot.store(chosen)
    fresh = WideSlot("ridge_choice")
    fresh.load_state_dict(slot.state_dict())
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in slot.state_dict().items())
    assert fresh.part().choice == 1 and np.array_equal(fresh.part().predict(held_out), chosen.predict(held_out))
    with pytest.raises(ValueError, match="one-hot ridge or choice is unusable"):
        WidePart.from_state({**state, "onehot_coef": state["onehot_coef"][:10]}, "ridge_choice")
    with pytest.raises(ValueError, match="one-hot ridge or choice is unusable"):
        WidePart.from_state({k: v for k, v in state.items() if k != "cv_rmse"}, "ridge_choice")
    with pytest.raises(ValueError, match="choice 2 is not a candidate"):
        WidePart.from_state({**state, "choice": torch.tensor(2)}, "ridge_choice")


def test_prediction_by_blocks_of_chains_is_the_same(chosen, held_out, monkeypatch):
    whole = chosen.predict(held_out)
    monkeypatch.setattr(wide, "_PREDICT_BLOCK", 7)
    assert np.array_equal(chosen.predict(held_out), whole)


def test_an_unnumberable_chain_gives_a_finite_prediction_and_is_counted(train):
    odd = pd.DataFrame([{"heavy": UNNUMBERABLE, "light": VL, "antigen": ANTIGEN, "pkd": 8.0},
                        {"heavy": VH, "light": UNNUMBERABLE, "antigen": ANTIGEN, "pkd": 8.0},
                        {"heavy": VH, "light": "", "antigen": ANTIGEN, "pkd": 8.0}]).assign(censored=False)
    frame = pd.concat([train, odd], ignore_index=True)
    part = WidePart.fit(frame, "ridge_choice", groups_of(frame))
    assert part.choice == 1
    described = part.describe()["onehot_block"]
    assert (described["unnumbered_heavy_chains"], described["unnumbered_light_chains"]) == (1, 1)  # "" is no chain
    assert described["alpha"] is not None
    query = pd.DataFrame([{"heavy": "ACDEFGHIK", "light": "ACDEFGHIK", "antigen": ANTIGEN},
                          {"heavy": "ACDEFGHIK", "light": VL, "antigen": ANTIGEN},
                          {"heavy": VH, "light": VL, "antigen": ANTIGEN}])
    predicted = part.predict(query)
    assert np.all(np.isfinite(predicted))
    assert predicted[0] == part.onehot.mean  # neither side numbered: the block says nothing, the mean remains
    term = part.onehot.block.evaluate(query["heavy"].tolist(), query["light"].tolist())
    assert (term.unnumbered_heavy, term.unnumbered_light) == (2, 1)
    light_only = part.onehot.block.evaluate(["", VH], [VL, ""]).values  # absent chains: not counted, no term
    assert term.values[1] == light_only[0] != 0.0 and term.values[2] == pytest.approx(light_only.sum())
    assert SHARED_NUMBERING["ACDEFGHIK"].failure  # numbered once, kept in the process's shared cache


# ----------------------------------------------------------------------------------------------- in a run

class _Model:
    """What `prepare_wide` uses of a model with a wide part (the network's `WideSlot`, no network)."""

    has_wide = True

    def __init__(self, kind: str):
        self.config = SimpleNamespace(wide=kind)
        self.head = SimpleNamespace(wide=WideSlot(kind))

    def set_wide(self, part: WidePart) -> None:
        self.head.wide.store(part)

    def wide_part(self) -> WidePart:
        return self.head.wide.part()

    def wide_offsets(self, frame: pd.DataFrame) -> np.ndarray:
        return self.wide_part().predict(frame).astype(np.float32)


def test_prepare_wide_passes_the_training_groups_logs_the_choice_and_resumes_it(train, held_out):
    frame = pd.concat([train, held_out], ignore_index=True)
    train_rows, groups = np.arange(len(train)), np.concatenate([groups_of(train), np.full(len(held_out), 99)])
    lines: list[str] = []
    model = _Model("ridge_choice")
    offset = prepare_wide(model, frame, train_rows, groups, None, lines.append)
    part = model.wide_part()
    assert part.choice == 1 and part.cv_rmse == WidePart.fit(train, "ridge_choice", groups_of(train)).cv_rmse
    assert "one-hot ridge chosen (held-out RMSE 0.27 against the k-mer ridge's 0.64 over 5 folds of the run's " \
           "groups); the k-mer ridge: " in lines[0], lines[0]
    assert np.array_equal(offset[train_rows], cross_fitted(train, "ridge_choice", groups_of(train), weight=1.0)
                          .astype(np.float32))
    weights = {f"head.wide.{k}": v for k, v in model.head.wide.state_dict().items()}
    resumed = _Model("ridge_choice")
    assert np.array_equal(prepare_wide(resumed, frame, train_rows, groups, weights, lines.append), offset)
    assert "read from the checkpoint): one-hot ridge chosen" in lines[1]


# ----------------------------------------------------------------------------------------------- ridge_blend

def two_antigens(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame`'s rows against two antigens: every other row against a variant of ANTIGEN rich in tryptophan that
    binds 0.5 pKd worse (the k-mer ridge can see it, the one-hot ridge of VH and VL cannot)."""
    weaker = ANTIGEN[:40] + "W" * 12 + ANTIGEN[52:]
    second = np.arange(len(frame)) % 2 == 1
    return frame.assign(antigen=np.where(second, weaker, ANTIGEN),
                        pkd=frame["pkd"].to_numpy(float) - 0.5 * second)


@pytest.fixture(scope="module")
def blended(train) -> WidePart:
    return WidePart.fit(train, "ridge_blend", groups_of(train))


def test_the_blend_weight_minimises_the_held_out_error_of_the_two_candidates(train, blended):
    groups = groups_of(train)
    y = train["pkd"].to_numpy(float)
    kmer, onehot = (cross_fitted(train, "ridge_choice", groups, weight=w) for w in (0.0, 1.0))
    grid = np.linspace(0.0, wide.BLEND_MAX_ONEHOT, 91)
    errors = [rmse(kmer + w * (onehot - kmer), y) for w in grid]
    assert 0.0 < blended.weight <= wide.BLEND_MAX_ONEHOT
    assert abs(blended.weight - grid[int(np.argmin(errors))]) <= 0.01
    assert blended.cv_rmse == pytest.approx((rmse(kmer, y), rmse(onehot, y)), rel=1e-12)
    assert blended.blend_rmse == pytest.approx(rmse(kmer + blended.weight * (onehot - kmer), y), rel=1e-12)
    assert blended.blend_rmse <= min(errors) + 1e-12 and blended.blend_rmse < blended.cv_rmse[0]
    assert np.array_equal(blended.out_of_fold, kmer + blended.weight * (onehot - kmer))
    described = blended.describe()["blend"]
    assert described["weights"] == {"k-mer ridge": 1.0 - blended.weight, "one-hot ridge": blended.weight}
    assert "choice" not in blended.describe()


def test_the_blend_predicts_the_weighted_sum_and_cross_fits_with_its_weight(train, held_out, blended):
    kmer = KmerRidgeBaseline().fit(train).predict(held_out)
    onehot = blended.onehot.predict(held_out)
    assert np.allclose(blended.predict(held_out), (1 - blended.weight) * kmer + blended.weight * onehot, atol=1e-12)
    groups = groups_of(train)
    assert np.allclose(cross_fitted(train, "ridge_blend", groups, weight=blended.weight, known=blended.out_of_fold),
                       cross_fitted(train, "ridge_blend", groups, weight=blended.weight), atol=1e-12)


def test_the_blend_keeps_the_antigen_where_the_choice_drops_it(train):
    frame = two_antigens(train)
    groups = groups_of(frame)
    picked, blended = (WidePart.fit(frame, kind, groups) for kind in ("ridge_choice", "ridge_blend"))
    assert picked.choice == 1  # the one-hot ridge wins the pick: the planted position effect dominates
    assert 0.5 < blended.weight < 1.0  # ...and most of the blend's weight, never all of it
    one_antibody = pd.DataFrame({"heavy": [VH, VH], "light": [VL, VL],
                                 "antigen": two_antigens(train.iloc[:2])["antigen"].tolist()})
    same, differs = picked.predict(one_antibody), blended.predict(one_antibody)
    assert same[0] == same[1]  # no antigen in the chosen candidate: both antigens get one value
    assert differs[0] > differs[1] + 0.02  # the blend ranks the weaker antigen below


def test_the_blend_round_trips_through_the_slot_and_refuses_a_weight_above_the_cap(blended, held_out):
    state = blended.to_state()
    assert {k: tuple(v.shape) for k, v in state.items()} == state_shapes("ridge_blend")
    slot = WideSlot("ridge_blend")
    slot.store(blended)
    fresh = WideSlot("ridge_blend")
    fresh.load_state_dict(slot.state_dict())
    restored = fresh.part()
    assert restored.weight == blended.weight and restored.describe() == blended.describe()
    assert np.array_equal(restored.predict(held_out), blended.predict(held_out))
    with pytest.raises(ValueError, match="weight 0.95 is outside"):
        WidePart.from_state({**state, "weight": torch.tensor(0.95, dtype=torch.float64)}, "ridge_blend")


def test_prepare_wide_logs_the_blend_weights(train):
    lines: list[str] = []
    model = _Model("ridge_blend")
    prepare_wide(model, train, np.arange(len(train)), groups_of(train), None, lines.append)
    part = model.wide_part()
    assert (f"{1 - part.weight:.2f} x k-mer ridge + {part.weight:.2f} x one-hot ridge (held-out RMSE "
            f"{part.blend_rmse:.2f}; alone {part.cv_rmse[0]:.2f} and {part.cv_rmse[1]:.2f} over 5 folds of the run's "
            "groups)") in lines[0], lines[0]


# --------------------------------------------------------------------------------------------- grouped_blend
MARKER = ("heavy", VH.index("IYPTNGYT") + 4)
"""A neutral substitution (N -> D in HCDR2) that marks the strong groups below: it carries no effect within a group."""


def grouped(n: int, seed: int, marker_share: tuple[float, float] = (0.8, 0.2)) -> pd.DataFrame:
    """`variants` in eight groups: groups 0-3 against ANTIGEN bind 1.5 pKd better, groups 4-7 against a
    tryptophan-rich variant 1.5 worse; the neutral MARKER is in `marker_share[0]` of the strong groups' rows and
    `marker_share[1]` of the weak ones' (a between-group confounder, no within-group effect)."""
    frame = variants(n, seed).assign(group=lambda f: np.arange(len(f)) % 8)
    rng = np.random.default_rng(seed + 100)
    strong = frame["group"].to_numpy() < 4
    marked = rng.random(n) < np.where(strong, *marker_share)
    side, offset = MARKER
    heavy = [h[:offset] + "D" + h[offset + 1:] if m else h for h, m in zip(frame["heavy"], marked)]
    weaker = ANTIGEN[:40] + "W" * 12 + ANTIGEN[52:]
    return frame.assign(heavy=heavy, antigen=np.where(strong, ANTIGEN, weaker),
                        pkd=frame["pkd"].to_numpy(float) + np.where(strong, 1.5, -1.5))


def demeaned(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """By hand: each row's pKd minus its group's mean plus the overall mean; each row's group mean; the mean."""
    overall = float(frame["pkd"].mean())
    means = frame.groupby("group")["pkd"].transform("mean").to_numpy(float)
    return (frame.assign(pkd=frame["pkd"].to_numpy(float) - means + overall), frame.assign(pkd=means), overall)


@pytest.fixture(scope="module")
def grouped_train() -> pd.DataFrame:
    return grouped(240, seed=3)


@pytest.fixture(scope="module")
def grouped_part(grouped_train) -> WidePart:
    return WidePart.fit(grouped_train, "grouped_blend", grouped_train["group"].to_numpy())


def test_grouped_blend_is_the_blend_of_within_group_deviations_plus_a_level_ridge_on_group_means(
        grouped_train, grouped_part, held_out):
    within, level, overall = demeaned(grouped_train)
    groups = grouped_train["group"].to_numpy()
    blend = WidePart.fit(within, "ridge_blend", groups)
    level_parts = WidePart.fit(level, "kmer_ridge")  # the k-mer parts, fitted to the group means
    assert grouped_part.weight == blend.weight and grouped_part.level.groups == 8
    assert grouped_part.level.mean == pytest.approx(overall, abs=1e-12)
    assert np.allclose(grouped_part.onehot.block.coef, blend.onehot.block.coef, atol=1e-12)
    query = held_out.assign(antigen=np.where(np.arange(len(held_out)) % 2, ANTIGEN, grouped_train["antigen"].iloc[4]))
    scale = grouped_part.level.within_scale  # the blend's deviations, scaled (`_within_scale`)
    assert 0 < scale <= 1 and grouped_part.describe()["level"]["within_scale"] == scale
    assert np.allclose(grouped_part.predict(query),
                       overall + scale * (blend.predict(query) - overall) + level_parts.predict(query) - overall,
                       atol=1e-9)
    # The out-of-fold predictions (what the network trains against) follow the same formula, fold by fold, and
    # their error is the bound's margin.
    out_of_fold = cross_fitted(grouped_train, "grouped_blend", groups, weight=grouped_part.weight,
                               local=grouped_part.local, within_scale=scale)
    assert np.allclose(out_of_fold, grouped_part.out_of_fold, atol=1e-9)
    assert np.array_equal(cross_fitted(grouped_train, "grouped_blend", groups, weight=grouped_part.weight,
                                       known=grouped_part.out_of_fold), grouped_part.out_of_fold)
    assert grouped_part.bound.margin == pytest.approx(rmse(out_of_fold, grouped_train["pkd"].to_numpy(float)))
    y = grouped_train["pkd"].to_numpy(float)
    assert (grouped_part.bound.low, grouped_part.bound.high) == (y.min(), y.max())
    assert grouped_part.describe()["level"]["groups"] == 8


def test_the_soft_bound_keeps_values_inside_and_every_ranking_and_goes_at_most_its_margin_beyond():
    bound = wide.SoftBound(6.0, 9.0, 0.5)
    values = np.array([-40.0, 5.0, 5.9, 6.0, 7.5, 9.0, 9.2, 10.0, 14.0, 60.0])
    out = bound.apply(values)
    inside = (values >= 6.0) & (values <= 9.0)
    assert np.array_equal(out[inside], values[inside])
    assert np.all(np.diff(out) > 0)  # strictly increasing: the order of every pair is kept
    assert out.min() > 5.5 and out.max() < 9.5 and out[-1] > 9.49
    assert out[6] == pytest.approx(9.2, abs=0.07)  # just past the edge: barely moved


def test_grouped_blend_fits_its_candidates_within_groups_so_a_between_group_confounder_gets_no_effect():
    # All groups against one antigen: the level difference is the assay's, nothing in the sequences carries it.
    frame = grouped(240, seed=3).assign(antigen=ANTIGEN)
    groups = frame["group"].to_numpy()
    plain, split = (WidePart.fit(frame, kind, groups) for kind in ("ridge_blend", "grouped_blend"))
    marker = column(*MARKER, "D")
    assert plain.onehot.block.coef[marker] > 0.3  # the plain one-hot ridge credits the marker with the level
    assert abs(split.onehot.block.coef[marker]) < 0.1  # fitted to deviations within groups: no effect
    # ...while it keeps the planted within-group effect: any substitution at this HCDR3 site costs 2.
    side, offset = SITES[2]
    mutant = VH[:offset] + ("A" if VH[offset] != "A" else "G") + VH[offset + 1:]
    pair = pd.DataFrame({"heavy": [VH, mutant], "light": [VL, VL], "antigen": [ANTIGEN, ANTIGEN]})
    assert side == "heavy" and np.diff(split.onehot.predict(pair))[0] < -1.0


def test_grouped_blend_without_two_groups_is_ridge_blend_plus_the_local_term_bounded_and_round_trips(
        grouped_train, grouped_part):
    alone = WidePart.fit(grouped_train, "grouped_blend", None)
    plain = WidePart.fit(grouped_train, "ridge_blend", None)
    assert alone.level is None and "level" in alone.describe() and alone.describe()["level"] is None
    # No level, no scale: the blend plus the local term (random folds), whose held-out error is the bound's margin.
    y = grouped_train["pkd"].to_numpy(float)
    assert alone.local is not None and alone.local.error_ratio < 1
    assert rmse(alone.out_of_fold, y) < plain.blend_rmse
    assert alone.bound.margin == pytest.approx(rmse(alone.out_of_fold, y))
    assert np.array_equal(dataclasses.replace(alone, local=None).predict(grouped_train), plain.predict(grouped_train))
    assert np.allclose(alone.predict(grouped_train),
                       plain.predict(grouped_train) + alone.local.predict(wide.local_rows(grouped_train)), atol=1e-12)
    rows = np.arange(len(grouped_train))  # every row its own group: no level either (a mean of one row is its pKd)
    singletons = WidePart.fit(grouped_train, "grouped_blend", rows)
    assert singletons.level is None
    assert np.array_equal(dataclasses.replace(singletons, local=None).predict(grouped_train),
                          WidePart.fit(grouped_train, "ridge_blend", rows).predict(grouped_train))
    for part in (grouped_part, alone):
        state = part.to_state()
        fitted = 0 if part.local is None else len(part.local.rows)  # the local term's tensors grow with its rows
        assert {k: tuple(v.shape)[1:] if k in wide.VARIABLE_STATE else tuple(v.shape) for k, v in state.items()} == {
            k: shape[1:] if k in wide.VARIABLE_STATE else shape for k, shape in state_shapes("grouped_blend").items()}
        assert all(len(state[k]) == fitted for k in wide.VARIABLE_STATE if k != "local_antigens")
        assert state["level_groups"].dtype == torch.int64 and "level_groups" in INTEGER_STATE
        slot, fresh = WideSlot("grouped_blend"), WideSlot("grouped_blend")
        slot.store(part)
        fresh.load_state_dict(slot.state_dict())
        assert np.array_equal(fresh.part().predict(grouped_train), part.predict(grouped_train))
        assert fresh.part().describe() == part.describe()
    state = grouped_part.to_state()
    with pytest.raises(ValueError, match="level or bound is unusable: 1 groups"):
        WidePart.from_state({**state, "level_groups": torch.tensor(1, dtype=torch.int64)}, "grouped_blend")
    with pytest.raises(ValueError, match="level or bound is unusable: bound .* with margin -1"):
        WidePart.from_state({**state, "bound": torch.tensor([6.0, 9.0, -1.0], dtype=torch.float64)}, "grouped_blend")


def test_prepare_wide_logs_the_grouped_level(grouped_train):
    lines: list[str] = []
    model = _Model("grouped_blend")
    offset = prepare_wide(model, grouped_train, np.arange(len(grouped_train)), grouped_train["group"].to_numpy(),
                          None, lines.append)
    part = model.wide_part()
    assert (f"fitted to deviations from the means of 8 groups (scaled by {part.level.within_scale:.2f}), the level a "
            "ridge on standardised" in lines[0]), lines[0]
    assert (f"wide + deep soft-bounded to [{part.bound.low:.2f}, {part.bound.high:.2f}] with a margin of "
            f"{part.bound.margin:.2f}" in lines[0]), lines[0]
    groups = grouped_train["group"].to_numpy()  # training rows: cross-fitted, level included
    assert np.allclose(offset, cross_fitted(grouped_train, "grouped_blend", groups, weight=part.weight,
                                            local=part.local, within_scale=part.level.within_scale), atol=1e-5)


def test_prepare_wide_without_groups_logs_the_local_term_and_resumes_it(grouped_train):
    lines: list[str] = []
    model = _Model("grouped_blend")
    rows = np.arange(len(grouped_train))
    offset = prepare_wide(model, grouped_train, rows, None, None, lines.append)
    part = model.wide_part()
    assert part.level is None and "deviations from the means" not in lines[0]
    assert f"a local term on {len(part.local.rows)} training rows" in lines[0], lines[0]
    fitted = WidePart.fit(grouped_train, "grouped_blend", None)  # training rows: its own out-of-fold predictions
    assert np.allclose(offset, fitted.out_of_fold, atol=1e-5)
    resumed, saved = _Model("grouped_blend"), {f"head.wide.{k}": v for k, v in model.head.wide.state_dict().items()}
    assert np.array_equal(prepare_wide(resumed, grouped_train, rows, None, saved, lines.append), offset)


def test_the_within_scale_is_the_deviations_share_beside_the_held_out_offsets_and_older_states_read_one(
        grouped_part):
    fits = pd.DataFrame({"pkd": [7.0, 9.0, 6.0, 10.0, 8.0, np.nan], "censored": [False] * 4 + [True, False]})
    groups = np.array(["a", "a", "b", "b", "b", "b"])
    # Deviations from 8: -1, 1, -2, 2 (mean square 2.5); out of fold, group a is predicted 1 too high and b 1 too
    # low (mean square offset 1); the censored row and the row without a pKd count for neither.
    candidates = 8.0 + np.array([0.0, 2.0, -3.0, 1.0, 40.0, -40.0])
    assert wide._within_scale(fits, groups, candidates, 8.0) == pytest.approx(2.5 / 3.5)
    assert wide._within_scale(fits, groups, candidates - np.array([1, 1, -1, -1, 0, 0]), 8.0) == 1.0  # no offset
    assert wide._within_scale(fits, groups, None, 8.0) == 1.0  # not cross-validated
    slot, older = WideSlot("grouped_blend"), WideSlot("grouped_blend")
    slot.store(grouped_part)
    state = {k: v for k, v in slot.state_dict().items() if k != "level_within_scale"}
    older.load_state_dict(state)  # written before the scale: the deviations count in full
    assert older.part().level.within_scale == 1.0
    with pytest.raises(ValueError, match="level or bound is unusable: within-group scale 1.5"):
        WidePart.from_state({**grouped_part.to_state(), "level_within_scale": torch.tensor(1.5, dtype=torch.float64)},
                            "grouped_blend")
