"""The epoch loop: train one epoch, validate, step the scheduler, record, save; stop early or on Ctrl-C.

`_train_epoch` is the inner loop, in the order a reader expects: forward, loss, NaN/Inf check, backward of
the scaled loss (passes that do not step skip DDP's all-reduce), and once per accumulation group: unscale,
clip, check the gradient norm, optimizer step, zero the gradients. When only the head learns, a group's
micro-batches run as one pass. A divergence names the epoch and the optimizer step it happened in. Saving is
the caller's (`save`), so this module never touches files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from abag import distributed
from abag.checkpoint import interrupts_deferred
from abag.errors import AbagError, TrainingDivergedError
from abag.evaluation.metrics import evaluate_predictions
from abag.model.apply import PairData, autocast, head_threads, predict_data, sigmoid
from abag.model.losses import StableCombinedLoss, check_loss_validity
from abag.model.ranking import grouped_epoch_order, pairwise_ranking_loss
from abag.policy import Precision
from abag.training.config import RunInputs, TrainConfig
from abag.training.monitors import EpochRecord, format_epoch, saturation_share
from abag.training.state import TrainingState


class TrainingInterrupted(AbagError):
    """Ctrl-C: the last epoch-boundary checkpoint is on disk and `--resume` continues from it."""

    exit_code = 130


def epoch_order(n: int, seed: int, epoch: int, groups: torch.Tensor | None = None,
                rows_per_group: int = 1) -> np.ndarray:
    """The shuffled row order of an epoch: a function of (seed, epoch) only, so resume needs no extra state.

    With `groups` (the ranking term is on) rows come in runs of `rows_per_group` sharing a group."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if groups is not None:
        return grouped_epoch_order(groups.numpy(), generator, rows_per_group)
    return torch.randperm(n, generator=generator).numpy()


def training_groups(run: RunInputs) -> torch.Tensor | None:
    """Group code of every training row for the ranking term (split groups, else the antigen); None when off."""
    if run.config.ranking_weight <= 0:
        return None
    rows = run.parts["train"]
    groups = run.split.groups if run.split.groups is not None else run.frame["antigen"].to_numpy()
    return torch.from_numpy(np.unique(np.asarray(groups)[rows].astype(str), return_inverse=True)[1].astype(np.int64))


def shard_for_process(order: np.ndarray) -> np.ndarray:
    """This process's share of an epoch (padded by wrapping so every process runs the same number of steps)."""
    world = distributed.world_size()
    if world == 1:
        return order
    total = math.ceil(len(order) / world) * world
    padded = np.concatenate([order, order[: total - len(order)]])
    return padded[distributed.rank()::world]


def fit(state: TrainingState, run: RunInputs, criterion: StableCombinedLoss,
        save: Callable[[TrainingState, bool], None], log: Callable[[str], None], last_path: Path) -> bool:
    """Train from `state.epoch + 1` to `config.epochs`; returns whether training stopped early.

    After every epoch `save(state, improved)` runs with Ctrl-C held back, so an interrupted run always has
    its newest finished epoch on disk. Ctrl-C raises `TrainingInterrupted` saying what is saved.
    """
    config = run.config
    net = DistributedDataParallel(state.model) if distributed.is_distributed() else state.model
    stopped_early = state.stopped_early(config)  # a run that already stopped early stays stopped
    saved_epoch = state.epoch                    # what last.pt holds
    last_epoch = state.epoch if stopped_early else config.epochs
    clusters = training_groups(run)
    try:
        for epoch in range(state.epoch + 1, last_epoch + 1):
            started = time.perf_counter()
            train_loss, steps = _train_epoch(net, run.data["train"], state.optimizer, state.scaler, criterion,
                                             config, run.device, run.precision, epoch, last_path, clusters,
                                             whole_groups=getattr(state.model, "encoders_frozen", False))
            record = _validate(state, run, criterion, train_loss, steps, epoch, last_path)
            record = dataclasses.replace(record, seconds=time.perf_counter() - started)
            improved = state.end_epoch(dataclasses.asdict(record), record.val_spearman)
            log(format_epoch(record, config))
            # best.pt before last.pt, with Ctrl-C held back: a run stopped at any moment resumes from a
            # last.pt whose best.pt is at least as new, so resuming never changes the result.
            with interrupts_deferred():
                save(state, improved)
                saved_epoch = epoch  # inside the block: a held-back Ctrl-C is delivered as it ends
            if state.stopped_early(config):
                log(f"early stopping: validation Spearman has not improved for {state.stale_epochs} epochs "
                    f"(best {state.best_spearman:.4f} at epoch {state.best_epoch})")
                stopped_early = True
                break
    except KeyboardInterrupt:
        lost = f"epoch {saved_epoch + 1} was in progress" if saved_epoch < config.epochs else "training had finished"
        raise TrainingInterrupted(
            f"interrupted ({lost}); {last_path} holds the state after epoch {saved_epoch}, nothing else is lost. "
            f"Continue with the same command plus --resume.") from None
    return stopped_early


