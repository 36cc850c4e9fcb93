"""The dual-encoder affinity model: chain embeddings → fusion head → pKd (bounded to [4, 14]) and binder logit.

`AffinityHead` serves the fusions "antibody_only" (the default) and "interaction" (v2.7). A head whose fusion
ignores the antigen never has it encoded (`InputSpec.uses_antigen`). With a wide part (`ModelConfig.wide`,
`abag.model.wide`) the head's pKd output is an unbounded residual deep(x), and the head returns
clamp(wide(x) + deep(x)), wide(x) arriving per row as the batch's `offset` (for `wide="grouped_blend"`,
clamp(soft_bound(wide(x) + deep(x)))); without one (`wide="none"`) it is the v2.7 bounded output. Imports torch
and abag's `encoding` and `model` (config, wide) modules only.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from abag.encoding.batches import PairEmbeddings, PairSequences
from abag.encoding.features import InputSpec
from abag.encoding.loader import load_encoder
from abag.encoding.sequence_encoder import SequenceEncoder
from abag.model.config import CORRECTIONS, FUSIONS, WIDES, ModelConfig
from abag.model.wide import WidePart, WideSlot, soft_bound


def combine_chains(chain_vectors: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    """Mean over all residues of a multi-chain antigen: chain means weighted by chain length."""
    weights = torch.tensor(lengths, dtype=chain_vectors.dtype, device=chain_vectors.device)
    return (chain_vectors * weights.unsqueeze(1)).sum(0) / weights.sum()


class _InwardClamp(torch.autograd.Function):
    """clamp(x, low, high) whose gradient still flows where a step would move x back toward the range.

    A bare clamp has no gradient outside its bounds, so a wide part that puts a row beyond them would leave the
    deep part nothing to learn from on that row; a straight-through clamp would let it push further out."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, low: float, high: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.bounds = (low, high)
        return x.clamp(low, high)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        low, high = ctx.bounds
        outward = ((x < low) & (grad > 0)) | ((x > high) & (grad < 0))  # descent moves x by −grad
        return grad.masked_fill(outward, 0.0), None, None


