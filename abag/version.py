"""Release and metrics-schema versions, and the v2.7 fixes recorded in every metrics.json."""

__version__ = "2.7.0"
METRICS_VERSION = "v2.7"
V27_IMPROVEMENTS = (
    "StableCombinedLoss: 0.7*MSE + 0.3*BCE-with-logits on the binder head (no soft-Spearman, no Huber)",
    "pKd output bounded and clamped to [4, 14] inside the model's forward pass",
    "check_loss_validity stops training on NaN/Inf loss before the optimizer steps",
    "overfit ratio = validation loss / training loss of the same loss function, warning above 3.0",
    "checkpoints hold torch, CUDA, NumPy and Python RNG states; resume continues exactly",
    "batch 16 x gradient accumulation 8 (effective 128), actually applied; lr 1e-3, dropout 0.1, "
    "weight decay 1e-5, gradient clipping at 1.0",
    "ReduceLROnPlateau(mode=max, factor=0.6, patience=10, min_lr=1e-6) stepped once per epoch on val Spearman",
    "validation prediction range printed each epoch, warning outside [4, 14]",
    "masked mean pooling (padding never averaged in); long sequences encoded in windows",
    "binder recall/precision/F1/AUROC from the classification head's probability",
    "antigen-cluster split by default, with baselines and bootstrap intervals beside the model",
)