def _validate(state: TrainingState, run: RunInputs, criterion: StableCombinedLoss, train_loss: float,
              steps: int, epoch: int, last_path: Path) -> EpochRecord:
    """Validation loss and metrics in eval mode, then one scheduler step on validation Spearman."""

    val = run.data["val"]
    pkd, logits = predict_data(state.model, val, run.device, precision=run.precision)
    val_loss = float(criterion(torch.from_numpy(pkd), val.target, torch.from_numpy(logits), val.censored))
    if not math.isfinite(val_loss):  # weights went bad: never let them overwrite a good checkpoint
        raise _diverged(f"validation loss is {'NaN' if math.isnan(val_loss) else 'Inf'}", epoch, steps,
                        last_path, "before saving this epoch")
    metrics = evaluate_predictions(val.target.numpy(), pkd, sigmoid(logits), censored=val.censored.numpy(),
                                   threshold=run.config.binder_threshold, ci=False)
    spearman = metrics.get("spearman")
    state.scheduler.step(spearman if spearman is not None else -1.0)
    saturation = saturation_share(pkd, (run.model_config.pkd_min, run.model_config.pkd_max))
    return EpochRecord(epoch, train_loss, val_loss, val_loss / max(train_loss, 1e-12), spearman,
                       metrics.get("rmse"), state.optimizer.param_groups[0]["lr"], float(pkd.min()),
                       float(pkd.max()), saturation, steps, 0.0)


def _diverged(what: str, epoch: int, step: int, last_path: Path, when: str) -> TrainingDivergedError:
    """The one-line divergence report: what went non-finite, where, what is safe on disk, what to do."""
    where = last_path if last_path.exists() else None
    return TrainingDivergedError(
        f"{what} at epoch {epoch}, step {step}; stopped {when}. Last good checkpoint (unchanged): "
        f"{where or 'none'}. Start a new run (another --out) with a lower --learning-rate, or check the data "
        f"for extreme values.", epoch, step, str(where) if where else None)


def _train_epoch(net: torch.nn.Module, data: PairData, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, criterion: StableCombinedLoss, config: TrainConfig,
                 device: torch.device, precision: Precision, epoch: int, last_path: Path,
                 clusters: torch.Tensor | None = None, whole_groups: bool = False) -> tuple[float, int]:
    """One pass over the training rows; returns (mean training loss, optimizer steps taken).

    Micro-batches of `batch_size` rows form groups of `gradient_accumulation` (the last group may be
    shorter); each group is one optimizer step whose gradient is the mean over the group's rows: every
    micro-batch's mean loss is weighted by its share of the group's rows, so a short last micro-batch
    counts for its rows only. Under DDP each process holds an equal share of every group (see
    `shard_for_process`), so the all-reduced average of the processes' gradients is the mean over all rows.
    With `whole_groups` a group's micro-batches run as one forward and backward pass with the same loss
    (`StableCombinedLoss` with `segments`): micro-batches bound the memory of a model whose encoders learn,
    and when only the head learns they would only multiply its small steps (8 passes per step instead of
    one; the dropout masks are drawn for the group at once). With `clusters` (each training row's group
    code) the loss adds `config.ranking_weight` x the pairwise ranking term (`abag.model.ranking`), which
    pairs rows within a micro-batch, so every micro-batch is then a pass of its own.
    """
    net.train()
    order = shard_for_process(epoch_order(len(data), config.seed, epoch, clusters, config.ranking_rows_per_group))
    batches = [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    groups = [batches[i:i + config.gradient_accumulation]
              for i in range(0, len(batches), config.gradient_accumulation)]
    total_loss, total_rows, steps = 0.0, 0, 0
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(total=len(batches), desc=f"epoch {epoch}", leave=False, disable=not config.progress, unit="batch")
    with head_threads(data, device):  # cached embeddings on the CPU: one thread (see head_threads)
        for group in groups:
            group_rows = sum(len(rows) for rows in group)
            passes = [group] if whole_groups and clusters is None else [[rows] for rows in group]
            for position, micro_batches in enumerate(passes):
                rows = np.concatenate(micro_batches)
                # Only the stepping pass all-reduces the gradients under DDP.
                sync = contextlib.nullcontext() if position == len(passes) - 1 \
                    or not isinstance(net, DistributedDataParallel) else net.no_sync()
                with sync:
                    with autocast(device, precision):
                        pkd, logits = net(data.inputs(rows, device))
                    target, censored = data.target[rows].to(device), data.censored[rows].to(device)
                    base_loss = loss = criterion(pkd, target, logits, censored,
                                                 segments=[len(batch) for batch in micro_batches])
                    if clusters is not None:  # the reported training loss stays the v2.7 one (as validation's)
                        loss = base_loss + config.ranking_weight * pairwise_ranking_loss(
                            pkd, target, clusters[torch.as_tensor(rows)].to(device), censored)
                    try:
                        check_loss_validity(loss, "training loss")
                    except ValueError as exc:
                        raise _diverged(str(exc), epoch, steps + 1, last_path, "before the optimizer step") from None
                    scaler.scale(loss * (len(rows) / group_rows)).backward()
                total_loss += float(base_loss.detach()) * len(rows)
                total_rows += len(rows)
                bar.update(len(micro_batches))
                bar.set_postfix(loss=f"{total_loss / total_rows:.4f}")
            _optimizer_step(net, optimizer, scaler, config, epoch, steps + 1, last_path)
            steps += 1
    bar.close()
    gathered = distributed.all_gather_objects((total_loss, total_rows))
    return sum(g[0] for g in gathered) / max(1, sum(g[1] for g in gathered)), steps


def _optimizer_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                    config: TrainConfig, epoch: int, step: int, last_path: Path) -> None:
    """Unscale, clip, refuse a non-finite gradient norm, step, and zero the gradients for the next group."""
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip_norm)
    if not scaler.is_enabled() and not torch.isfinite(norm):  # the fp16 scaler skips such steps itself
        kind = "NaN" if torch.isnan(norm) else "Inf"
        raise _diverged(f"gradient norm is {kind}", epoch, step, last_path, "before the optimizer step")
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
