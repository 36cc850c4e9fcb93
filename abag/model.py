"""The dual-encoder affinity model: chain embeddings → fusion → pKd (bounded to [4, 14]) and binder logit."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .encoders import SequenceEncoder


@dataclass
class ModelConfig:
    """Architecture of the affinity model; encoders are named, so a checkpoint can rebuild them."""

    antibody_encoder: str = "antiberty"
    antigen_encoder: str = "antiberty"
    hidden_dim: int = 256
    dropout: float = 0.1
    finetune_layers: int = 0
    pkd_min: float = 4.0
    pkd_max: float = 14.0
    initial_pkd: float = 8.0


@dataclass
class PairSequences:
    """A batch of complexes as sequences; `light` is "" for single-domain antibodies, antigen chains joined by `|`."""

    heavy: list[str]
    light: list[str]
    antigen: list[str]


@dataclass
class PairEmbeddings:
    """A batch of complexes as pooled chain embeddings (what the head sees)."""

    heavy: torch.Tensor          # (B, d_antibody)
    light: torch.Tensor          # (B, d_antibody); rows without a light chain are ignored
    light_present: torch.Tensor  # (B,) bool
    antigen: torch.Tensor        # (B, d_antigen)

    def to(self, device: torch.device) -> "PairEmbeddings":
        return PairEmbeddings(self.heavy.to(device), self.light.to(device),
                              self.light_present.to(device), self.antigen.to(device))


def combine_chains(chain_vectors: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Mean over all residues of a multi-chain antigen: chain means weighted by chain length."""
    weights = torch.tensor(lengths, dtype=chain_vectors.dtype, device=chain_vectors.device)
    return (chain_vectors * weights.unsqueeze(1)).sum(0) / weights.sum()


class AffinityHead(nn.Module):
    """Projects antibody (heavy + light or a learned "no light chain" vector) and antigen, fuses, predicts."""

    def __init__(self, antibody_dim: int, antigen_dim: int, config: ModelConfig):
        super().__init__()
        h, p = config.hidden_dim, config.dropout
        self.pkd_min, self.pkd_max = config.pkd_min, config.pkd_max
        self.no_light = nn.Parameter(torch.zeros(antibody_dim))
        self.antibody_norm = nn.LayerNorm(antibody_dim)
        self.antigen_norm = nn.LayerNorm(antigen_dim)
        self.antibody_proj = nn.Sequential(nn.Linear(2 * antibody_dim, h), nn.GELU(), nn.Dropout(p))
        self.antigen_proj = nn.Sequential(nn.Linear(antigen_dim, h), nn.GELU(), nn.Dropout(p))
        self.fusion = nn.Sequential(nn.Linear(3 * h, h), nn.GELU(), nn.Dropout(p))
        self.pkd_out = nn.Linear(h, 1)
        self.class_out = nn.Linear(h, 1)
        # Start predictions at a typical pKd rather than mid-range, so early epochs are not spent drifting.
        fraction = (config.initial_pkd - self.pkd_min) / (self.pkd_max - self.pkd_min)
        fraction = min(max(fraction, 0.02), 0.98)
        nn.init.constant_(self.pkd_out.bias, math.log(fraction / (1 - fraction)))

    def forward(self, x: PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor]:
        light = torch.where(x.light_present.unsqueeze(1), x.light, self.no_light.expand_as(x.light))
        antibody = self.antibody_proj(torch.cat([self.antibody_norm(x.heavy), self.antibody_norm(light)], dim=1))
        antigen = self.antigen_proj(self.antigen_norm(x.antigen))
        fused = self.fusion(torch.cat([antibody, antigen, antibody * antigen], dim=1))
        # A scaled sigmoid keeps gradients alive near the bounds (a bare clamp has none outside them);
        # the clamp then guarantees the v2.7 contract even under reduced precision.
        span = self.pkd_max - self.pkd_min
        pkd = self.pkd_min + span * torch.sigmoid(self.pkd_out(fused).squeeze(1).float())
        pkd = pkd.clamp(self.pkd_min, self.pkd_max)
        return pkd, self.class_out(fused).squeeze(1).float()


class AbAgModel(nn.Module):
    """Dual encoder: antibody LM for heavy/light chains, antigen LM for the antigen, and an `AffinityHead`.

    `forward` takes either `PairSequences` (encodes on the fly) or `PairEmbeddings` (from the embedding
    cache) and returns `(pkd_pred, class_logits)`; pkd_pred always lies in [pkd_min, pkd_max].
    """

    def __init__(self, config: ModelConfig, antibody_encoder: SequenceEncoder, antigen_encoder: SequenceEncoder):
        super().__init__()
        self.config = config
        self.antibody_encoder = antibody_encoder
        self.antigen_encoder = antigen_encoder
        antibody_encoder.freeze(config.finetune_layers)
        antigen_encoder.freeze(config.finetune_layers)
        self.head = AffinityHead(antibody_encoder.hidden_size, antigen_encoder.hidden_size, config)

    def train(self, mode: bool = True) -> "AbAgModel":
        """Frozen encoders stay in eval mode (no dropout), so cached and on-the-fly embeddings agree."""
        super().train(mode)
        for encoder in (self.antibody_encoder, self.antigen_encoder):
            if not encoder.is_trainable:
                encoder.eval()
        return self

    @property
    def encoders_frozen(self) -> bool:
        return not (self.antibody_encoder.is_trainable or self.antigen_encoder.is_trainable)

    def embed(self, batch: PairSequences) -> PairEmbeddings:
        """Encode a batch of sequences into pooled chain embeddings (the same numbers the cache stores)."""
        antibody_chains = list(dict.fromkeys(batch.heavy + [c for c in batch.light if c]))
        antibody = self.antibody_encoder(antibody_chains)
        position = {c: i for i, c in enumerate(antibody_chains)}
        heavy = antibody[[position[c] for c in batch.heavy]]
        light_present = torch.tensor([bool(c) for c in batch.light], device=antibody.device)
        light = antibody[[position[c] if c else 0 for c in batch.light]]
        antigen_chains = list(dict.fromkeys(c for a in batch.antigen for c in a.split("|")))
        chain_vectors = self.antigen_encoder(antigen_chains)
        chain_position = {c: i for i, c in enumerate(antigen_chains)}
        antigen = torch.stack([
            combine_chains(chain_vectors[[chain_position[c] for c in a.split("|")]], [len(c) for c in a.split("|")])
            for a in batch.antigen
        ])
        return PairEmbeddings(heavy, light, light_present, antigen)

    def forward(self, batch: PairSequences | PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batch, PairSequences):
            batch = self.embed(batch)
        return self.head(batch)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights a checkpoint must hold: the head, plus encoder weights only when they are fine-tuned."""
        state = self.state_dict()
        if self.encoders_frozen:
            return {k: v for k, v in state.items() if k.startswith("head.")}
        return state


def build_model(config: ModelConfig, encoders: dict[str, SequenceEncoder] | None = None) -> AbAgModel:
    """Load the named encoders (reusing one object when both sides use the same encoder) and build the model."""
    from .encoders import load_encoder

    encoders = dict(encoders or {})
    for name in (config.antibody_encoder, config.antigen_encoder):
        if name not in encoders:
            encoders[name] = load_encoder(name)
    return AbAgModel(config, encoders[config.antibody_encoder], encoders[config.antigen_encoder])
