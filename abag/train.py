"""The v2.7 training loop: accumulation, clipping, plateau scheduling, monitors, exact resume.

Read top to bottom: `train()` prepares data and state, then each epoch runs `_train_epoch` (micro-batches,
loss divided by the group size, one optimizer step per `gradient_accumulation` batches and one for a
leftover group), evaluates on validation, steps the scheduler on validation Spearman, and checkpoints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import (capture_rng_state, interrupts_deferred, load_checkpoint, restore_rng_state, resume_hint,
                         save_checkpoint)
from .errors import AbagError, CheckpointError, OutputNotWritableError, TrainingDivergedError
from .losses import StableCombinedLoss, check_loss_validity
from .model import AbAgModel, ModelConfig, build_model
from .policy import PKD_RANGE, choose_precision
from .outputs import ensure_writable_folder, write_csv_atomic, write_json_atomic
from .pair_embeddings import EmbeddedPairs, embed_pairs, make_caches, sequences_batch
from .version import METRICS_VERSION, V27_IMPROVEMENTS, __version__



@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the v2.7 specification."""

    epochs: int = 100
    batch_size: int = 16
    gradient_accumulation: int = 8
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    grad_clip_norm: float = 1.0
    mse_weight: float = 0.7
    class_weight: float = 0.3
    binder_threshold: float = 9.0
    scheduler_factor: float = 0.6
    scheduler_patience: int = 10
    min_lr: float = 1e-6
    early_stopping_patience: int = 15
    overfit_warning_ratio: float = 3.0
    seed: int = 0
    split: str = "antigen"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_identity: float = 0.4
    group_column: str | None = None
    embedding_cache: bool = True
    cache_dir: str | None = None
    token_budget: int = 8192
    mixed_precision: bool = True
    device: str = "auto"
    progress: bool = True

    @property
    def effective_batch_size(self) -> int:
        return self.batch_size * self.gradient_accumulation


@dataclass
class EpochRecord:
    """One line of `history.csv`."""

    epoch: int
    train_loss: float
    val_loss: float
    overfit_ratio: float
    val_spearman: float | None
    val_rmse: float | None
    learning_rate: float
    pred_min: float
    pred_max: float
    optimizer_steps: int
    seconds: float


@dataclass
class TrainResult:
    """What `train` produced: metrics (as written to metrics.json), history and file locations."""

    metrics: dict
    history: pd.DataFrame
    out_dir: Path
    best_checkpoint: Path
    model: AbAgModel = field(repr=False)
    split_assignment: np.ndarray = field(repr=False)


class TrainingInterrupted(AbagError):
    """Ctrl-C: the last epoch-boundary checkpoint is on disk and `--resume` continues from it."""

    exit_code = 130


class SplitError(AbagError):
    """The data cannot be split into training, validation and test parts as asked (bad input: exit 2)."""

    exit_code = 2


# ----------------------------------------------------------------------------------------------- helpers

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return distributed.local_device()
    return torch.device(name)


def data_fingerprint(frame: pd.DataFrame) -> str:
    """Hash of the training table, so `--resume` refuses to continue on different data."""
    columns = frame[["heavy", "light", "antigen", "pkd"]].astype(str)
    return hashlib.sha1(pd.util.hash_pandas_object(columns, index=False).values.tobytes()).hexdigest()


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled row order of an epoch: a function of (seed, epoch) only, so resume needs no extra state."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).numpy()


def shard_for_process(order: np.ndarray) -> np.ndarray:
    """This process's share of an epoch (padded by wrapping so every process runs the same number of steps)."""
    world = distributed.world_size()
    if world == 1:
        return order
    total = math.ceil(len(order) / world) * world
    padded = np.concatenate([order, order[: total - len(order)]])
    return padded[distributed.rank()::world]


