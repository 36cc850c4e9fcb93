"""Tests for abag.evaluation.variant_baselines: the heavy 1–3-mer ridge and the IMGT-aligned one-hot ridge, each
shown to recover what the other cannot (a planted effect at one IMGT position; a planted heavy-chain 3-mer)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from test_baselines import _shared_chains
from threadpoolctl import threadpool_limits

from abag.evaluation.baselines import fit_baselines
from abag.evaluation.variant_baselines import (
    BASELINES,
    HeavyKmerRidgeBaseline,
    OneHotRidgeBaseline,
    fit_named_baselines,
)
from abag.model.ridge import RIDGE_ALPHAS, KmerRidgeBaseline, pair_features
from abag.policy import AMINO_ACIDS

TRASTUZUMAB_VH = ("EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYC"
                  "SRWGGDGFYAMDYWGQGTLVTVSS")
TRASTUZUMAB_VL = ("DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPP"
                  "TFGQGTKVEIK")


def _spearman(a, b) -> float:
    from scipy import stats

    return float(stats.spearmanr(a, b).statistic)


def _variants(heavy: list[str], pkd: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"heavy": heavy, "light": TRASTUZUMAB_VL, "antigen": "MKTAYIAKQRQISFVKSHFSRQLEER",
                         "pkd": pkd})


def _planted_position(n: int, seed: int) -> pd.DataFrame:
    """Trastuzumab VH with its HCDR2 window IYPTNGYT replaced by random residues; pKd depends only on the residue
    at the window's 4th position (one IMGT position), through a random effect per amino acid."""
    rng = np.random.default_rng(seed)
    effect = np.random.default_rng(7).normal(0, 1, 20)
    start = TRASTUZUMAB_VH.index("IYPTNGYT")
    heavy, pkd = [], []
    for _ in range(n):
        window = rng.integers(0, 20, 8)
        heavy.append(TRASTUZUMAB_VH[:start] + "".join(AMINO_ACIDS[i] for i in window) + TRASTUZUMAB_VH[start + 8:])
        pkd.append(8 + effect[window[3]] + rng.normal(0, 0.05))
    return _variants(heavy, np.array(pkd))


def _planted_kmer(n: int, seed: int) -> pd.DataFrame:
    """Trastuzumab VH with a random HCDR3 (10–15 residues from 8 letters) of which half carry the 3-mer GSY at a
    random offset; pKd = 7 + 1.5 per GSY in the heavy chain. One-hot positions cannot express "GSY anywhere"."""
    rng = np.random.default_rng(seed)
    letters = list("GSYADKLT")
    cdr3 = TRASTUZUMAB_VH.index("SRWGGDGFYAMDY")
    heavy, pkd = [], []
    for i in range(n):
        middle = "".join(rng.choice(letters, int(rng.integers(10, 16))))
        if i % 2:
            at = int(rng.integers(0, len(middle) - 3))
            middle = middle[:at] + "GSY" + middle[at + 3:]
        chain = TRASTUZUMAB_VH[:cdr3] + "SR" + middle + "DY" + TRASTUZUMAB_VH[cdr3 + 13:]
        heavy.append(chain)
        pkd.append(7 + 1.5 * chain.count("GSY") + rng.normal(0, 0.05))
    return _variants(heavy, np.array(pkd))


def test_onehot_ridge_recovers_an_effect_at_one_imgt_position_that_the_heavy_kmer_ridge_misses() -> None:
    train, test = _planted_position(300, seed=1), _planted_position(150, seed=2)
    onehot, kmer = OneHotRidgeBaseline().fit(train), HeavyKmerRidgeBaseline().fit(train)
    assert onehot.unnumbered_train_ == 0 and "IMGT-aligned one-hot" in onehot.method
    assert _spearman(test["pkd"], onehot.predict(test)) > 0.9
    assert onehot.unnumbered_ == 0
    assert _spearman(test["pkd"], kmer.predict(test)) < 0.7  # the residue is diluted among its random neighbours


def test_heavy_kmer_ridge_recovers_a_planted_3mer_that_the_onehot_ridge_misses() -> None:
    train, test = _planted_kmer(300, seed=3), _planted_kmer(150, seed=4)
    onehot, kmer = OneHotRidgeBaseline().fit(train), HeavyKmerRidgeBaseline().fit(train)
    assert kmer.chains == ("heavy",) and kmer.ks == (1, 2, 3)
    assert "1-3-mer composition of the heavy chain (8,421 features)" in kmer.method
    assert set(kmer.chain_contributions(test)) == {"heavy"}
    # pKd takes two levels (with or without GSY): Pearson, since Spearman also scores the noise within a level
    assert np.corrcoef(test["pkd"], kmer.predict(test))[0, 1] > 0.85
    assert onehot.unnumbered_train_ == 0
    assert np.corrcoef(test["pkd"], onehot.predict(test))[0, 1] < 0.6


def test_onehot_ridge_gives_unnumbered_rows_the_training_mean_and_counts_them() -> None:
    train = _planted_position(40, seed=5)
    junk = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEG"
    train.loc[[0, 1], "heavy"] = junk                 # not an antibody: never numbered
    train.loc[2, "heavy"] = TRASTUZUMAB_VL            # a light chain in the heavy column
    model = OneHotRidgeBaseline().fit(train)
    assert model.unnumbered_train_ == 3 and "37 of 40 training rows numbered" in model.method
    test = _planted_position(4, seed=6)
    test.loc[1, "heavy"] = junk
    test.loc[2, "light"] = junk                      # a light chain given that has no light domain
    predicted = model.predict(test)
    assert model.unnumbered_ == 2
    assert predicted[[1, 2]] == pytest.approx([train["pkd"].mean()] * 2)
    vhh = test.assign(light="")                      # no light chain: zeros on the light side, not a failure
    vhh.loc[1, "heavy"] = TRASTUZUMAB_VH
    model.predict(vhh)
    assert model.unnumbered_ == 0


def test_kmer_ridge_on_a_chain_subset_matches_sklearn_on_those_columns() -> None:
    train, test = _shared_chains(300, 120, 20, 8, 1.0, seed=6), _shared_chains(100, 120, 20, 8, 1.0, seed=7)
    ours = KmerRidgeBaseline(ks=(1, 2), chains=("heavy",)).fit(train)
    # pair_features: [heavy | light | antigen compositions | light flag | heavy, light, antigen log lengths]
    heavy_columns = list(range(420)) + [3 * 420 + 1]
    with threadpool_limits(1):
        direct = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(
            pair_features(train)[:, heavy_columns], train["pkd"])
    assert ours.alpha_ == direct[-1].alpha_
    assert np.abs(ours.predict(test) - direct.predict(pair_features(test)[:, heavy_columns])).max() < 1e-6
    assert ours.coef_.shape == (421,)
    with pytest.raises(ValueError, match="chains must be"):
        KmerRidgeBaseline(chains=("heavy", "cdr3"))


def test_named_baselines_fit_by_name_and_the_default_pair_stays() -> None:
    df = _shared_chains(120, 40, 10, 5, 1.0, seed=8)
    assert set(fit_baselines(df)) == {"train_mean", "kmer_ridge"}  # what abag train prints: unchanged
    assert set(BASELINES) == {"train_mean", "kmer_ridge", "heavy_kmer123_ridge", "onehot_ridge"}
    assert set(fit_named_baselines(df, names=("heavy_kmer123_ridge",))) == {"heavy_kmer123_ridge"}
    with pytest.raises(ValueError, match="unknown baseline"):
        fit_named_baselines(df, names=("nope",))
