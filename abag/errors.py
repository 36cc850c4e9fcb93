"""Exceptions that abag turns into one clear line (and an exit code) instead of a traceback."""

from __future__ import annotations


class AbagError(Exception):
    """Base class: an error a user can act on. The CLI prints `abag: error: <message>`."""

    exit_code = 1


class EncoderUnavailableError(AbagError):
    """An encoder cannot be loaded (offline hub, missing package, unknown name)."""

    exit_code = 2


class CheckpointError(AbagError):
    """A checkpoint is missing, truncated, foreign, from another version, or cannot be written."""

    exit_code = 2


class OutputNotWritableError(AbagError):
    """The output folder cannot be written; reported before any training starts."""

    exit_code = 2


class TrainingDivergedError(AbagError):
    """The loss became NaN or Inf; training stopped before the optimizer applied the bad step."""

    exit_code = 3

    def __init__(self, message: str, epoch: int, step: int, last_checkpoint: str | None):
        super().__init__(message)
        self.epoch = epoch
        self.step = step
        self.last_checkpoint = last_checkpoint


class InvalidSettingError(AbagError):
    """A setting cannot work on this machine or with the other settings (e.g. fp16 without a GPU)."""

    exit_code = 2


class NonFiniteEmbeddingError(AbagError):
    """An encoder produced NaN or Inf embeddings (typically an fp16 overflow); raised by the embedding cache."""

    exit_code = 2


class EmbeddingCacheError(AbagError):
    """The cache folder keeps returning damaged shards, or another process failed while encoding."""

    exit_code = 2