def amp_settings(device: torch.device, enabled: bool) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether a GradScaler is needed), as `policy.choose_precision` decides."""
    precision = choose_precision(device, enabled)
    return precision.autocast_dtype, precision.needs_scaler


class PairData:
    """Rows of one split part, served either from the embedding tables or as raw sequences."""

    def __init__(self, frame: pd.DataFrame, embedded: EmbeddedPairs | None):
        self.frame = frame.reset_index(drop=True)
        self.embedded = embedded
        self.target = torch.tensor(self.frame["pkd"].to_numpy(dtype=np.float32))
        self.censored = torch.tensor(self.frame["censored"].to_numpy(dtype=bool)) \
            if "censored" in self.frame else torch.zeros(len(self.frame), dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.frame)

    def inputs(self, rows: np.ndarray, device: torch.device):
        if self.embedded is not None:
            return self.embedded.batch(rows).to(device)
        return sequences_batch(self.frame, rows)


def build_part_data(frame: pd.DataFrame, parts: dict[str, np.ndarray], model: AbAgModel, config: TrainConfig,
                    log: Callable[[str], None]) -> dict[str, PairData]:
    """Embed every distinct chain once (cached path) or keep sequences (fine-tuning / --no-embedding-cache)."""
    use_cache = config.embedding_cache and model.encoders_frozen
    if config.embedding_cache and not model.encoders_frozen:
        log("embedding cache: off (encoder layers are fine-tuned, so embeddings change during training)")
    data: dict[str, PairData] = {}
    if not use_cache:
        return {name: PairData(frame.iloc[rows], None) for name, rows in parts.items()}
    antibody_cache, antigen_cache = make_caches(model, config.cache_dir, config.token_budget, config.progress)
    started = time.perf_counter()
    embedded = embed_pairs(frame, antibody_cache, antigen_cache)
    caches = {id(antibody_cache): antibody_cache, id(antigen_cache): antigen_cache}.values()
    # Under torchrun each process encodes a share; report the totals.
    counts = distributed.all_gather_objects((sum(c.stats.encoded for c in caches), sum(c.stats.reused for c in caches)))
    encoded = sum(c[0] for c in counts)
    reused = counts[0][1]
    where = config.cache_dir or "memory only"
    log(f"embedding cache ({where}): {encoded} chains encoded, {reused} reused "
        f"in {time.perf_counter() - started:.1f}s" + (" — nothing to encode" if encoded == 0 else ""))
    for name, rows in parts.items():
        part = EmbeddedPairs(embedded.antibody, embedded.antigen, embedded.heavy_index[rows],
                             embedded.light_index[rows], embedded.antigen_index[rows])
        data[name] = PairData(frame.iloc[rows], part)
    return data


@torch.no_grad()
def predict_data(model: torch.nn.Module, data: PairData, device: torch.device, batch_size: int = 256,
                 amp_dtype: torch.dtype | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pKd predictions, binder logits) for every row of `data`, in order, in eval mode."""
    was_training = model.training
    model.eval()
    preds, logits = [], []
    for start in range(0, len(data), batch_size):
        rows = np.arange(start, min(start + batch_size, len(data)))
        with _autocast(device, amp_dtype):
            pkd, logit = model(data.inputs(rows, device))
        preds.append(pkd.float().cpu())
        logits.append(logit.float().cpu())
    model.train(was_training)
    if not preds:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    return torch.cat(preds).numpy(), torch.cat(logits).numpy()


def _autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function; saturates quietly (exp overflow for very negative logits is just 0)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------------------------- training

