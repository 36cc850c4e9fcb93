"""abag: antibody–antigen binding affinity (pKd) prediction from sequence.

The names a user needs, in one place::

    from abag import load_pairs, ModelConfig, TrainConfig, train, load_trained_model, predict_frame
"""

from abag import plots
from abag.checkpoint import load_checkpoint, save_checkpoint
from abag.data import (
    DataValidationError,
    LoadReport,
    RowProblem,
    load_pairs,
    prepare_pairs,
    read_table,
)
from abag.data.splits import (
    Grouping,
    SplitResult,
    cluster_kfold,
    row_groups,
    split_pairs,
)
from abag.encoding.batches import PairEmbeddings, PairSequences
from abag.encoding.embedding_cache import EmbeddingCache, default_cache_dir
from abag.encoding.hub_encoders import (
    PairedModelWarning,
    TokenizerDependencyError,
    load_hub_encoder,
)
from abag.encoding.loader import load_antiberty_encoder, load_encoder, load_tiny_encoder
from abag.encoding.sequence_encoder import SequenceEncoder
from abag.errors import (
    AbagError,
    CheckpointError,
    EmbeddingCacheError,
    EncoderUnavailableError,
    InvalidSettingError,
    NonFiniteEmbeddingError,
    OutputNotWritableError,
    TrainingDivergedError,
)
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
from abag.folds.crossval import CVResult, cross_validate
from abag.folds.members import FoldsResult, train_folds
from abag.identity.clustering import cluster_antigens
from abag.identity.novelty import NoveltyReference, nearest_identity
from abag.inference import (
    MemberOutputs,
    evaluate_frame,
    load_trained_model,
    member_outputs,
    predict_frame,
    predict_members,
)
from abag.model.config import ModelConfig
from abag.model.ensemble import FoldEnsemble
from abag.model.losses import StableCombinedLoss, check_loss_validity
from abag.model.network import AbAgModel, AffinityHead, build_model
from abag.policy import PKD_RANGE, Precision, choose_precision
from abag.posthoc.antigen_context import AntigenContext, antigen_descriptors
from abag.posthoc.familiar_correction import FamiliarCorrection
from abag.posthoc.intervals import (
    CALIBRATED_COVERAGES,
    IntervalCalibration,
    IntervalScale,
    PredictionSupport,
    applicability,
    interval_coverage,
    interval_report,
)
from abag.suggest import SuggestConfig, SuggestError, SuggestResult, suggest_batch
from abag.training.config import TrainConfig
from abag.training.loop import TrainingInterrupted
from abag.training.run import TrainResult, train
from abag.version import METRICS_VERSION, __version__

__all__ = [
    "AbAgModel", "AbagError", "CVResult", "cross_validate", "AffinityHead", "CheckpointError", "DataValidationError", "EmbeddingCache",
    "EncoderUnavailableError", "KmerRidgeBaseline", "LoadReport", "METRICS_VERSION", "MeanBaseline",
    "ModelConfig", "OutputNotWritableError", "PairEmbeddings", "PairSequences", "RowProblem", "SequenceEncoder",
    "SplitResult", "StableCombinedLoss", "TrainConfig", "TrainResult", "TrainingDivergedError",
    "TrainingInterrupted", "__version__", "binder_metrics", "plots", "bootstrap_ci", "build_model", "check_loss_validity",
    "cluster_antigens", "cluster_kfold", "default_cache_dir", "evaluate_baselines", "evaluate_frame",
    "evaluate_predictions", "format_comparison", "load_antiberty_encoder", "load_checkpoint", "load_encoder",
    "load_hub_encoder", "load_pairs", "load_tiny_encoder", "load_trained_model", "predict_frame", "prepare_pairs",
    "read_table", "regression_metrics", "save_checkpoint", "split_pairs", "train",
    "EmbeddingCacheError", "InvalidSettingError", "NonFiniteEmbeddingError", "PairedModelWarning",
    "TokenizerDependencyError", "IntervalCalibration", "IntervalScale", "applicability", "interval_coverage", "NoveltyReference",
    "nearest_identity", "PKD_RANGE", "Precision", "choose_precision", "GroupedSpearman", "grouped_spearman",
    "Grouping", "row_groups", "FoldEnsemble", "FoldsResult", "train_folds", "predict_members",
    "CALIBRATED_COVERAGES", "PredictionSupport", "interval_report",
    "SuggestConfig", "SuggestError", "SuggestResult", "suggest_batch", "FamiliarCorrection",
    "MemberOutputs", "member_outputs", "AntigenContext", "antigen_descriptors",
]
