"""abag: antibody–antigen binding affinity (pKd) prediction from sequence.

The names a user needs, in one place::

    from abag import load_pairs, ModelConfig, TrainConfig, train, load_trained_model, predict_frame
"""

from . import datasets, plots
from .antigen_context import AntigenContext, antigen_descriptors
from .baselines import KmerRidgeBaseline, MeanBaseline, evaluate_baselines
from .checkpoint import load_checkpoint, save_checkpoint
from .crossval import CVResult, cross_validate
from .data import DataValidationError, LoadReport, RowProblem, load_pairs, prepare_pairs, read_table
from .embedding_cache import EmbeddingCache, default_cache_dir
from .encoders import SequenceEncoder, load_antiberty_encoder, load_encoder, load_hub_encoder, load_tiny_encoder
from .errors import (AbagError, CheckpointError, EmbeddingCacheError, EncoderUnavailableError, InvalidSettingError,
                     NonFiniteEmbeddingError, OutputNotWritableError, TrainingDivergedError)
from .familiar_correction import FamiliarCorrection
from .hub_encoders import PairedModelWarning, TokenizerDependencyError
from .intervals import (CALIBRATED_COVERAGES, IntervalCalibration, IntervalScale, PredictionSupport,
                        applicability, interval_coverage, interval_report)
from .novelty import NoveltyReference, nearest_identity
from .policy import PKD_RANGE, Precision, choose_precision
from .ensemble import FoldEnsemble
from .inference import (MemberOutputs, evaluate_frame, load_trained_model, member_outputs, predict_frame,
                        predict_members)
from .kfold import FoldsResult, train_folds
from .losses import StableCombinedLoss, check_loss_validity
from .metrics import (GroupedSpearman, binder_metrics, bootstrap_ci, evaluate_predictions, format_comparison,
                      grouped_spearman, regression_metrics)
from .model import AbAgModel, AffinityHead, ModelConfig, PairEmbeddings, PairSequences, build_model
from .suggest import SuggestConfig, SuggestError, SuggestResult, suggest_batch
from .splits import Grouping, SplitResult, cluster_antigens, cluster_kfold, row_groups, split_pairs
from .train import TrainConfig, TrainingInterrupted, TrainResult, train
from .version import METRICS_VERSION, __version__

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
    "MemberOutputs", "member_outputs", "AntigenContext", "antigen_descriptors", "datasets",
]