def train(frame: pd.DataFrame, out_dir: str | Path, model_config: ModelConfig | None = None,
          config: TrainConfig | None = None, *, resume: bool = False, encoders: dict | None = None,
          log: Callable[[str], None] = print, data_info: dict | None = None, split=None) -> TrainResult:
    """Split `frame`, train, checkpoint every epoch, evaluate the best model and write the run folder.

    `frame` is a validated table (see `abag.data.load_pairs`). `split` (a `SplitResult`) overrides the
    configured split, e.g. for cross-validation folds. Writes `metrics.json`, `history.csv`,
    `test_predictions.csv` and `checkpoints/{last,best}.pt` under `out_dir`.
    """
    from .baselines import evaluate_baselines
    from .metrics import evaluate_predictions
    from .splits import split_pairs

    out_dir = Path(out_dir)
    checkpoints = out_dir / "checkpoints"
    main = distributed.is_main_process()
    if not main:
        log = _silent  # one voice per run: only process 0 prints
    if main:
        ensure_writable_folder(out_dir)
        ensure_writable_folder(checkpoints)
    last_path, best_path = checkpoints / "last.pt", checkpoints / "best.pt"
    model_config = model_config or ModelConfig()
    config = config or TrainConfig()
    fingerprint = data_fingerprint(frame)

    resume_state = None
    if resume and last_path.exists():
        resume_state = load_checkpoint(last_path, hint=resume_hint(last_path))
        saved = resume_state["config"]
        if saved.get("data_fingerprint") != fingerprint:
            raise CheckpointError(f"{last_path} was trained on different data; resume with the same data, "
                                  f"or start a new run folder (--out)")
        if int(resume_state.get("world_size", 1)) != distributed.world_size():
            raise CheckpointError(f"{last_path} was written by a run with {resume_state.get('world_size', 1)} "
                                  f"process(es); resume with the same number (now {distributed.world_size()})")
        try:
            model_config = ModelConfig.from_dict(saved["model"])
            # Everything that shapes the result comes from the checkpoint; only where and how long may change.
            requested = config
            config = TrainConfig(**{**saved["train"], "split_fractions": tuple(saved["train"]["split_fractions"])})
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {last_path} has settings this abag cannot use ({exc}). "
                                  f"{resume_hint(last_path)}") from None
        config = dataclasses.replace(config, epochs=requested.epochs, progress=requested.progress,
                                     device=requested.device, cache_dir=requested.cache_dir)
        log(f"resuming from {last_path} (epoch {resume_state['epoch']}) to epoch {config.epochs}")
    elif resume:
        log(f"--resume: no checkpoint at {last_path}; starting a new run")

    seed_everything(config.seed)
    device = resolve_device(config.device)
    if split is None:
        try:
            split = split_pairs(frame, config.split, fractions=config.split_fractions, seed=config.seed,
                                group_column=config.group_column, identity=config.split_identity)
        except ValueError as exc:  # too few antigens or groups, unknown group column, …
            raise SplitError(f"cannot split the data ({config.split} split): {exc}. Use more data or "
                             f"another --split.") from None
    parts = {name: split.indices(name) for name in ("train", "val", "test")}
    log(f"split: {split.description}")
    if len(parts["train"]) == 0 or len(parts["val"]) == 0:
        raise SplitError(f"the {split.method} split left an empty training or validation set "
                         f"({split.sizes()}); use more data or another --split")

    train_pkd = frame["pkd"].to_numpy()[parts["train"]]
    model_config = dataclasses.replace(model_config, initial_pkd=float(np.clip(np.mean(train_pkd), *PKD_RANGE))) \
        if resume_state is None else model_config
    model = build_model(model_config, encoders).to(device)
    data = build_part_data(frame, parts, model, config, log)

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=config.scheduler_factor, patience=config.scheduler_patience,
        min_lr=config.min_lr)
    amp_dtype, use_scaler = amp_settings(device, config.mixed_precision)
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    criterion = StableCombinedLoss(config.mse_weight, config.class_weight, config.binder_threshold)

    history: list[dict] = []
    start_epoch, best_spearman, best_epoch, stale_epochs = 1, -math.inf, 0, 0
    if resume_state is not None:
        model.load_state_dict(resume_state["model_state_dict"], strict=False)
        optimizer.load_state_dict(resume_state["optimizer_state_dict"])
        scheduler.load_state_dict(resume_state["scheduler_state_dict"])
        if resume_state.get("scaler_state_dict"):
            scaler.load_state_dict(resume_state["scaler_state_dict"])
        history = list(resume_state["history"])
        start_epoch = int(resume_state["epoch"]) + 1
        best_spearman = float(resume_state["best_spearman"])
        best_epoch = int(resume_state.get("best_epoch", 0))
        stale_epochs = int(resume_state.get("stale_epochs", 0))
        restore_rng_state(resume_state)

    net = DistributedDataParallel(model) if distributed.is_distributed() else model
    saved_config = {"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(config),
                    "data_fingerprint": fingerprint, "abag_version": __version__}

    def checkpoint_state(epoch: int) -> dict:
        return {
            "epoch": epoch, "model_state_dict": model.trainable_state_dict(),
            "optimizer_state_dict": optimizer.state_dict(), "scheduler_state_dict": scheduler.state_dict(),
            "scaler_state_dict": scaler.state_dict(), "best_spearman": best_spearman, "best_epoch": best_epoch,
            "stale_epochs": stale_epochs, "history": history, "config": saved_config,
            "data_order": {"scheme": "torch.randperm(seed * 1000003 + epoch)", "seed": config.seed},
            "world_size": distributed.world_size(), **capture_rng_state(),
        }

    if resume_state is None and main:
        save_checkpoint(checkpoint_state(0), last_path)  # a loadable last.pt even if the first epoch dies
    # A run that already stopped early stays stopped: resuming it must not train one more epoch.
    stopped_early = stale_epochs >= config.early_stopping_patience
    epoch = start_epoch - 1
    saved_epoch = start_epoch - 1  # what last.pt holds
    try:
        for epoch in range(start_epoch, config.epochs + 1 if not stopped_early else start_epoch):
            started = time.perf_counter()
            train_loss, steps = _train_epoch(net, data["train"], optimizer, scaler, criterion, config, device,
                                             amp_dtype, epoch, last_path)
            pkd, logits = predict_data(model, data["val"], device, amp_dtype=amp_dtype)
            val_loss = float(criterion(torch.from_numpy(pkd), data["val"].target, torch.from_numpy(logits),
                                       data["val"].censored))
            if not math.isfinite(val_loss):  # weights went bad: never let them overwrite a good checkpoint
                raise _diverged(f"validation loss is {'NaN' if math.isnan(val_loss) else 'Inf'}", epoch, steps,
                                last_path, "before saving this epoch")
            val = evaluate_predictions(data["val"].target.numpy(), pkd, sigmoid(logits),
                                       censored=data["val"].censored.numpy(), threshold=config.binder_threshold,
                                       ci=False)
            spearman = val.get("spearman")
            scheduler.step(spearman if spearman is not None else -1.0)
            record = EpochRecord(epoch, train_loss, val_loss, val_loss / max(train_loss, 1e-12), spearman,
                                 val.get("rmse"), optimizer.param_groups[0]["lr"], float(pkd.min()),
                                 float(pkd.max()), steps, time.perf_counter() - started)
            history.append(dataclasses.asdict(record))
            improved = spearman is not None and spearman > best_spearman
            if improved:
                best_spearman, best_epoch, stale_epochs = spearman, epoch, 0
            else:
                stale_epochs += 1
            if main:
                log(format_epoch(record, config))
                # best.pt before last.pt, with Ctrl-C held back: a run stopped at any moment resumes from a
                # last.pt whose best.pt is at least as new, so resuming never changes the result.
                with interrupts_deferred():
                    if improved or not best_path.exists():
                        save_checkpoint(checkpoint_state(epoch), best_path)
                    save_checkpoint(checkpoint_state(epoch), last_path)
                    write_csv_atomic(out_dir / "history.csv", pd.DataFrame(history))  # progress, every epoch
                    saved_epoch = epoch  # inside the block: a held-back Ctrl-C is delivered as it ends
            saved_epoch = epoch
            if stale_epochs >= config.early_stopping_patience:
                log(f"early stopping: validation Spearman has not improved for {stale_epochs} epochs "
                    f"(best {best_spearman:.4f} at epoch {best_epoch})")
                stopped_early = True
                break
    except KeyboardInterrupt:
        lost = f"epoch {saved_epoch + 1} was in progress" if saved_epoch < config.epochs else "training had finished"
        raise TrainingInterrupted(
            f"interrupted ({lost}); {last_path} holds the state after epoch {saved_epoch}, nothing else is lost. "
            f"Continue with the same command plus --resume.") from None
    distributed.barrier()

    # Evaluate the best epoch's weights on validation and test, beside the baselines.
    if best_path.exists():
        model.load_state_dict(load_checkpoint(best_path)["model_state_dict"], strict=False)
    results = {}
    predictions = {}
    for name in ("val", "test"):
        if len(data[name]) == 0:
            results[name] = None
            continue
        pkd, logits = predict_data(model, data[name], device, amp_dtype=amp_dtype)
        predictions[name] = (pkd, sigmoid(logits))
        results[name] = evaluate_predictions(data[name].target.numpy(), pkd, sigmoid(logits),
                                             censored=data[name].censored.numpy(),
                                             threshold=config.binder_threshold, seed=config.seed)
    baselines = {}
    if len(data["test"]):
        baselines = evaluate_baselines(frame.iloc[parts["train"]], frame.iloc[parts["test"]],
                                       threshold=config.binder_threshold, seed=config.seed)

    metrics = build_metrics(model, model_config, config, split, parts, results, baselines, history,
                            best_epoch, stopped_early, data_info or {})
    history_frame = pd.DataFrame(history)
    if main:
        write_json_atomic(out_dir / "metrics.json", metrics)
        write_csv_atomic(out_dir / "history.csv", history_frame)
        if "test" in predictions:
            test_frame = frame.iloc[parts["test"]].copy()
            test_frame["pkd_pred"], test_frame["binder_prob"] = predictions["test"]
            write_csv_atomic(out_dir / "test_predictions.csv", test_frame)
        if results.get("test"):
            from .metrics import format_comparison
            log(format_comparison({"model": results["test"], **baselines}, title=f"test ({split.description})"))
    return TrainResult(metrics, history_frame, out_dir, best_path, model, _assignment(split))


