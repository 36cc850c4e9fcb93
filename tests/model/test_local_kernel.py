"""The local term of "grouped_blend": a kernel ridge on what the linear within-group part leaves, which carries an
antibody-by-antigen interaction near its training rows and nothing far from them."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics.pairwise import euclidean_distances

from abag.encoding.kmers import kmer_composition
from abag.model import local_kernel
from abag.model.local_kernel import fit_local, local_out_of_fold
from abag.model.wide import (
    LOCAL_EMPTY_SHAPES,
    ONEHOT_ENCODER,
    WidePart,
    WideSlot,
    cross_fit_folds,
    cross_fitted,
    local_rows,
    state_shapes,
)
from abag.numbering import number_chain

pytest.importorskip("anarcism")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "numbering"))
from numbering_sequences import (ADALIMUMAB_VH, ADALIMUMAB_VL, HER2_FRAGMENT, JUNK,  # noqa: E402
                                 TRASTUZUMAB_VH, TRASTUZUMAB_VL)

VH, VL, ANTIGEN = TRASTUZUMAB_VH, TRASTUZUMAB_VL, HER2_FRAGMENT
RESIDUES = "ACDEFGHIKLMNPQRSTVWY"
CDR3 = VH.index("WGGDGFYAMDY")
FAMILY_B_CDR3 = "YSSEGFYAMDY"  # four substitutions at the start of HCDR3 set family B apart
# Antigen variants of two kinds: near ANTIGEN (type 1) and with a tryptophan-rich block (type 2).
TYPE_1 = [ANTIGEN, ANTIGEN[:70] + "A" + ANTIGEN[71:]]
TYPE_2 = [ANTIGEN[:40] + "W" * 12 + ANTIGEN[52:], ANTIGEN[:40] + "W" * 12 + ANTIGEN[52:70] + "A" + ANTIGEN[71:]]


def antibody(family: str, rng: np.random.Generator) -> str:
    """A heavy chain of one family: its HCDR3 start, plus one random substitution in HCDR2."""
    heavy = list(VH if family == "A" else VH[:CDR3] + FAMILY_B_CDR3 + VH[CDR3 + len(FAMILY_B_CDR3):])
    site = VH.index("IYPTNGYT") + int(rng.integers(8))
    heavy[site] = RESIDUES[int(rng.integers(20))]
    return "".join(heavy)


def interaction(per_family: int, seed: int) -> pd.DataFrame:
    """Every antibody against all four antigens; pKd 8 + 1 where family and antigen type match, - 1 where they do
    not, + noise: no antibody or antigen is better on average, only the pairing counts."""
    rng = np.random.default_rng(seed)
    rows = []
    for family in ("A", "B"):
        for _ in range(per_family):
            heavy = antibody(family, rng)
            for kind, antigens in ((1, TYPE_1), (2, TYPE_2)):
                for antigen in antigens:
                    match = (family == "A") == (kind == 1)
                    rows.append({"heavy": heavy, "light": VL, "antigen": antigen, "family": family, "type": kind,
                                 "pkd": 8.0 + (1.0 if match else -1.0) + rng.normal(0, 0.2)})
    frame = pd.DataFrame(rows).drop_duplicates(["heavy", "antigen"]).reset_index(drop=True)
    return frame.assign(censored=False)


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return interaction(12, seed=0)


@pytest.fixture(scope="module")
def part(train) -> WidePart:
    return WidePart.fit(train, "grouped_blend", train["heavy"].to_numpy())


def test_local_rows_keep_the_one_hot_and_the_distances_are_those_of_the_dense_rows(train):
    frame = train.iloc[::5].reset_index(drop=True)
    rows = local_rows(frame)
    numbered = [number_chain(c) for c in frame["heavy"]], [number_chain(c) for c in frame["light"]]
    onehot = ONEHOT_ENCODER.transform(*numbered, dtype=np.float64).matrix
    assert (rows.onehot() != onehot).nnz == 0
    antigens = np.hstack([kmer_composition(frame["antigen"].tolist(), k) for k in (1, 2)])
    antibody_d, antigen_d = local_kernel.squared_distances(rows, rows.take(np.arange(3)))
    assert np.allclose(antibody_d, euclidean_distances(onehot.toarray(), onehot[:3].toarray(), squared=True))
    assert np.allclose(antigen_d, euclidean_distances(antigens, antigens[:3], squared=True))
    assert np.all(antibody_d % 2 == 0) and antibody_d.max() <= 12  # 2 per differing position, at most 6 here


def test_the_local_term_learns_an_antibody_by_antigen_interaction_the_linear_parts_cannot(train, part):
    assert part.level is not None and part.local is not None and part.local.error_ratio < 0.5
    additive = dataclasses.replace(part, local=None)
    rng = np.random.default_rng(99)
    for family, better in (("A", 1), ("B", 2)):
        heavy = antibody(family, rng)
        assert heavy not in set(train["heavy"])
        query = pd.DataFrame({"heavy": heavy, "light": VL, "antigen": TYPE_1 + TYPE_2, "type": [1, 1, 2, 2]})
        gap = (lambda p: p[query["type"] == better].mean() - p[query["type"] != better].mean())
        assert gap(part.predict(query)) > 1.0  # the true gap is 2
        assert abs(gap(additive.predict(query))) < 0.3  # additive parts: every antibody ranks antigens alike


def test_the_local_term_is_silent_far_from_its_training_rows(part):
    far = pd.DataFrame({"heavy": [ADALIMUMAB_VH], "light": [ADALIMUMAB_VL], "antigen": [JUNK]})
    assert abs(part.local.predict(local_rows(far))[0]) < 1e-3
    near = pd.DataFrame({"heavy": [VH], "light": [VL], "antigen": [TYPE_1[0]]})
    assert abs(part.local.predict(local_rows(near))[0]) > 0.5


def test_next_to_no_term_on_noise_and_a_sample_above_the_row_cap_that_refitting_reproduces(train):
    rows = local_rows(train)
    fold = cross_fit_folds(len(train), train["heavy"].to_numpy())
    for seed in (0, 1, 2):  # noise: no term, or one that changes next to nothing (the strongest penalty)
        noise = np.random.default_rng(seed).normal(0, 1, len(train))
        fitted = fit_local(rows, noise, fold)
        assert fitted.kernel is None or (fitted.kernel.error_ratio > 0.98 and np.std(fitted.out_of_fold) < 0.2)
    target = train["pkd"].to_numpy(float) - 8.0
    target[:5] = np.nan  # not fitted (no exact pKd), still predicted out of fold
    capped = fit_local(rows, target, fold, max_rows=40)
    assert capped.kernel is not None and len(capped.kernel.rows) == 40 and capped.kernel.candidates == len(train) - 5
    assert np.isfinite(capped.out_of_fold).all() and np.any(capped.out_of_fold[:5] != 0)
    again = local_out_of_fold(rows, target, fold, capped.kernel, max_rows=40)
    assert np.array_equal(again, capped.out_of_fold)


def test_cross_fitting_on_resume_reproduces_the_local_terms_out_of_fold_predictions(train, part):
    groups = train["heavy"].to_numpy()
    resumed = cross_fitted(train, "grouped_blend", groups, weight=part.weight, local=part.local,
                           within_scale=part.level.within_scale)
    assert np.array_equal(resumed, part.out_of_fold)
    assert np.array_equal(cross_fitted(train, "grouped_blend", groups), part.out_of_fold)
    without = cross_fitted(train, "grouped_blend", groups, weight=part.weight, within_scale=part.level.within_scale)
    y = train["pkd"].to_numpy(float)
    assert np.mean((resumed - y) ** 2) < 0.5 * np.mean((without - y) ** 2)


def test_the_local_term_round_trips_through_the_slot_and_an_older_state_loads_without_one(train, part):
    slot, fresh = WideSlot("grouped_blend"), WideSlot("grouped_blend")
    assert tuple(fresh.get_buffer("local_weights").shape) == (0,)
    slot.store(part)
    state = slot.state_dict()
    assert state["local_codes"].dtype == torch.uint8 and len(state["local_weights"]) == len(part.local.rows)
    fresh.load_state_dict({k: v.half() if k == "local_antigens" else v for k, v in state.items()})
    assert fresh.get_buffer("local_antigens").dtype == torch.float32  # the slot's dtype, whatever was stored
    fresh.load_state_dict(state)
    assert np.array_equal(fresh.part().predict(train), part.predict(train))
    assert fresh.part().describe() == part.describe() and fresh.part().describe()["local"]["fitted_rows"] > 0
    older = WideSlot("grouped_blend")
    older.load_state_dict({k: v for k, v in state.items() if k not in LOCAL_EMPTY_SHAPES})
    assert older.part().local is None
    assert np.array_equal(older.part().predict(train), dataclasses.replace(part, local=None).predict(train))
    assert set(LOCAL_EMPTY_SHAPES) <= set(state_shapes("grouped_blend"))
    broken = {**part.to_state(), "local_antigen_index": torch.full((len(part.local.rows),), 99, dtype=torch.int64)}
    with pytest.raises(ValueError, match="local term is unusable: .* antigen indices into 4 antigens"):
        WidePart.from_state(broken, "grouped_blend")


def test_the_wide_part_is_level_plus_scaled_within_plus_local_as_the_readme_states(train, part):
    query = interaction(3, seed=7)
    level, scale = part.level, part.level.within_scale
    within = dataclasses.replace(part, level=None, local=None).predict(query)  # the blend, around the mean
    by_hand = (level.mean + level.predict(query) + scale * (within - level.mean)
               + part.local.predict(local_rows(query)))
    assert np.allclose(part.predict(query), by_hand, atol=1e-12)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "= level + s·within + local" in readme and "s_d²/(s_d² + s_o²)" in readme


def test_without_groups_the_local_term_comes_alone_and_cross_fitting_reproduces_it(train):
    # A random split: no level and no scale, the local term on the blend's residuals over random folds.
    part = WidePart.fit(train, "grouped_blend", None)
    assert part.level is None and part.local is not None and part.local.error_ratio < 0.5
    rng = np.random.default_rng(99)
    heavy = antibody("B", rng)
    query = pd.DataFrame({"heavy": heavy, "light": VL, "antigen": TYPE_1 + TYPE_2})
    predicted = part.predict(query)
    assert predicted[2:].mean() - predicted[:2].mean() > 1.0  # family B binds type 2: the true gap is 2
    resumed = cross_fitted(train, "grouped_blend", None, weight=part.weight, local=part.local)
    assert np.array_equal(resumed, part.out_of_fold)


def epistatic(seed: int) -> pd.DataFrame:
    """All 64 variants of six HCDR2/HCDR3 substitutions against one antigen: each adds 0.4, but the first two
    together cost 2.4 (sign epistasis, as between CR9114's mutations), plus noise."""
    sites = [VH.index("IYPTNGYT") + 1, VH.index("IYPTNGYT") + 4, CDR3 + 1, CDR3 + 3, CDR3 + 5, CDR3 + 7]
    rng = np.random.default_rng(seed)
    rows = []
    for code in range(64):
        mutated = [(code >> i) & 1 for i in range(6)]
        heavy = list(VH)
        for site, on in zip(sites, mutated):
            heavy[site] = ("A" if VH[site] != "A" else "G") if on else VH[site]
        pkd = 8.0 + 0.4 * sum(mutated) - 2.4 * mutated[0] * mutated[1] + rng.normal(0, 0.1)
        rows.append({"heavy": "".join(heavy), "light": VL, "antigen": ANTIGEN, "pkd": pkd})
    return pd.DataFrame(rows).assign(censored=False)


def test_without_groups_the_local_term_learns_how_substitutions_combine():
    frame = epistatic(seed=4)
    test = np.random.default_rng(4).permutation(len(frame))[:16]
    held_out, train = frame.iloc[test], frame.drop(index=test)
    with_term = WidePart.fit(train, "grouped_blend", None)
    assert with_term.local is not None
    additive = dataclasses.replace(with_term, local=None)  # the blend alone: each substitution one effect
    y = held_out["pkd"].to_numpy()
    error = {name: float(np.sqrt(np.mean((p.predict(held_out) - y) ** 2))) for name, p in
             (("local", with_term), ("additive", additive))}
    assert error["local"] < 0.6 * error["additive"], error
