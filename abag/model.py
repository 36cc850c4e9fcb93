"""The dual-encoder affinity model: chain embeddings → fusion → pKd (bounded to [4, 14]) and binder logit."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .encoders import SequenceEncoder
from .features import InputSpec
from .policy import PKD_RANGE


@dataclass
class ModelConfig:
    """Architecture of the affinity model; encoders are named, so a checkpoint can rebuild them."""

    antibody_encoder: str = "antiberty"
    antigen_encoder: str = "antiberty"
    hidden_dim: int = 256
    dropout: float = 0.1
    finetune_layers: int = 0
    pkd_min: float = PKD_RANGE[0]
    pkd_max: float = PKD_RANGE[1]
    initial_pkd: float = 8.0
    # Chosen by 5-fold antigen-cluster cross-validation on saaintdb_dev (bench/RESULTS.md, "Real data"):
    # the v2.7 model (trim_antibody=False, composition_k=0, fusion="interaction", input_dropout=0,
    # n_members=1, head="mlp") scored mean Spearman 0.04 over 3 training seeds; these defaults 0.14.
    trim_antibody: bool = True    # encode heavy/light chains as variable domains (cut after FR4)
    composition_k: int = 0        # append k-mer (k = 1..composition_k) composition + log length per chain
    # How antibody and antigen meet in the head: "interaction" (v2.7: [ab, ag, ab*ag]), "concat" ([ab, ag]),
    # or "antibody_only" (the antigen is not used: an antibody-intrinsic affinity prior). "antibody_only"
    # generalised best to unseen antigen clusters, but it cannot rank antigen variants against one antibody.
    fusion: str = "antibody_only"
    input_dropout: float = 0.3    # dropout on the (normalised) chain vectors entering the head (0 when dropout is 0)
    n_members: int = 5            # independently initialised head copies trained together, predictions averaged
    head: str = "mlp"             # "mlp" (v2.7 projections + fusion MLP) or "linear" (one linear layer, see AffinityHead)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Rebuild a saved config; fields missing from it (written before they existed) take the values
        that reproduce the model it was trained as (`LEGACY_FIELD_VALUES`), not today's defaults."""
        return cls(**{**LEGACY_FIELD_VALUES, **values})


# Fields added after v2.7 and the values that give the v2.7 head, for configs saved before they existed.
LEGACY_FIELD_VALUES = {"trim_antibody": False, "composition_k": 0, "fusion": "interaction", "input_dropout": 0.0, "n_members": 1, "head": "mlp"}
HEADS = ("mlp", "linear")
FUSIONS = ("interaction", "concat", "antibody_only")


@dataclass
class PairSequences:
    """A batch of complexes as sequences; `light` is "" for single-domain antibodies, antigen chains joined by `|`."""

    heavy: list[str]
    light: list[str]
    antigen: list[str]


@dataclass
class PairEmbeddings:
    """A batch of complexes as pooled chain embeddings (what the head sees).

    With `ModelConfig.composition_k > 0` every chain vector is `[pooled embedding | chain features]`
    (`abag.features.chain_features`); the head splits them by the encoder widths it was built with.
    """

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


