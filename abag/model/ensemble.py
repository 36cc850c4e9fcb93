"""A fold ensemble as one model: the K heads of `abag train --folds K` over one shared pair of encoders.

Each member of a fold ensemble (`abag.folds.members`) is an ordinary `AbAgModel` trained on K−1 folds. The saved
ensemble keeps every member's head and rebuilds them over a single set of encoders (an ESM-2 650M is
loaded once, never K times; fold ensembles need frozen encoders for that reason). `FoldEnsemble` predicts
the mean pKd and the mean binder probability of its members; `FoldEnsemble.member(k)` is member k on its
own, which `abag.inference` uses for the per-member predictions (`predict_members`, the `pkd_std` column).
With a wide part (`abag.model.wide`) every member's head holds the wide part of its own training folds: member k
predicts clamp(wide_k + deep_k), and the ensemble the mean of those.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from abag.encoding.batches import PairEmbeddings, PairSequences
from abag.encoding.features import InputSpec
from abag.encoding.loader import load_encoder
from abag.encoding.sequence_encoder import SequenceEncoder
from abag.model.config import ModelConfig
from abag.model.network import AbAgModel, AffinityHead, encoder_names

__all__ = ["FoldHeads", "FoldEnsemble", "build_fold_ensemble"]


class FoldHeads(nn.Module):
    """K heads over the same chain embeddings; the forward pass returns their mean pKd and mean binder
    probability (as the logit of that mean, so `sigmoid` of the output is the mean probability)."""

    def __init__(self, heads: Sequence[nn.Module]):
        super().__init__()
        if len(heads) < 1:
            raise ValueError("a fold ensemble needs at least one head")
        self.fold_heads = nn.ModuleList(heads)

    @property
    def uses_antigen(self) -> bool:
        return self.fold_heads[0].uses_antigen

    def each(self, x: PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor]:
        """(pKd, binder logit) of every member, each of shape (K, B); `x.offset`, when the members have wide
        parts, is (K, B): member k adds row k."""
        outputs = [head(self._for_member(x, k)) for k, head in enumerate(self.fold_heads)]
        return torch.stack([pkd for pkd, _ in outputs]), torch.stack([logit for _, logit in outputs])

    def _for_member(self, x: PairEmbeddings, k: int) -> PairEmbeddings:
        if x.offset is None:
            return x
        if x.offset.dim() != 2 or x.offset.shape[0] != len(self.fold_heads):
            raise ValueError(f"a fold ensemble with wide parts needs one offset row per member, shape "
                             f"({len(self.fold_heads)}, B); got {tuple(x.offset.shape)}")
        return replace(x, offset=x.offset[k])

    def forward(self, x: PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor]:
        _, pkd, logits = self.parts(x)
        return pkd, logits

    def parts(self, x: PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The members' mean deep part, mean pKd (each member's clamped sum) and the logit of their mean binder
        probability, each (B,)."""
        outputs = [head.parts(self._for_member(x, k)) for k, head in enumerate(self.fold_heads)]
        deep, pkd, logits = (torch.stack(part) for part in zip(*outputs))
        return deep.mean(0), pkd.mean(0), torch.logit(torch.sigmoid(logits).mean(0))


