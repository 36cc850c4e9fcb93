"""`suggest_batch`: rank candidate variants and choose the next batch to measure (one round of maturation).

Reads top to bottom: clean the candidates (repeats and already-measured variants removed), encode measured
and candidate variants together (`encoding`), gather the checkpoint's embeddings and prior when a model is
given (`checkpoint_inputs`), choose the variant model by cross-validation on the measured variants
(`selection`), predict every candidate, and pick the batch with the acquisition strategy under the
diversity rule (`acquisition`, `diversity`). Without measured variants (or with fewer than
`selection.MIN_CV_ROWS` and a checkpoint) the checkpoint's predictions rank the candidates.
Replicate measurements of one variant are averaged first; measured rows censored at an assay floor enter the
models at their bound (the report counts them).
Imports numpy, pandas, abag.data (validation errors, replicate averaging, column names) and the abag.suggest
modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from abag.data import DataValidationError, RowProblem, prepare_pairs
from abag.data.columns import free_column_name
from abag.suggest.acquisition import acquisition, needs_std
from abag.suggest.candidates import KEY, clean_candidates
from abag.suggest.checkpoint_inputs import CheckpointInputs, checkpoint_inputs
from abag.suggest.config import SuggestConfig, SuggestError
from abag.suggest.diversity import BatchPicks, pick_batch
from abag.suggest.encoding import encode_variants
from abag.suggest.selection import MIN_CV_ROWS, ModelChoice, choose_model
from abag.suggest.variant_models import GPModel, PriorModel, RidgeModel, scale_blocks

__all__ = ["SuggestReport", "SuggestResult", "suggest_batch", "OUTPUT_COLUMNS"]

OUTPUT_COLUMNS = ("pkd_pred", "pkd_std", "acquisition", "pick")


@dataclass(frozen=True)
class SuggestReport:
    """What a round did: the inputs it counted, the features, the model choice, and the batch rule."""

    config: SuggestConfig
    n_candidates_given: int
    n_repeats_dropped: int
    n_measured_dropped: int
    n_measured: int
    n_censored: int
    features: str
    model: ModelChoice
    radius: tuple[int, ...]
    notes: tuple[str, ...] = ()

    @property
    def n_ranked(self) -> int:
        return self.n_candidates_given - self.n_repeats_dropped - self.n_measured_dropped

    def to_dict(self) -> dict:
        c = self.config
        return {"strategy": c.strategy, "n": c.n, "seed": c.seed, "beta": c.beta, "min_distance": c.min_distance,
                "candidates": {"given": self.n_candidates_given, "repeats_dropped": self.n_repeats_dropped,
                               "measured_dropped": self.n_measured_dropped, "ranked": self.n_ranked},
                "measured": {"n": self.n_measured, "censored": self.n_censored},
                "features": self.features, "model": self.model.to_dict(),
                "radius_per_pick": list(self.radius), "notes": list(self.notes)}

    def summary(self) -> str:
        c = self.config
        relaxed = [i + 1 for i in range(1, len(self.radius)) if self.radius[i] < self.radius[i - 1]]
        diversity = "off" if c.min_distance <= 1 else f"picks differ at >= {c.min_distance} positions" + (
            f" (radius relaxed at pick {', '.join(map(str, relaxed))})" if relaxed else "")
        lines = [f"candidates: {self.n_candidates_given} given, {self.n_repeats_dropped} repeats and "
                 f"{self.n_measured_dropped} already measured removed: {self.n_ranked} ranked",
                 f"measured variants: {self.n_measured} ({self.n_censored} censored, used at their bound)",
                 f"features: {self.features}", self.model.summary(),
                 f"strategy: {c.strategy}" + (f" (beta {c.beta:g})" if c.strategy == "ucb" else "") +
                 f"; diversity: {diversity}; seed {c.seed}"]
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


@dataclass(frozen=True)
class SuggestResult:
    """The batch (candidate rows in pick order plus OUTPUT_COLUMNS), every candidate scored, and the report."""

    batch: pd.DataFrame
    scored: pd.DataFrame = field(repr=False)
    report: SuggestReport = field(repr=False)


def _checked(frame: pd.DataFrame, name: str, need_pkd: bool) -> pd.DataFrame:
    missing = [c for c in ("heavy", "antigen", *(["pkd"] if need_pkd else [])) if c not in frame]
    if missing:
        raise DataValidationError([RowProblem(None, c, f"the {name} table has no {c!r} column") for c in missing],
                                  f"<{name}>")
    frame = frame.reset_index(drop=True).copy()
    frame["light"] = frame["light"].fillna("").astype(str) if "light" in frame else ""
    if need_pkd:
        pkd = pd.to_numeric(frame["pkd"], errors="coerce").to_numpy(dtype=np.float64)
        rows = frame["source_row"] if "source_row" in frame else pd.Series(np.arange(1, len(frame) + 1))
        bad = [RowProblem(int(rows.iloc[i]), "pkd", "a measured variant needs a finite pKd", str(frame["pkd"].iloc[i]))
               for i in np.flatnonzero(~np.isfinite(pkd))]
        if bad:
            raise DataValidationError(bad, f"<{name}>")
        frame["pkd"] = pkd
    return frame


def _averaged(measured: pd.DataFrame) -> pd.DataFrame:
    """Replicates of one variant averaged (abag.data's "mean" policy), so no fold holds out a copy of a
    training row; a table without replicates is returned as it is."""
    if not measured.duplicated(KEY).any():
        return measured
    columns = [*KEY, "pkd", *(["censored"] if "censored" in measured else [])]
    averaged, _ = prepare_pairs(measured[columns], source="<measured>", replicates="mean")
    return averaged


def _model_menu(config: SuggestConfig, features: np.ndarray, inputs: CheckpointInputs | None, n_measured: int
                ) -> list[tuple[str, object, np.ndarray]]:
    """(name, unfitted model, features of all rows), simplest first, restricted to `config.models`."""
    if inputs is not None and n_measured < MIN_CV_ROWS:
        menu = [("checkpoint", PriorModel(), np.column_stack([inputs.prior_mean, inputs.prior_std]))]
    else:
        menu = [("onehot_ridge", RidgeModel("onehot_ridge", standardise=False, bootstrap=config.bootstrap,
                                            seed=config.seed), features)]
        if inputs is not None:
            menu.append(("embedding_ridge", RidgeModel("embedding_ridge", standardise=True,
                                                       bootstrap=config.bootstrap, seed=config.seed),
                         inputs.embeddings))
        gp_features = scale_blocks(features, inputs.embeddings) if inputs is not None else features
        menu.append(("gp", GPModel(config.seed), gp_features))
        if inputs is not None:
            menu.append(("checkpoint", PriorModel(), np.column_stack([inputs.prior_mean, inputs.prior_std])))
    if config.models is not None:
        menu = [entry for entry in menu if entry[0] in config.models]
        if not menu:
            raise SuggestError(f"none of the models {', '.join(config.models)} can be used with these inputs "
                               f"(embedding_ridge and checkpoint need a checkpoint; with fewer than {MIN_CV_ROWS} "
                               f"measured variants and a checkpoint only checkpoint is used)")
    return menu


def _without_output_names(frame: pd.DataFrame) -> pd.DataFrame:
    """Input columns named like an output column are kept, renamed (`pkd_pred` -> `pkd_pred_input`)."""
    return frame.rename(columns={c: free_column_name(f"{c}_input", frame.columns) for c in (*OUTPUT_COLUMNS, "pick")
                                 if c in frame})


def _fit(config: SuggestConfig, menu, measured: pd.DataFrame):
    """(ModelChoice, fitted model, features of the candidate rows) for the chosen variant model."""
    m = len(measured)
    if m == 0:
        name, variant_model, X = menu[0]
        choice = ModelChoice(name, "no measured variants: the checkpoint's own predictions", (), 0)
        variant_model = variant_model.fit(X[:0], np.zeros(0))
    else:
        choice, variant_model = choose_model([(n, v, X[:m]) for n, v, X in menu], measured["pkd"].to_numpy(),
                                             folds=config.folds, repeats=config.cv_repeats,
                                             fraction=config.top_fraction, seed=config.seed)
    return choice, variant_model, dict((n, X) for n, _, X in menu)[choice.chosen][m:]


def _notes(config: SuggestConfig, choice: ModelChoice, inputs: CheckpointInputs | None) -> tuple[str, ...]:
    if inputs is None or choice.chosen != "checkpoint":
        return ()
    notes = [inputs.note]
    if not np.any(inputs.prior_std > 0) and config.strategy != "greedy":
        notes.append(f"with no uncertainty {config.strategy} ranks like greedy")
    return tuple(notes)


def _outputs(pool: pd.DataFrame, picks: BatchPicks, prediction, picked_std: np.ndarray
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the batch: picked rows in pick order + OUTPUT_COLUMNS, every candidate with its prediction)."""
    batch = pool.iloc[picks.rows].reset_index(drop=True)
    batch["pkd_pred"], batch["pkd_std"] = prediction.mean[picks.rows], picked_std
    batch["acquisition"], batch["pick"] = picks.scores, np.arange(1, len(picks.rows) + 1)
    scored = pool.assign(pkd_pred=prediction.mean)
    if prediction.std is not None:
        scored["pkd_std"] = prediction.std
    order = pd.Series(np.arange(1, len(picks.rows) + 1), index=picks.rows)
    scored["pick"] = order.reindex(scored.index).astype("Int64")
    return batch, scored


def suggest_batch(candidates: pd.DataFrame, measured: pd.DataFrame | None = None,
                  config: SuggestConfig = SuggestConfig(), *, model=None, cache_dir: str | Path | None = None,
                  progress: bool = False) -> SuggestResult:
    """The next batch of `config.n` distinct candidates to measure (see the module docstring).

    `candidates`: heavy, light, antigen (+ any columns, kept); `measured`: the same plus pkd (optional);
    `model`: a trained abag model (`abag.load_trained_model`) for embeddings and a pKd prior (optional).
    """
    given = _checked(candidates, "candidates", need_pkd=False)
    measured = _averaged(_checked(measured, "measured", need_pkd=True)) if measured is not None else \
        given.iloc[:0].assign(pkd=0.0)
    pool, n_repeats, n_seen = clean_candidates(_without_output_names(given), measured)
    if len(pool) < config.n:
        raise SuggestError(f"only {len(pool)} candidates remain ({len(given)} given, {n_repeats} repeats and "
                           f"{n_seen} already measured removed); asked for a batch of {config.n}")
    if len(measured) == 0 and model is None:
        raise SuggestError("nothing to rank the candidates by: give measured variants (with pkd), a checkpoint, "
                           "or both")
    combined = pd.concat([measured[KEY], pool[KEY]], ignore_index=True)
    encoding = encode_variants(combined)
    inputs = checkpoint_inputs(model, combined, cache_dir, progress) if model is not None else None
    choice, variant_model, X_pool = _fit(config, _model_menu(config, encoding.features, inputs, len(measured)),
                                         measured)
    prediction = variant_model.predict(X_pool, with_std=needs_std(config.strategy))
    rng = np.random.default_rng(config.seed)
    tie_break = rng.random(len(pool))
    scores = acquisition(config.strategy, prediction, beta=config.beta, rng=rng)
    picks = pick_batch(config.n, encoding.codes[len(measured):], scores, config.min_distance, tie_break)
    picked_std = prediction.std[picks.rows] if prediction.std is not None else \
        variant_model.predict(X_pool[picks.rows], with_std=True).std
    censored = int(measured["censored"].astype(bool).sum()) if "censored" in measured else 0
    report = SuggestReport(config, len(given), n_repeats, n_seen, len(measured), censored, encoding.note, choice,
                           tuple(int(r) for r in picks.radius), _notes(config, choice, inputs))
    batch, scored = _outputs(pool, picks, prediction, picked_std)
    return SuggestResult(batch, scored, report)
