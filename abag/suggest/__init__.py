"""`abag suggest`: choose the next batch of antibody variants to measure in a round of affinity maturation.

    from abag.suggest import SuggestConfig, suggest_batch
    result = suggest_batch(candidates, measured, SuggestConfig(n=96, strategy="greedy"), model=model)
    result.batch        # candidate rows in pick order + pkd_pred, pkd_std, acquisition, pick
    print(result.report.summary())

Modules, one job each (a module imports only those above it in this list):

- `config`: `SuggestConfig`, `SuggestError`, the strategy and model names;
- `encoding`: variants as residue codes at their varying positions, one-hot features, Hamming distance;
- `variant_models`: ridge (bootstrap std), Gaussian process, the checkpoint's own predictions;
- `selection`: the model chosen by cross-validation on the measured variants (one-standard-error rule);
- `acquisition`: greedy, ucb and thompson scores;
- `diversity`: the Hamming-distance rule that keeps a batch off near-duplicates;
- `candidates`: single mutants of a parent, combinations of helpful mutations, cleaning;
- `checkpoint_inputs`: embeddings and the pKd prior of a trained abag model;
- `pipeline`: `suggest_batch`, `SuggestResult`, `SuggestReport`;
- `command`: the `abag suggest` command (its options are built in `abag.cli.suggest`).
"""

from abag.suggest.candidates import (
           combine_helpful,
           mutation_names,
           parent_from_measured,
           parse_positions,
           single_mutants,
)
from abag.suggest.config import MODEL_NAMES, STRATEGIES, SuggestConfig, SuggestError
from abag.suggest.pipeline import SuggestReport, SuggestResult, suggest_batch

__all__ = ["MODEL_NAMES", "STRATEGIES", "SuggestConfig", "SuggestError", "SuggestReport", "SuggestResult",
           "combine_helpful", "mutation_names", "parent_from_measured", "parse_positions", "single_mutants",
           "suggest_batch"]
