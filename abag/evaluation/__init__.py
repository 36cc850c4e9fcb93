"""How good predictions are: metrics with bootstrap intervals, the simple baselines every run is compared with,
the benchmarks' other baselines (heavy-chain 1–3-mer ridge, IMGT-aligned one-hot ridge), and the comparison table.

May import: abag.encoding (k-mer features) and the rooms below it (abag.numbering for the one-hot ridge).
"""

from abag.evaluation.baselines import (
                                     KmerRidgeBaseline,
                                     MeanBaseline,
                                     evaluate_baselines,
)
from abag.evaluation.metrics import (
                                     GroupedSpearman,
                                     binder_metrics,
                                     bootstrap_ci,
                                     evaluate_predictions,
                                     grouped_spearman,
                                     regression_metrics,
)
from abag.evaluation.tables import format_comparison
from abag.evaluation.variant_baselines import HeavyKmerRidgeBaseline, OneHotRidgeBaseline, fit_named_baselines

__all__ = ["evaluate_predictions", "regression_metrics", "binder_metrics", "grouped_spearman", "GroupedSpearman",
           "bootstrap_ci", "format_comparison", "MeanBaseline", "KmerRidgeBaseline", "evaluate_baselines",
           "HeavyKmerRidgeBaseline", "OneHotRidgeBaseline", "fit_named_baselines"]