class MemberLinear(nn.Module):
    """`n_members` independent linear layers applied at once: (M, B, in) -> (M, B, out).

    Each member is initialised like `nn.Linear` (uniform in ±1/sqrt(in)); `bias` has shape (M, out).
    """

    def __init__(self, n_members: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class AffinityHead(nn.Module):
    """Projects antibody (heavy + light or a learned "no light chain" vector) and antigen, fuses, predicts.

    `antibody_dim`/`antigen_dim` are the encoder widths; with chain features (`composition_k > 0`) each
    chain vector carries `feature_dim` more columns, which skip the LayerNorm (they are already on a
    fixed scale) and join the projections. With `n_members > 1` the projections, fusion and outputs are
    `n_members` independently initialised copies (with independent dropout masks) trained together; the
    head returns the mean of their bounded pKd predictions and of their binder logits.
    """

    def __init__(self, antibody_dim: int, antigen_dim: int, config: ModelConfig):
        super().__init__()
        h, p = config.hidden_dim, config.dropout
        f = InputSpec.from_config(config).feature_dim
        self.antibody_dim, self.antigen_dim, self.feature_dim = antibody_dim, antigen_dim, f
        self.pkd_min, self.pkd_max = config.pkd_min, config.pkd_max
        self.n_members = int(config.n_members)
        if self.n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {config.n_members}")
        if config.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {config.fusion!r}; choose one of {FUSIONS}")
        if config.head not in HEADS:
            raise ValueError(f"unknown head {config.head!r}; choose one of {HEADS}")
        self.head_kind = config.head

        def linear(n_in: int, n_out: int) -> nn.Module:
            return nn.Linear(n_in, n_out) if self.n_members == 1 else MemberLinear(self.n_members, n_in, n_out)

        self.no_light = nn.Parameter(torch.zeros(antibody_dim + f))
        self.antibody_norm = nn.LayerNorm(antibody_dim)
        self.fusion_mode = config.fusion
        if self.fusion_mode != "antibody_only":  # no unused parameters (DistributedDataParallel rejects them)
            self.antigen_norm = nn.LayerNorm(antigen_dim)
        # dropout = 0 switches every dropout off (what `--dropout 0` promises), input dropout included.
        self.input_dropout = nn.Dropout(config.input_dropout if config.dropout > 0 else 0.0)
        if self.head_kind == "linear":
            # One linear layer on [heavy, light(, antigen)] (no interaction term: "interaction" acts as
            # "concat"). Inputs are scaled by 1/sqrt(width) so that Adam's per-weight steps move the output
            # slowly: early stopping then walks a ridge-like path instead of jumping to the interpolating fit.
            width = 2 * (antibody_dim + f) + (0 if self.fusion_mode == "antibody_only" else antigen_dim + f)
            self.input_scale = 1.0 / math.sqrt(width)
            self.pkd_out = linear(width, 1)
            self.class_out = linear(width, 1)
        else:
            self.antibody_proj = nn.Sequential(linear(2 * (antibody_dim + f), h), nn.GELU(), nn.Dropout(p))
            if self.fusion_mode != "antibody_only":
                self.antigen_proj = nn.Sequential(linear(antigen_dim + f, h), nn.GELU(), nn.Dropout(p))
            width = {"interaction": 3 * h, "concat": 2 * h, "antibody_only": h}[self.fusion_mode]
            self.fusion = nn.Sequential(linear(width, h), nn.GELU(), nn.Dropout(p))
            self.pkd_out = linear(h, 1)
            self.class_out = linear(h, 1)
        # Start predictions at a typical pKd rather than mid-range, so early epochs are not spent drifting.
        fraction = (config.initial_pkd - self.pkd_min) / (self.pkd_max - self.pkd_min)
        fraction = min(max(fraction, 0.02), 0.98)
        nn.init.constant_(self.pkd_out.bias, math.log(fraction / (1 - fraction)))

    def _normed(self, x: torch.Tensor, width: int, norm: nn.LayerNorm) -> torch.Tensor:
        if not self.feature_dim:
            return norm(x)
        return torch.cat([norm(x[:, :width]), x[:, width:]], dim=1)

    def _members(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (M, B, d) when the head has several members; dropout then differs per member."""
        x = x if self.n_members == 1 else x.unsqueeze(0).expand(self.n_members, *x.shape)
        return self.input_dropout(x)

    def forward(self, x: PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor]:
        light = torch.where(x.light_present.unsqueeze(1), x.light, self.no_light.expand_as(x.light))
        heavy = self._normed(x.heavy, self.antibody_dim, self.antibody_norm)
        light = self._normed(light, self.antibody_dim, self.antibody_norm)
        if self.head_kind == "linear":
            parts = [heavy, light]
            if self.fusion_mode != "antibody_only":
                parts.append(self._normed(x.antigen, self.antigen_dim, self.antigen_norm))
            fused = self._members(torch.cat(parts, dim=1) * self.input_scale)
        elif self.fusion_mode == "antibody_only":
            fused = self.fusion(self.antibody_proj(self._members(torch.cat([heavy, light], dim=1))))
        else:
            antibody = self.antibody_proj(self._members(torch.cat([heavy, light], dim=1)))
            antigen = self.antigen_proj(self._members(self._normed(x.antigen, self.antigen_dim, self.antigen_norm)))
            parts = [antibody, antigen] + ([antibody * antigen] if self.fusion_mode == "interaction" else [])
            fused = self.fusion(torch.cat(parts, dim=-1))
        # A scaled sigmoid keeps gradients alive near the bounds (a bare clamp has none outside them);
        # the clamp then guarantees the v2.7 contract even under reduced precision.
        span = self.pkd_max - self.pkd_min
        pkd = self.pkd_min + span * torch.sigmoid(self.pkd_out(fused).squeeze(-1).float())
        logits = self.class_out(fused).squeeze(-1).float()
        if self.n_members > 1:  # (M, B) -> (B,): the ensemble mean
            pkd, logits = pkd.mean(0), logits.mean(0)
        pkd = pkd.clamp(self.pkd_min, self.pkd_max)
        return pkd, logits


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
        """Encode a batch of sequences into pooled chain embeddings (the same numbers the cache stores).

        Applies the config's `InputSpec` exactly as `pair_embeddings.embed_pairs` does: variable-domain
        trimming before encoding, chain features appended after pooling.
        """
        spec = InputSpec.from_config(self.config)
        heavy_chains = [spec.encoder_input(c, "heavy") for c in batch.heavy]
        light_chains = [spec.encoder_input(c, "light") if c else "" for c in batch.light]
        antibody_chains = list(dict.fromkeys(heavy_chains + [c for c in light_chains if c]))
        antibody = self._with_features(self.antibody_encoder(antibody_chains), antibody_chains, spec)
        position = {c: i for i, c in enumerate(antibody_chains)}
        heavy = antibody[[position[c] for c in heavy_chains]]
        light_present = torch.tensor([bool(c) for c in light_chains], device=antibody.device)
        light = antibody[[position[c] if c else 0 for c in light_chains]]
        antigen_chains = list(dict.fromkeys(c for a in batch.antigen for c in a.split("|")))
        chain_vectors = self._with_features(self.antigen_encoder(antigen_chains), antigen_chains, spec)
        chain_position = {c: i for i, c in enumerate(antigen_chains)}
        antigen = torch.stack([
            combine_chains(chain_vectors[[chain_position[c] for c in a.split("|")]], [len(c) for c in a.split("|")])
            for a in batch.antigen
        ])
        return PairEmbeddings(heavy, light, light_present, antigen)

    @staticmethod
    def _with_features(vectors: torch.Tensor, chains: list[str], spec: InputSpec) -> torch.Tensor:
        if not spec.feature_dim:
            return vectors
        features = torch.from_numpy(spec.features(chains)).to(vectors.device, vectors.dtype)
        return torch.cat([vectors, features], dim=1)

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
