"""The dual-encoder affinity model: chain embeddings → fusion head → pKd (bounded to [4, 14]) and binder logit.

`AffinityHead` serves the fusions "interaction" (v2.7), "concat" and "antibody_only"; `AdditiveHead` the
fusion "additive" (μ + a(antibody) + w·(g(antigen) + i(antibody, antigen)), with the per-row antigen weight
w from `abag.novelty`). Heads whose fusion ignores the antigen never have it encoded (`InputSpec.uses_antigen`).
Imports torch and abag's `encoders`, `features` and `policy` modules only.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from abag.encoding.batches import PairEmbeddings, PairSequences
from abag.encoding.features import InputSpec
from abag.encoding.loader import load_encoder
from abag.encoding.sequence_encoder import SequenceEncoder
from abag.model.config import CORRECTIONS, FUSIONS, HEADS, MEMBER_LOSSES, ModelConfig


def combine_chains(chain_vectors: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Mean over all residues of a multi-chain antigen: chain means weighted by chain length."""
    weights = torch.tensor(lengths, dtype=chain_vectors.dtype, device=chain_vectors.device)
    return (chain_vectors * weights.unsqueeze(1)).sum(0) / weights.sum()


class MemberLinear(nn.Module):
    """`n_members` independent linear layers applied at once: (M, B, in) -> (M, B, out).

    Each member is initialised like `nn.Linear` (uniform in ±1/sqrt(in)); `bias` has shape (M, out), or is
    None with `bias=False`.
    """

    def __init__(self, n_members: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class _HeadBase(nn.Module):
    """What every head shares: option checks, normalised chain vectors, member copies and the bounded output.

    `antibody_dim`/`antigen_dim` are the encoder widths; with chain features (`composition_k > 0`) each
    chain vector carries `feature_dim` more columns, which skip the LayerNorm (they are already on a
    fixed scale). With `n_members > 1` every layer made by `_linear` is `n_members` independently
    initialised copies (with independent dropout masks). In eval mode the head returns the mean of their bounded
    pKd predictions and of their binder logits, (B,); in training mode with `member_loss="each"` it returns every
    member's, (M, B), so that `StableCombinedLoss` gives each member its own loss.
    """

    def __init__(self, antibody_dim: int, antigen_dim: int, config: ModelConfig):
        super().__init__()
        spec = InputSpec.from_config(config)
        f = spec.feature_dim
        self.antibody_dim, self.antigen_dim, self.feature_dim = antibody_dim, antigen_dim, f
        self.pkd_min, self.pkd_max = config.pkd_min, config.pkd_max
        self.n_members = int(config.n_members)
        if self.n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {config.n_members}")
        if config.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {config.fusion!r}; choose one of {FUSIONS}")
        if config.head not in HEADS:
            raise ValueError(f"unknown head {config.head!r}; choose one of {HEADS}")
        if config.member_loss not in MEMBER_LOSSES:
            raise ValueError(f"unknown member_loss {config.member_loss!r}; choose one of {MEMBER_LOSSES}")
        self.member_loss = config.member_loss
        self.head_kind = config.head
        self.fusion_mode = config.fusion
        self.uses_antigen = spec.uses_antigen
        self.no_light = nn.Parameter(torch.zeros(antibody_dim + f))
        self.antibody_norm = nn.LayerNorm(antibody_dim)
        if self.uses_antigen:  # no unused parameters (DistributedDataParallel rejects them)
            self.antigen_norm = nn.LayerNorm(antigen_dim)
        # dropout = 0 switches every dropout off (what `--dropout 0` promises), input dropout included.
        self.input_dropout = nn.Dropout(config.input_dropout if config.dropout > 0 else 0.0)

    def _linear(self, n_in: int, n_out: int, bias: bool = True) -> nn.Module:
        if self.n_members == 1:
            return nn.Linear(n_in, n_out, bias=bias)
        return MemberLinear(self.n_members, n_in, n_out, bias=bias)

    def _start_at(self, pkd_out: nn.Module, initial_pkd: float) -> None:
        """Start predictions at a typical pKd rather than mid-range, so early epochs are not spent drifting."""
        fraction = (initial_pkd - self.pkd_min) / (self.pkd_max - self.pkd_min)
        fraction = min(max(fraction, 0.02), 0.98)
        nn.init.constant_(pkd_out.bias, math.log(fraction / (1 - fraction)))

    def _normed(self, x: torch.Tensor, width: int, norm: nn.LayerNorm) -> torch.Tensor:
        if not self.feature_dim:
            return norm(x)
        return torch.cat([norm(x[:, :width]), x[:, width:]], dim=1)

    def _members(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (M, B, d) when the head has several members; dropout then differs per member."""
        x = x if self.n_members == 1 else x.unsqueeze(0).expand(self.n_members, *x.shape)
        return self.input_dropout(x)

    def _antibody_input(self, x: PairEmbeddings) -> torch.Tensor:
        """[heavy | light] normalised, with the learned "no light chain" vector where there is none."""
        light = torch.where(x.light_present.unsqueeze(1), x.light, self.no_light.expand_as(x.light))
        heavy = self._normed(x.heavy, self.antibody_dim, self.antibody_norm)
        return torch.cat([heavy, self._normed(light, self.antibody_dim, self.antibody_norm)], dim=1)

    def _antigen_input(self, x: PairEmbeddings) -> torch.Tensor:
        return self._normed(x.antigen, self.antigen_dim, self.antigen_norm)

    @property
    def returns_members(self) -> bool:
        """Whether forward returns per-member (M, B) outputs: training mode, several members, `member_loss="each"`."""
        return self.training and self.n_members > 1 and self.member_loss == "each"

    def _bounded(self, z: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pKd from the pre-sigmoid score `z`, member means (unless `returns_members`), and the v2.7 clamp."""
        # A scaled sigmoid keeps gradients alive near the bounds (a bare clamp has none outside them);
        # the clamp then guarantees the v2.7 contract even under reduced precision.
        pkd = self.pkd_min + (self.pkd_max - self.pkd_min) * torch.sigmoid(z.float())
        logits = logits.float()
        if self.n_members > 1 and not self.returns_members:  # (M, B) -> (B,): the ensemble mean
            pkd, logits = pkd.mean(0), logits.mean(0)
        return pkd.clamp(self.pkd_min, self.pkd_max), logits


class AffinityHead(_HeadBase):
    """Projects antibody (heavy + light or a learned "no light chain" vector) and antigen, fuses, predicts.

    Fusions "interaction" ([ab, ag, ab*ag], v2.7), "concat" ([ab, ag]) and "antibody_only" (the antigen
    is not used). `head="linear"` is one linear layer on the normalised chain vectors instead of the MLP.
    The per-row antigen weight of `AdditiveHead` does not apply here and is ignored.
    """

    def __init__(self, antibody_dim: int, antigen_dim: int, config: ModelConfig):
        super().__init__(antibody_dim, antigen_dim, config)
        if self.fusion_mode == "additive":
            raise ValueError("fusion 'additive' is built by AdditiveHead (use build_head)")
        h, p, f = config.hidden_dim, config.dropout, self.feature_dim
        if self.head_kind == "linear":
            # One linear layer on [heavy, light(, antigen)] (no interaction term: "interaction" acts as
            # "concat"). Inputs are scaled by 1/sqrt(width) so that Adam's per-weight steps move the output
            # slowly: early stopping then walks a ridge-like path instead of jumping to the interpolating fit.
            width = 2 * (antibody_dim + f) + (antigen_dim + f if self.uses_antigen else 0)
            self.input_scale = 1.0 / math.sqrt(width)
            self.pkd_out = self._linear(width, 1)
            self.class_out = self._linear(width, 1)
        else:
            self.antibody_proj = nn.Sequential(self._linear(2 * (antibody_dim + f), h), nn.GELU(), nn.Dropout(p))
            if self.uses_antigen:
                self.antigen_proj = nn.Sequential(self._linear(antigen_dim + f, h), nn.GELU(), nn.Dropout(p))
            width = {"interaction": 3 * h, "concat": 2 * h, "antibody_only": h}[self.fusion_mode]
            self.fusion = nn.Sequential(self._linear(width, h), nn.GELU(), nn.Dropout(p))
            self.pkd_out = self._linear(h, 1)
            self.class_out = self._linear(h, 1)
        self._start_at(self.pkd_out, config.initial_pkd)

    def forward(self, x: PairEmbeddings, antigen_weight: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        antibody = self._antibody_input(x)
        if self.head_kind == "linear":
            parts = [antibody] + ([self._antigen_input(x)] if self.uses_antigen else [])
            fused = self._members(torch.cat(parts, dim=1) * self.input_scale)
        elif not self.uses_antigen:
            fused = self.fusion(self.antibody_proj(self._members(antibody)))
        else:
            antibody = self.antibody_proj(self._members(antibody))
            antigen = self.antigen_proj(self._members(self._antigen_input(x)))
            parts = [antibody, antigen] + ([antibody * antigen] if self.fusion_mode == "interaction" else [])
            fused = self.fusion(torch.cat(parts, dim=-1))
        return self._bounded(self.pkd_out(fused).squeeze(-1), self.class_out(fused).squeeze(-1))


class AdditiveHead(_HeadBase):
    """pKd = bound(μ + a(antibody) + w·(g(antigen) + i(antibody, antigen))); the binder logit likewise.

    a is the antibody_only head (projection, fusion layer, `pkd_out`/`class_out`, whose biases are μ). g is
    an MLP on the projected antigen, i one on the elementwise product of the projected antibody and
    antigen; each ends in a bias-free layer with two outputs (pKd score, logit), initialised at zero, so an
    untrained head is the antibody-only head and the antigen terms grow only as far as they lower the loss.
    `w` is the per-row antigen weight in [0, 1] (`abag.novelty`; 1 when not given): w = 0 gives exactly
    μ + a, whatever the antigen. In training mode each row's w is also zeroed with probability
    `branch_dropout` (per row, not per batch, so every optimizer step trains both μ + a alone and the full
    sum; no 1/(1-p) rescaling, because at prediction w is the familiarity, not a dropout mask).
    """

    def __init__(self, antibody_dim: int, antigen_dim: int, config: ModelConfig):
        super().__init__(antibody_dim, antigen_dim, config)
        if self.head_kind != "mlp":
            raise ValueError(f"fusion 'additive' needs head 'mlp', got {config.head!r}")
        if not 0.0 <= config.branch_dropout <= 1.0:
            raise ValueError(f"branch_dropout must be in [0, 1], got {config.branch_dropout}")
        # Like every dropout, `dropout = 0` switches branch dropout off (deterministic runs stay deterministic).
        self.branch_dropout = float(config.branch_dropout) if config.dropout > 0 else 0.0
        h, p, f = config.hidden_dim, config.dropout, self.feature_dim
        self.antibody_proj = nn.Sequential(self._linear(2 * (antibody_dim + f), h), nn.GELU(), nn.Dropout(p))
        self.antigen_proj = nn.Sequential(self._linear(antigen_dim + f, h), nn.GELU(), nn.Dropout(p))
        self.fusion = nn.Sequential(self._linear(h, h), nn.GELU(), nn.Dropout(p))
        self.pkd_out = self._linear(h, 1)
        self.class_out = self._linear(h, 1)
        self.antigen_branch = self._branch(h, p)
        self.interaction_branch = self._branch(h, p)
        self._start_at(self.pkd_out, config.initial_pkd)

    def _branch(self, h: int, p: float) -> nn.Sequential:
        out = self._linear(h, 2, bias=False)
        nn.init.zeros_(out.weight)
        return nn.Sequential(self._linear(h, h), nn.GELU(), nn.Dropout(p), out)

    def branch_weight(self, antigen_weight: torch.Tensor | None, n_rows: int, device: torch.device) -> torch.Tensor:
        """(n_rows,) float32 multiplier of g + i: the antigen weight, with branch dropout in training mode."""
        if antigen_weight is None:
            weight = torch.ones(n_rows, device=device)
        else:
            weight = torch.as_tensor(antigen_weight, dtype=torch.float32, device=device)
            if weight.shape != (n_rows,):
                raise ValueError(f"antigen_weight must have one value per row ({n_rows}), got shape "
                                 f"{tuple(weight.shape)}")
            if not bool(((weight >= 0) & (weight <= 1)).all()):
                raise ValueError("antigen_weight values must lie in [0, 1] (NaN is not allowed)")
        if self.training and self.branch_dropout > 0:
            weight = weight * (torch.rand(n_rows, device=device) >= self.branch_dropout)
        return weight

    def forward(self, x: PairEmbeddings, antigen_weight: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        antibody = self.antibody_proj(self._members(self._antibody_input(x)))
        antigen = self.antigen_proj(self._members(self._antigen_input(x)))
        shift = (self.antigen_branch(antigen) + self.interaction_branch(antibody * antigen)).float()
        weight = self.branch_weight(antigen_weight, x.heavy.shape[0], shift.device)
        own = self.fusion(antibody)
        z = self.pkd_out(own).squeeze(-1).float() + weight * shift[..., 0]
        logits = self.class_out(own).squeeze(-1).float() + weight * shift[..., 1]
        return self._bounded(z, logits)


def build_head(antibody_dim: int, antigen_dim: int, config: ModelConfig) -> AffinityHead | AdditiveHead:
    """The head `config.fusion` asks for, for encoders of the given widths."""
    if config.fusion == "additive":
        return AdditiveHead(antibody_dim, antigen_dim, config)
    return AffinityHead(antibody_dim, antigen_dim, config)


class AbAgModel(nn.Module):
    """Dual encoder: antibody LM for heavy/light chains, antigen LM for the antigen, and a head (`build_head`).

    `forward` takes either `PairSequences` (encodes on the fly) or `PairEmbeddings` (from the embedding
    cache) and returns `(pkd_pred, class_logits)`; pkd_pred always lies in [pkd_min, pkd_max]. Both are (B,),
    except in training mode with several head members and `member_loss="each"`: (M, B), one row per member.
    `novelty` is the `abag.novelty.NoveltyReference` of the training antigens (set by training and by
    `load_trained_model`, saved beside the weights, not in them); `antigen_weights` turns it into the
    additive head's per-row antigen weights. `familiar_correction` (`abag.familiar_correction`, fitted after
    training when `config.familiar_correction` asks for it) is applied to the outputs by `abag.inference` and
    `abag.finalize`, not by `forward`, which is the network alone.
    """

    def __init__(self, config: ModelConfig, antibody_encoder: SequenceEncoder, antigen_encoder: SequenceEncoder):
        super().__init__()
        if config.familiar_correction not in CORRECTIONS:
            raise ValueError(f"unknown familiar_correction {config.familiar_correction!r}; choose one of {CORRECTIONS}")
        self.config = config
        self.antibody_encoder = antibody_encoder
        self.antigen_encoder = antigen_encoder
        self.head = build_head(antibody_encoder.hidden_size, antigen_encoder.hidden_size, config)
        antibody_encoder.freeze(config.finetune_layers)
        if antigen_encoder is not antibody_encoder:  # an antigen encoder the head ignores has nothing to learn
            antigen_encoder.freeze(config.finetune_layers if self.head.uses_antigen else 0)
        self.novelty = None
        self.familiar_correction = None  # abag.familiar_correction.FamiliarCorrection, fitted after training

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

    @property
    def uses_antigen(self) -> bool:
        """False for heads that ignore the antigen (it is then never encoded)."""
        return self.head.uses_antigen

    def use_precision(self, precision) -> "AbAgModel":
        """Run both encoders in `precision` (an `abag.policy.Precision`); the cache key follows."""
        self.antibody_encoder.use_precision(precision)
        if self.antigen_encoder is not self.antibody_encoder:
            self.antigen_encoder.use_precision(precision)
        return self

    @property
    def head_is_additive(self) -> bool:
        """Whether the head weighs its antigen terms by familiarity (fusion "additive")."""
        return isinstance(self.head, AdditiveHead)

    def antigen_weights(self, antigens: Sequence[str]) -> np.ndarray | None:
        """Per-row antigen weights (float32, [0, 1]) for `antigens`, from `novelty`; None when the head has no
        antigen weight (fusions other than "additive") or no training antigens are known (weight 1 then)."""
        if not isinstance(self.head, AdditiveHead) or self.novelty is None:
            return None
        return self.novelty.weights(list(antigens))

    def embed(self, batch: PairSequences) -> PairEmbeddings:
        """Encode a batch of sequences into pooled chain embeddings (the same numbers the cache stores).

        Applies the config's `InputSpec` exactly as `pair_embeddings.embed_pairs` does: variable-domain
        trimming before encoding, chain features appended after pooling, antigen skipped when unused.
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
        if spec.uses_antigen:
            antigen = self._embed_antigens(batch.antigen, spec)
        else:
            antigen = antibody.new_zeros((len(batch.heavy), 0))
        return PairEmbeddings(heavy, light, light_present, antigen, batch.antigen_weight)

    def _embed_antigens(self, antigens: list[str], spec: InputSpec) -> torch.Tensor:
        chains = list(dict.fromkeys(c for a in antigens for c in a.split("|")))
        chain_vectors = self._with_features(self.antigen_encoder(chains), chains, spec)
        chain_position = {c: i for i, c in enumerate(chains)}
        return torch.stack([
            combine_chains(chain_vectors[[chain_position[c] for c in a.split("|")]], [len(c) for c in a.split("|")])
            for a in antigens
        ])

    @staticmethod
    def _with_features(vectors: torch.Tensor, chains: list[str], spec: InputSpec) -> torch.Tensor:
        if not spec.feature_dim:
            return vectors
        features = torch.from_numpy(spec.features(chains)).to(vectors.device, vectors.dtype)
        return torch.cat([vectors, features], dim=1)

    def forward(self, batch: PairSequences | PairEmbeddings, antigen_weight: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pKd, binder logit) per row; `antigen_weight` (B,) overrides `batch.antigen_weight` (None = 1)."""
        if isinstance(batch, PairSequences):
            batch = self.embed(batch)
        return self.head(batch, batch.antigen_weight if antigen_weight is None else antigen_weight)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights a checkpoint must hold: the head, plus encoder weights only when they are fine-tuned."""
        state = self.state_dict()
        if self.encoders_frozen:
            return {k: v for k, v in state.items() if k.startswith("head.")}
        return state


def build_model(config: ModelConfig, encoders: dict[str, SequenceEncoder] | None = None) -> AbAgModel:
    """Load the named encoders (reusing one object when both sides use the same encoder) and build the model."""

    encoders = dict(encoders or {})
    for name in (config.antibody_encoder, config.antigen_encoder):
        if name not in encoders:
            encoders[name] = load_encoder(name)
    return AbAgModel(config, encoders[config.antibody_encoder], encoders[config.antigen_encoder])