def inward_clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """`x` clamped to [low, high]; its gradient outside the range only pulls back toward it (`_InwardClamp`)."""
    return _InwardClamp.apply(x, low, high)


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

    Fusions "antibody_only" (the antigen is not used) and "interaction" ([ab, ag, ab*ag], v2.7).
    `antibody_dim`/`antigen_dim` are the encoder widths. With `n_members > 1` every layer is `n_members`
    independently initialised copies (with independent dropout masks), trained through one loss on their mean:
    the head returns the mean of their bounded pKd predictions and of their binder logits, (B,).
    With a wide part (`config.wide`, kept in `self.wide`) the pKd layer starts at zero and its output is the
    residual deep(x) (the copies' mean), and the pKd is clamp(x.offset + deep(x)).
    """

    def __init__(self, antibody_dim: int, antigen_dim: int, config: ModelConfig):
        super().__init__()
        self.antibody_dim, self.antigen_dim = antibody_dim, antigen_dim
        self.pkd_min, self.pkd_max = config.pkd_min, config.pkd_max
        self.n_members = int(config.n_members)
        if self.n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {config.n_members}")
        if config.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {config.fusion!r}; choose one of {FUSIONS}")
        if config.wide not in WIDES:
            raise ValueError(f"unknown wide part {config.wide!r}; choose one of {WIDES}")
        self.fusion_mode = config.fusion
        self.uses_antigen = InputSpec.from_config(config).uses_antigen
        self.no_light = nn.Parameter(torch.zeros(antibody_dim))
        self.antibody_norm = nn.LayerNorm(antibody_dim)
        if self.uses_antigen:  # no unused parameters (DistributedDataParallel rejects them)
            self.antigen_norm = nn.LayerNorm(antigen_dim)
        # dropout = 0 switches every dropout off (what `--dropout 0` promises), input dropout included.
        self.input_dropout = nn.Dropout(config.input_dropout if config.dropout > 0 else 0.0)
        h, p = config.hidden_dim, config.dropout
        self.antibody_proj = nn.Sequential(self._linear(2 * antibody_dim, h), nn.GELU(), nn.Dropout(p))
        if self.uses_antigen:
            self.antigen_proj = nn.Sequential(self._linear(antigen_dim, h), nn.GELU(), nn.Dropout(p))
        width = {"interaction": 3 * h, "antibody_only": h}[self.fusion_mode]
        self.fusion = nn.Sequential(self._linear(width, h), nn.GELU(), nn.Dropout(p))
        self.pkd_out = self._linear(h, 1)
        self.class_out = self._linear(h, 1)
        self.wide = None if config.wide == "none" else WideSlot(config.wide)
        if self.wide is None:
            self._start_at(config.initial_pkd)
        else:  # deep(x) = 0 before training: an untrained model predicts the wide part exactly
            nn.init.zeros_(self.pkd_out.weight)
            nn.init.zeros_(self.pkd_out.bias)
            # Set once after training (`abag.model.apply.centre_deep`): the deep part's mean over the exact training
            # rows is pinned to 0, since the level is the wide part's (0 while training).
            self.register_buffer("deep_shift", torch.zeros((), dtype=torch.float32))

    def _linear(self, n_in: int, n_out: int) -> nn.Module:
        if self.n_members == 1:
            return nn.Linear(n_in, n_out)
        return MemberLinear(self.n_members, n_in, n_out)

    def _start_at(self, initial_pkd: float) -> None:
        """Start predictions at a typical pKd rather than mid-range, so early epochs are not spent drifting."""
        fraction = (initial_pkd - self.pkd_min) / (self.pkd_max - self.pkd_min)
        fraction = min(max(fraction, 0.02), 0.98)
        nn.init.constant_(self.pkd_out.bias, math.log(fraction / (1 - fraction)))

    def _members(self, x: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (M, B, d) when the head has several members; dropout then differs per member."""
        x = x if self.n_members == 1 else x.unsqueeze(0).expand(self.n_members, *x.shape)
        return self.input_dropout(x)

    def _antibody_input(self, x: PairEmbeddings) -> torch.Tensor:
        """[heavy | light] normalised, with the learned "no light chain" vector where there is none."""
        light = torch.where(x.light_present.unsqueeze(1), x.light, self.no_light.expand_as(x.light))
        return torch.cat([self.antibody_norm(x.heavy), self.antibody_norm(light)], dim=1)

    def _bounded(self, z: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pKd from the pre-sigmoid score `z`, member means, and the v2.7 clamp."""
        # A scaled sigmoid keeps gradients alive near the bounds (a bare clamp has none outside them);
        # the clamp then guarantees the v2.7 contract even under reduced precision.
        pkd = self.pkd_min + (self.pkd_max - self.pkd_min) * torch.sigmoid(z.float())
        logits = logits.float()
        if self.n_members > 1:  # (M, B) -> (B,): the ensemble mean
            pkd, logits = pkd.mean(0), logits.mean(0)
        return pkd.clamp(self.pkd_min, self.pkd_max), logits

    def forward(self, x: PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor]:
        _, pkd, logits = self.parts(x)
        return pkd, logits

    def parts(self, x: PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(deep, pKd, binder logit) per row, each (B,): pKd = clamp(x.offset + deep) with a wide part (the sum
        soft-bounded first when the part has a bound, `soft_bound`); without
        one, deep is the bounded network output and equals the pKd."""
        antibody = self.antibody_proj(self._members(self._antibody_input(x)))
        if not self.uses_antigen:
            fused = self.fusion(antibody)
        else:
            antigen = self.antigen_proj(self._members(self.antigen_norm(x.antigen)))
            fused = self.fusion(torch.cat([antibody, antigen, antibody * antigen], dim=-1))
        z, logits = self.pkd_out(fused).squeeze(-1), self.class_out(fused).squeeze(-1)
        if self.wide is None:
            pkd, logits = self._bounded(z, logits)
            return pkd, pkd, logits
        if x.offset is None or x.offset.dim() != 1:
            raise ValueError("a head with a wide part needs each row's wide prediction (the batch's `offset`, "
                             "shape (B,))")
        deep, logits = z.float(), logits.float()
        if self.n_members > 1:  # (M, B) -> (B,): the copies' mean residual
            deep, logits = deep.mean(0), logits.mean(0)
        deep = deep + self.deep_shift
        pkd = x.offset.to(deep.dtype) + deep
        bound = self.wide.sum_bound()  # "grouped_blend": past the training pKd range, by less than a margin
        if bound is not None:  # Python floats from the cached part: no device sync per batch
            pkd = soft_bound(pkd, bound.low, bound.high, bound.margin)
        return deep, inward_clamp(pkd, self.pkd_min, self.pkd_max), logits


class AbAgModel(nn.Module):
    """Dual encoder: antibody LM for heavy/light chains, antigen LM for the antigen, and an `AffinityHead`.

    `antigen_encoder` is None when the head ignores the antigen (`fusion="antibody_only"`, the default).

    `forward` takes either `PairSequences` (encodes on the fly) or `PairEmbeddings` (from the embedding
    cache) and returns `(pkd_pred, class_logits)`, both (B,); pkd_pred always lies in [pkd_min, pkd_max].
    With a wide part, pkd_pred = clamp(wide(x) + deep(x)): `wide_offsets(frame)` gives wide(x) per row, which the
    batch carries as `offset` (computed here from the sequences when a `PairSequences` batch has none).
    `familiar_correction` (`abag.posthoc.familiar_correction`, fitted after training when `config.familiar_correction`
    asks for it) is applied to the outputs by `abag.inference` and `abag.training.finalize`, not by `forward`, which is
    the model without it.
    """

    def __init__(self, config: ModelConfig, antibody_encoder: SequenceEncoder,
                 antigen_encoder: SequenceEncoder | None = None):
        super().__init__()
        if config.familiar_correction not in CORRECTIONS:
            raise ValueError(f"unknown familiar_correction {config.familiar_correction!r}; choose one of {CORRECTIONS}")
        self.config = config
        uses_antigen = InputSpec.from_config(config).uses_antigen
        if uses_antigen and antigen_encoder is None:
            raise ValueError(f"fusion {config.fusion!r} reads the antigen: it needs an antigen encoder")
        # Region pooling reads the antibody chains only: the antibody side gets its own view of a shared encoder.
        antibody_encoder = antibody_encoder.with_pooling(config.pooling)
        self.antibody_encoder = antibody_encoder
        # A head that ignores the antigen keeps no antigen encoder (None): nothing loads, moves or stores one.
        self.antigen_encoder = antigen_encoder if uses_antigen else None
        self.head = AffinityHead(antibody_encoder.hidden_size, self.antigen_dim, config)
        antibody_encoder.freeze(config.finetune_layers)
        if self.antigen_encoder is not None and self.antigen_encoder is not antibody_encoder:
            self.antigen_encoder.freeze(config.finetune_layers)
        self.familiar_correction = None  # abag.posthoc.familiar_correction.FamiliarCorrection, fitted after training

    @property
    def encoders(self) -> list[SequenceEncoder]:
        """The distinct encoder objects the model holds (one when both sides share it or the antigen is unused)."""
        found = [self.antibody_encoder]
        if self.antigen_encoder is not None and self.antigen_encoder is not self.antibody_encoder:
            found.append(self.antigen_encoder)
        return found

    @property
    def antigen_dim(self) -> int:
        """The antigen encoder's width; 0 when the model has none (its head ignores the antigen)."""
        return 0 if self.antigen_encoder is None else self.antigen_encoder.hidden_size

    def train(self, mode: bool = True) -> "AbAgModel":
        """Frozen encoders stay in eval mode (no dropout), so cached and on-the-fly embeddings agree."""
        super().train(mode)
        for encoder in self.encoders:
            if not encoder.is_trainable:
                encoder.eval()
        return self

    @property
    def encoders_frozen(self) -> bool:
        return not any(encoder.is_trainable for encoder in self.encoders)

    @property
    def uses_antigen(self) -> bool:
        """False for heads that ignore the antigen (it is then never encoded)."""
        return self.head.uses_antigen

    @property
    def has_wide(self) -> bool:
        """Whether the model adds a wide part (`config.wide` other than "none")."""
        return self.config.wide != "none"

    def wide_part(self) -> WidePart | None:
        """The fitted wide part (None without one); ValueError if it was never fitted."""
        return self.head.wide.part() if self.has_wide else None

    def set_wide(self, part: WidePart) -> None:
        """Store a fitted wide part in the head (its buffers: it travels with the weights)."""
        self.head.wide.store(part)

    def wide_offsets(self, frame: pd.DataFrame) -> np.ndarray | None:
        """wide(x) per row of `frame` as float32 (the dtype the head adds), or None without a wide part."""
        part = self.wide_part()
        return None if part is None else part.predict(frame).astype(np.float32)

    def _with_offset(self, batch: PairSequences) -> PairSequences:
        """A sequence batch with its wide offsets (computed from its sequences when it has none)."""
        if not self.has_wide or batch.offset is not None:
            return batch
        frame = pd.DataFrame({"heavy": batch.heavy, "light": batch.light, "antigen": batch.antigen})
        offset = torch.from_numpy(self.wide_offsets(frame))
        return PairSequences(batch.heavy, batch.light, batch.antigen, offset)

    def use_precision(self, precision) -> "AbAgModel":
        """Run the model's encoders in `precision` (an `abag.policy.Precision`); the cache key follows."""
        for encoder in self.encoders:
            encoder.use_precision(precision)
        return self

    def embed(self, batch: PairSequences) -> PairEmbeddings:
        """Encode a batch of sequences into pooled chain embeddings (the same numbers the cache stores).

        Applies the config's `InputSpec` exactly as `pair_embeddings.embed_pairs` does: variable-domain
        trimming before encoding, antigen skipped when unused.
        """
        spec = InputSpec.from_config(self.config)
        heavy_chains = spec.encoder_inputs(list(batch.heavy), "heavy")
        light_chains = spec.encoder_inputs([c if c else "" for c in batch.light], "light")
        antibody_chains = list(dict.fromkeys(heavy_chains + [c for c in light_chains if c]))
        antibody = self.antibody_encoder(antibody_chains)
        position = {c: i for i, c in enumerate(antibody_chains)}
        heavy = antibody[[position[c] for c in heavy_chains]]
        light_present = torch.tensor([bool(c) for c in light_chains], device=antibody.device)
        light = antibody[[position[c] if c else 0 for c in light_chains]]
        if spec.uses_antigen:
            antigen = self._embed_antigens(batch.antigen)
        else:
            antigen = antibody.new_zeros((len(batch.heavy), 0))
        offset = None if batch.offset is None else batch.offset.to(antibody.device)
        return PairEmbeddings(heavy, light, light_present, antigen, offset)

    def _embed_antigens(self, antigens: list[str]) -> torch.Tensor:
        chains = list(dict.fromkeys(c for a in antigens for c in a.split("|")))
        chain_vectors = self.antigen_encoder(chains)
        chain_position = {c: i for i, c in enumerate(chains)}
        return torch.stack([
            combine_chains(chain_vectors[[chain_position[c] for c in a.split("|")]], [len(c) for c in a.split("|")])
            for a in antigens
        ])

    def forward(self, batch: PairSequences | PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor]:
        """(pKd, binder logit) per row."""
        if isinstance(batch, PairSequences):
            batch = self.embed(self._with_offset(batch))
        return self.head(batch)

    def parts(self, batch: PairSequences | PairEmbeddings) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(deep, pKd, binder logit) per row (`AffinityHead.parts`)."""
        if isinstance(batch, PairSequences):
            batch = self.embed(self._with_offset(batch))
        return self.head.parts(batch)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights a checkpoint must hold: the head, plus encoder weights only when they are fine-tuned."""
        state = self.state_dict()
        if self.encoders_frozen:
            return {k: v for k, v in state.items() if k.startswith("head.")}
        return state


def encoder_names(config: ModelConfig) -> list[str]:
    """The encoders a model built from `config` loads: the antibody encoder, and the antigen encoder only when
    the head reads the antigen (not for `fusion="antibody_only"`); each name once."""
    names = [config.antibody_encoder]
    if InputSpec.from_config(config).uses_antigen:
        names.append(config.antigen_encoder)
    return list(dict.fromkeys(names))


def build_model(config: ModelConfig, encoders: dict[str, SequenceEncoder] | None = None) -> AbAgModel:
    """Load the encoders the model uses (`encoder_names`; one object when both sides use the same encoder)
    and build the model. An antigen encoder the head ignores is never loaded."""

    encoders = dict(encoders or {})
    for name in encoder_names(config):
        if name not in encoders:
            encoders[name] = load_encoder(name)
    antigen = encoders[config.antigen_encoder] if InputSpec.from_config(config).uses_antigen else None
    return AbAgModel(config, encoders[config.antibody_encoder], antigen)