def _silent(_: str) -> None:
    return None


def _assignment(split) -> np.ndarray:
    return np.asarray(split.assignment)


def _diverged(what: str, epoch: int, step: int, last_path: Path, when: str) -> TrainingDivergedError:
    """The one-line divergence report: what went non-finite, where, what is safe on disk, what to do."""
    where = last_path if last_path.exists() else None
    return TrainingDivergedError(
        f"{what} at epoch {epoch}, step {step}; stopped {when}. Last good checkpoint (unchanged): "
        f"{where or 'none'}. Start a new run (another --out) with a lower --learning-rate, or check the data "
        f"for extreme values.", epoch, step, str(where) if where else None)


def _train_epoch(net: torch.nn.Module, data: PairData, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, criterion: StableCombinedLoss, config: TrainConfig,
                 device: torch.device, amp_dtype: torch.dtype | None, epoch: int,
                 last_path: Path) -> tuple[float, int]:
    """One pass over the training rows; returns (mean training loss, optimizer steps taken)."""
    net.train()
    order = shard_for_process(epoch_order(len(data), config.seed, epoch))
    batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    accumulation = config.gradient_accumulation
    total_loss, total_rows, steps = 0.0, 0, 0
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(batches, desc=f"epoch {epoch}", leave=False, disable=not config.progress, unit="batch")
    for index, rows in enumerate(bar):
        group_start = (index // accumulation) * accumulation
        group_size = min(accumulation, len(batches) - group_start)
        is_step = index == group_start + group_size - 1
        sync = contextlib.nullcontext() if is_step or not isinstance(net, DistributedDataParallel) else net.no_sync()
        with sync:
            with _autocast(device, amp_dtype):
                pkd, logits = net(data.inputs(rows, device))
            target, censored = data.target[rows].to(device), data.censored[rows].to(device)
            loss = criterion(pkd, target, logits, censored)
            try:
                check_loss_validity(loss, "training loss")
            except ValueError as exc:
                raise _diverged(str(exc), epoch, index + 1, last_path, "before the optimizer step") from None
            scaler.scale(loss / group_size).backward()
        if is_step:
            scaler.unscale_(optimizer)
            norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip_norm)
            if not scaler.is_enabled() and not torch.isfinite(norm):  # the fp16 scaler skips such steps itself
                kind = "NaN" if torch.isnan(norm) else "Inf"
                raise _diverged(f"gradient norm is {kind}", epoch, index + 1, last_path, "before the optimizer step")
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            steps += 1
        total_loss += float(loss.detach()) * len(rows)
        total_rows += len(rows)
        bar.set_postfix(loss=f"{total_loss / total_rows:.4f}")
    gathered = distributed.all_gather_objects((total_loss, total_rows))
    return sum(g[0] for g in gathered) / max(1, sum(g[1] for g in gathered)), steps


