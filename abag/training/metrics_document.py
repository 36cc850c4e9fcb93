"""The metrics.json document (schema v2.7): metrics, baselines, hyperparameters, improvements, data, encoder.
"""

from __future__ import annotations

import time

from abag import distributed
from abag.training.config import RunInputs
from abag.training.monitors import SATURATION_MARGIN
from abag.version import METRICS_VERSION, __version__


def hyperparameters(run: RunInputs) -> dict:
    """Every setting of the v2.7 recipe as it was used in this run."""
    config, model_config = run.config, run.model_config
    return {
        "batch_size": config.batch_size,
        "gradient_accumulation": config.gradient_accumulation,
        "effective_batch_size": config.effective_batch_size,
        "learning_rate": config.learning_rate,
        "dropout": model_config.dropout,
        "weight_decay": config.weight_decay,
        "grad_clip_norm": config.grad_clip_norm,
        "mse_weight": config.mse_weight,
        "class_weight": config.class_weight,
        "ranking_weight": config.ranking_weight,
        "binder_threshold": config.binder_threshold,
        "loss_function": "StableCombinedLoss",
        "optimizer": "AdamW",
        "scheduler": "ReduceLROnPlateau",
        "scheduler_mode": "max",
        "scheduler_metric": "val_spearman",
        "scheduler_factor": config.scheduler_factor,
        "scheduler_patience": config.scheduler_patience,
        "min_lr": config.min_lr,
        "early_stopping_patience": config.early_stopping_patience,
        "epochs": config.epochs,
        "hidden_dim": model_config.hidden_dim,
        "finetune_layers": model_config.finetune_layers,
        "pkd_clamp": [model_config.pkd_min, model_config.pkd_max],
        "mixed_precision": config.mixed_precision,
        "precision": run.precision.name,
        "seed": config.seed,
    }


def improvements(model, run: RunInputs, with_baselines: bool) -> list[str]:
    """The v2.7 fixes as this run applied them, each stated with the run's own settings."""
    config, model_config = run.config, run.model_config
    accumulation = config.gradient_accumulation
    weighting = ", every row weighted equally within a step" if accumulation > 1 else ""
    encoding = f"last {model_config.finetune_layers} encoder layer(s) fine-tuned"
    if model.encoders_frozen:
        encoding = "encoders frozen; " + ("every distinct chain encoded once (embedding cache)"
                                          if config.embedding_cache else "chains encoded in every batch (no cache)")
    items = [
        f"StableCombinedLoss: {config.mse_weight}*MSE + {config.class_weight}*BCE-with-logits on the binder head "
        f"(pKd >= {config.binder_threshold}); no soft-Spearman, no Huber"
        + (f"; plus {config.ranking_weight} x a pairwise ranking term within antigen clusters"
           if config.ranking_weight > 0 else ""),
        (f"pKd = clamp({'soft_bound(wide + deep)' if model.wide_part().bound is not None else 'wide + deep'}) to "
         f"[{model_config.pkd_min}, {model_config.pkd_max}] inside the model's forward "
         f"pass (wide: {model_config.wide}, fitted on the training rows before the network)" if model.has_wide else
         f"pKd output bounded and clamped to [{model_config.pkd_min}, {model_config.pkd_max}] inside the model's "
         f"forward pass"),
        "check_loss_validity stops training on NaN/Inf loss (and a non-finite gradient norm) before the "
        "optimizer steps",
        f"overfit ratio = validation loss / training loss of the same loss function (training loss with "
        f"dropout on), warning above {config.overfit_warning_ratio}",
        "checkpoints hold torch, CUDA, NumPy and Python RNG states and the split; resume continues exactly",
        f"batch {config.batch_size} x gradient accumulation {accumulation} (effective "
        f"{config.effective_batch_size}){weighting}; lr {config.learning_rate}, dropout {model_config.dropout}, "
        f"weight decay {config.weight_decay}, gradient clipping at {config.grad_clip_norm}",
        f"ReduceLROnPlateau(mode=max, factor={config.scheduler_factor}, patience={config.scheduler_patience}, "
        f"min_lr={config.min_lr}) stepped once per epoch on val Spearman; early stopping after "
        f"{config.early_stopping_patience} epochs without improvement",
        f"validation output saturation (share within {SATURATION_MARGIN} of the bounds) recorded each epoch, "
        f"warning above {config.saturation_warning_share:.0%}",
        "masked mean pooling (padding never averaged in); long sequences encoded in windows",
        encoding,
        f"precision {run.precision.name}" + (" with a GradScaler" if run.precision.needs_scaler else ""),
        "binder recall/precision/F1/AUROC from the classification head's probability",
        f"split: {run.split.description}" + ("; baselines and bootstrap intervals beside the model"
                                             if with_baselines else ""),
    ]
    if bool(run.data["train"].censored.any()):
        items.insert(1, "censored rows: squared error only above the bound; binder label used only where the "
                        "bound decides it")
    return items


def build_metrics(model, run: RunInputs, results: dict, baselines: dict, history: list[dict], best_epoch: int,
                  stopped_early: bool) -> dict:
    """The v2.7 metrics.json document."""
    config, model_config, parts, split = run.config, run.model_config, run.parts, run.split
    return {
        "version": METRICS_VERSION,
        "abag_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "test": results.get("test"),
        "val": results.get("val"),
        "baselines": {"test": baselines},
        "hyperparameters": hyperparameters(run),
        "improvements": improvements(model, run, bool(baselines)),
        "familiar_correction": None if model.familiar_correction is None else model.familiar_correction.describe(),
        "wide": None if not model.has_wide else {**model.wide_part().describe(),
                                                 "formula": ("pKd = clamp(soft_bound(wide(x) + deep(x)))"
                                                             if model.wide_part().bound is not None else
                                                             "pKd = clamp(wide(x) + deep(x))")
                                                 + "; wide fitted on the training rows before the network"},
        "data": {
            **run.data_info,
            "n_train": int(len(parts["train"])),
            "n_val": int(len(parts["val"])),
            "n_test": int(len(parts["test"])),
            "split": split.method,
            "split_description": split.description,
        },
        "encoder": {
            "antibody": model_config.antibody_encoder,
            "antigen": model_config.antigen_encoder,
            "antibody_revision": model.antibody_encoder.revision,
            "antigen_revision": None if model.antigen_encoder is None else model.antigen_encoder.revision,
            "frozen": model.encoders_frozen,
            "embedding_cache": config.embedding_cache and model.encoders_frozen,
        },
        "training": {
            "epochs_run": len(history),
            "best_epoch": best_epoch,
            "stopped_early": stopped_early,
            "optimizer_steps": int(sum(h["optimizer_steps"] for h in history)),
            "world_size": distributed.world_size(),
        },
    }