class _Member(nn.Module):
    """Member k of a `FoldEnsemble` as a model of its own (shares the ensemble's encoders and head)."""

    def __init__(self, ensemble: "FoldEnsemble", index: int):
        super().__init__()
        self.ensemble = ensemble
        self.index = index

    @property
    def config(self):
        return self.ensemble.config

    @property
    def has_wide(self) -> bool:
        return self.ensemble.has_wide

    def wide_part(self):
        """This member's wide part (fitted on its own training folds), or None."""
        return self.ensemble.head.fold_heads[self.index].wide.part() if self.has_wide else None

    def wide_offsets(self, frame: pd.DataFrame) -> np.ndarray | None:
        part = self.wide_part()
        return None if part is None else part.predict(frame).astype(np.float32)

    def _embedded(self, batch: PairSequences | PairEmbeddings) -> PairEmbeddings:
        if isinstance(batch, PairSequences):
            if self.has_wide and batch.offset is None:
                frame = pd.DataFrame({"heavy": batch.heavy, "light": batch.light, "antigen": batch.antigen})
                batch = replace(batch, offset=torch.from_numpy(self.wide_offsets(frame)))
            batch = self.ensemble.embed(batch)
        return batch

    def forward(self, batch: PairSequences | PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ensemble.head.fold_heads[self.index](self._embedded(batch))

    def parts(self, batch: PairSequences | PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(deep, pKd, binder logit) of this member (`AffinityHead.parts`)."""
        return self.ensemble.head.fold_heads[self.index].parts(self._embedded(batch))


class FoldEnsemble(AbAgModel):
    """An `AbAgModel` whose head is `FoldHeads`: K members' heads over one pair of frozen encoders.

    Everything that reads a model (embedding, the cache, `predict_frame`, `load_trained_model`) works
    unchanged.
    """

    def __init__(self, config: ModelConfig, antibody_encoder: SequenceEncoder,
                 antigen_encoder: SequenceEncoder | None, n_folds: int):
        super().__init__(config, antibody_encoder, antigen_encoder)
        if n_folds < 1:
            raise ValueError(f"n_folds must be at least 1, got {n_folds}")
        if not self.encoders_frozen:
            raise ValueError("a fold ensemble shares one set of frozen encoders; fine-tuned encoders "
                             "(finetune_layers > 0) cannot be shared")
        # self.antibody_encoder: the view the model pools with (regions: five times the encoder's width).
        heads = [self.head] + [AffinityHead(self.antibody_encoder.hidden_size, self.antigen_dim, config)
                               for _ in range(n_folds - 1)]
        self.head = FoldHeads(heads)

    @property
    def n_folds(self) -> int:
        return len(self.head.fold_heads)

    def wide_part(self):
        """A fold ensemble has one wide part per member (`member(k).wide_part()`), not one of its own."""
        raise AttributeError("a fold ensemble has one wide part per member: use member(k).wide_part()")

    def set_wide(self, part) -> None:
        raise AttributeError("a fold ensemble has one wide part per member; each is fitted by its member's run")

    def wide_offsets(self, frame: pd.DataFrame) -> np.ndarray | None:
        """Every member's wide(x) per row, (K, n) float32; None without wide parts."""
        if not self.has_wide:
            return None
        return np.stack([self.member(k).wide_offsets(frame) for k in range(self.n_folds)])

    def member(self, index: int) -> nn.Module:
        """Member `index` (0-based) alone: same inputs as the ensemble, that member's (pKd, logit)."""
        if not 0 <= index < self.n_folds:
            raise IndexError(f"member {index} of a {self.n_folds}-member ensemble")
        return _Member(self, index)

    @classmethod
    def from_members(cls, members: Sequence[AbAgModel]) -> "FoldEnsemble":
        """The ensemble of trained members that share their encoders (their heads' weights are copied)."""
        first = members[0]
        if any(m.antibody_encoder is not first.antibody_encoder or m.antigen_encoder is not first.antigen_encoder
               for m in members):
            raise ValueError("fold ensemble members must share one pair of encoder objects")
        ensemble = cls(first.config, first.antibody_encoder, first.antigen_encoder, len(members))
        ensemble.head.to(next(first.head.parameters()).device)
        for head, member in zip(ensemble.head.fold_heads, members):
            head.load_state_dict(member.head.state_dict())
        return ensemble.eval()


def build_fold_ensemble(config: ModelConfig, n_folds: int,
                        encoders: dict[str, SequenceEncoder] | None = None) -> FoldEnsemble:
    """Load the named encoders once (as `abag.model.build_model` does) and build an untrained ensemble."""

    encoders = dict(encoders or {})
    for name in encoder_names(config):  # an antigen encoder the head ignores is never loaded
        if name not in encoders:
            encoders[name] = load_encoder(name)
    antigen = encoders[config.antigen_encoder] if InputSpec.from_config(config).uses_antigen else None
    return FoldEnsemble(config, encoders[config.antibody_encoder], antigen, n_folds)
