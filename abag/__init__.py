"""abag: antibody–antigen binding affinity (pKd) from sequence.

The names a user needs, in pipeline order: load a table, configure and train, predict and evaluate, suggest the
next variants. Everything else is importable from its room (`abag.data`, `abag.encoding`, `abag.model`, …).
"""

from abag import _moved, datasets
from abag.data import DataValidationError, LoadReport, load_pairs
from abag.errors import AbagError
from abag.folds import CVResult, FoldsResult, cross_validate, train_folds
from abag.inference import evaluate_frame, load_trained_model, predict_frame
from abag.model import ModelConfig
from abag.pretrained import load_pretrained
from abag.suggest import SuggestConfig, SuggestResult, suggest_batch
from abag.training import TrainConfig, TrainResult, train
from abag.version import __version__

_moved.register()  # the 2.7 module paths (abag.kfold, abag.train, …) keep importing, with a warning, for a release

__all__ = [
    "load_pairs", "LoadReport", "DataValidationError", "datasets",
    "ModelConfig", "TrainConfig",
    "train", "TrainResult", "train_folds", "FoldsResult", "cross_validate", "CVResult",
    "load_trained_model", "load_pretrained", "predict_frame", "evaluate_frame",
    "suggest_batch", "SuggestConfig", "SuggestResult",
    "AbagError", "__version__",
]