def format_epoch(record: EpochRecord, config: TrainConfig) -> str:
    """The per-epoch line, with the overfitting and prediction-range warnings appended."""
    spearman = "n/a" if record.val_spearman is None else f"{record.val_spearman:.4f}"
    rmse = "n/a" if record.val_rmse is None else f"{record.val_rmse:.3f}"
    line = (f"epoch {record.epoch:3d} | train loss {record.train_loss:.4f} | val loss {record.val_loss:.4f} | "
            f"overfit ratio {record.overfit_ratio:.2f} | val Spearman {spearman} | val RMSE {rmse} | "
            f"lr {record.learning_rate:.2e} | pred range [{record.pred_min:.2f}, {record.pred_max:.2f}] | "
            f"steps {record.optimizer_steps} | {record.seconds:.1f}s")
    if record.overfit_ratio > config.overfit_warning_ratio:
        line += f"\n  WARNING: overfitting — val/train loss ratio {record.overfit_ratio:.2f} > " \
                f"{config.overfit_warning_ratio}"
    if record.pred_min < PKD_RANGE[0] or record.pred_max > PKD_RANGE[1]:
        line += f"\n  WARNING: validation predictions leave [{PKD_RANGE[0]}, {PKD_RANGE[1]}]"
    return line


def build_metrics(model: AbAgModel, model_config: ModelConfig, config: TrainConfig, split, parts, results,
                  baselines, history, best_epoch, stopped_early, data_info) -> dict:
    """The v2.7 metrics.json document."""
    return {
        "version": METRICS_VERSION,
        "abag_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "test": results.get("test"),
        "val": results.get("val"),
        "baselines": {"test": baselines},
        "hyperparameters": {
            "batch_size": config.batch_size,
            "gradient_accumulation": config.gradient_accumulation,
            "effective_batch_size": config.effective_batch_size,
            "learning_rate": config.learning_rate,
            "dropout": model_config.dropout,
            "weight_decay": config.weight_decay,
            "grad_clip_norm": config.grad_clip_norm,
            "mse_weight": config.mse_weight,
            "class_weight": config.class_weight,
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
            "seed": config.seed,
        },
        "improvements": list(V27_IMPROVEMENTS),
        "data": {
            **data_info,
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
            "antigen_revision": model.antigen_encoder.revision,
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
