"""The network: its config, the dual-encoder model and head, the fold ensemble, the v2.7 loss, and applying a
model to embedded pairs.

May import: abag.encoding and the rooms below it.
"""

from abag.model.config import ModelConfig
from abag.model.ensemble import FoldEnsemble
from abag.model.losses import StableCombinedLoss, check_loss_validity
from abag.model.network import AbAgModel, AffinityHead, build_model, encoder_names

__all__ = ["ModelConfig", "build_model", "encoder_names", "AbAgModel", "AffinityHead", "FoldEnsemble", "StableCombinedLoss",
           "check_loss_validity"]
