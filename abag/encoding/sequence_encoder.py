"""One frozen (or partly fine-tuned) protein LM as a chain → vector function: masked, windowed mean pooling.

`SequenceEncoder` turns a list of single chains (20 standard amino acids) into one vector per chain: the
mean of its residue embeddings. Padding and special tokens never count. A chain longer than the encoder's
limit is cut into overlapping windows; each residue is averaged over the windows that cover it, so nothing
is truncated. The model runs in the encoder's `Precision` (see `SequenceEncoder.use_precision`); pooling is
always float32.

`with_pooling("regions")` returns the same encoder (shared weights) pooling each IMGT-numbered variable domain five
ways side by side: the whole-domain mean, then the mean over its frameworks, CDR1, CDR2 and CDR3
(`abag.numbering.residue_regions`; a region the domain lacks, or a chain the numbering cannot read, gives zeros
there). Its vectors are five times as wide and cached under their own key.

This module knows nothing about where a model comes from (see `abag.encoding.loader` and `abag.encoding.hub_encoders`).
It imports only `abag.encoding.batching`, `abag.errors`, `abag.policy` and `abag.numbering` (region pooling).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from abag.encoding.batching import token_budget_batches
from abag.errors import EncoderUnavailableError
from abag.numbering.chains import library_version
from abag.numbering.domains import POOLED_REGIONS, residue_regions
from abag.policy import AMINO_ACIDS, Precision, choose_precision


POOLINGS = ("mean", "regions")
"""How `SequenceEncoder` pools residue vectors (`ModelConfig.pooling`): the chain's mean, or region pooling."""


@dataclass(frozen=True)
class WindowSpec:
    """How chains longer than the encoder's limit are split: window length and step, in residues."""

    length: int
    stride: int

    def __post_init__(self):
        if self.length < 1 or not 1 <= self.stride <= self.length:
            raise ValueError(f"invalid window: length {self.length}, stride {self.stride} (need 1 <= stride <= length)")

    def windows(self, n: int) -> list[tuple[int, int]]:
        """(start, end) of each window covering residues 0..n-1; the last window is flush with the end."""
        if n <= self.length:
            return [(0, n)]
        starts = list(range(0, n - self.length, self.stride)) + [n - self.length]
        return [(s, s + self.length) for s in sorted(set(starts))]


class ResidueTokenizer:
    """Maps residues straight to token ids (one token per residue), framed by the model's special tokens.

    Built from, and checked against, the model's own Hugging Face tokenizer; it is only faster.
    """

    def __init__(self, residue_ids: dict[str, int], prefix: list[int], suffix: list[int], pad_id: int):
        self.residue_ids = residue_ids
        self.prefix = prefix
        self.suffix = suffix
        self.pad_id = pad_id
        self._lookup = np.full(128, -1, dtype=np.int64)
        for residue, token in residue_ids.items():
            self._lookup[ord(residue)] = token

    @classmethod
    def from_hf(cls, tokenizer, space_separated: bool) -> "ResidueTokenizer":
        """Derive the residue map from a transformers tokenizer and verify it reproduces its output."""
        alphabet = AMINO_ACIDS
        text = " ".join(alphabet) if space_separated else alphabet
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != len(alphabet) or tokenizer.unk_token_id in ids:
            raise EncoderUnavailableError(
                f"tokenizer {type(tokenizer).__name__} does not map each amino acid to one token"
            )
        framed = tokenizer(text)["input_ids"]
        start = framed.index(ids[0])
        prefix, suffix = framed[:start], framed[start + len(ids):]
        return cls(dict(zip(alphabet, ids)), prefix, suffix, tokenizer.pad_token_id)

    @property
    def n_special(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def encode(self, chains: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded `input_ids`, `attention_mask` and a residue mask (True on residue tokens only)."""
        width = max(len(c) for c in chains) + self.n_special
        ids = np.full((len(chains), width), self.pad_id, dtype=np.int64)
        attention = np.zeros((len(chains), width), dtype=np.int64)
        residues = np.zeros((len(chains), width), dtype=bool)
        p = len(self.prefix)
        for row, chain in enumerate(chains):
            codes = self._lookup[np.frombuffer(chain.encode("ascii"), dtype=np.uint8)]
            if (codes < 0).any():
                raise ValueError(f"chain contains a non-standard residue: {chain[:30]}…")
            n = len(chain)
            ids[row, :p] = self.prefix
            ids[row, p:p + n] = codes
            ids[row, p + n:p + n + len(self.suffix)] = self.suffix
            attention[row, :p + n + len(self.suffix)] = 1
            residues[row, p:p + n] = True
        return torch.from_numpy(ids), torch.from_numpy(attention), torch.from_numpy(residues)


class EncodedBatch(NamedTuple):
    """What one encoder batch did, as reported to `SequenceEncoder.forward`'s `progress` callback."""

    chains: float        # chains completed (a window of a chain split into k windows counts 1/k)
    rows: int            # windows in the batch
    tokens: int          # real tokens (residues + special tokens)
    padded_tokens: int   # token slots computed: rows × longest row


class SequenceEncoder(nn.Module):
    """A transformers model plus its residue tokenizer; `forward(chains)` gives one mean vector per chain.

    `precision` is the `policy.Precision` the model runs in; None (the default) means
    `choose_precision(device)` with mixed precision on, decided on whatever device the encoder sits.
    """

    def __init__(self, name: str, model: nn.Module, tokenizer: ResidueTokenizer, max_residues: int,
                 revision: str = "", window_stride: int | None = None, precision: Precision | None = None):
        super().__init__()
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.revision = revision
        self.window = WindowSpec(max_residues, window_stride or max(1, max_residues // 2))
        self.model_width = int(model.config.hidden_size)
        self.pooling = "mean"
        self._precision = precision
        self.freeze()  # encoders load frozen; AbAgModel unfreezes the last N layers when fine-tuning

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def hidden_size(self) -> int:
        """Width of one chain's vector: the model's width, times 5 with region pooling."""
        return self.model_width * (1 + len(POOLED_REGIONS) if self.pooling == "regions" else 1)

    def with_pooling(self, pooling: str) -> "SequenceEncoder":
        """This encoder (the same model weights) pooling "mean" or "regions" (see the module docstring)."""
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        # One view per pooling, shared by every view of this encoder: models built on the same encoder (a fold
        # ensemble's members) then hold the same encoder object, as with mean pooling.
        views = self.__dict__.setdefault("_pooling_views", {self.pooling: self})
        if pooling not in views:
            other = copy.copy(self)  # a shallow copy: the transformers model (and its device, precision) is shared
            other.__dict__["pooling"] = pooling
            views[pooling] = other
        return views[pooling]

    @property
    def precision(self) -> Precision:
        """The precision the model runs in now (an explicit `use_precision`, else the device's default)."""
        return self._precision if self._precision is not None else choose_precision(self.device)

    def use_precision(self, precision: Precision | None) -> "SequenceEncoder":
        """Run the model in `precision` from now on (None: back to the device's default); returns self.

        The precision is part of `cache_key`, so set it before an embedding cache is built on this encoder.
        """
        if precision is not None and not isinstance(precision, Precision):
            raise TypeError(f"precision must be an abag.policy.Precision, got {type(precision).__name__}")
        for view in self.__dict__.get("_pooling_views", {None: self}).values():  # every pooling of the same model
            view._precision = precision
        return self

    def autocast(self, device: torch.device):
        """The autocast context the model runs under on `device`: a no-op for fp32."""
        precision = self._precision if self._precision is not None else choose_precision(device)
        return precision.autocast(device)

    @property
    def cache_key(self) -> dict[str, object]:
        """Everything that changes an embedding: cache entries are only reused when all of it matches."""
        return {
            "encoder": self.name,
            "revision": self.revision,
            "pooling": "masked_mean_residues" if self.pooling == "mean" else f"imgt_regions ({library_version()})",
            "window_length": self.window.length,
            "window_stride": self.window.stride,
            "trainable": self.is_trainable,
            "precision": self.precision.name,
        }

    @property
    def is_trainable(self) -> bool:
        return any(p.requires_grad for p in self.model.parameters())

    def freeze(self, trainable_last_layers: int = 0) -> None:
        """Freeze all weights, then unfreeze the last `trainable_last_layers` transformer layers."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        if trainable_last_layers > 0:
            for layer in transformer_layers(self.model)[-trainable_last_layers:]:
                for p in layer.parameters():
                    p.requires_grad_(True)

    @property
    def attention_implementation(self) -> str:
        """The attention kernel transformers uses for this model (`sdpa` = PyTorch scaled-dot-product)."""
        return str(getattr(self.model.config, "_attn_implementation", None) or "eager")

    def token_lengths(self, chains: Sequence[str]) -> list[int]:
        """Tokens (residues plus special tokens) of every window the encoder runs for `chains`, in order."""
        return [len(text) + self.tokenizer.n_special for _, _, text, _ in self._window_pieces(chains)]

    def forward(self, chains: Sequence[str], token_budget: int = 8192,
                progress: Callable[[EncodedBatch], None] | None = None,
                batches: Callable[[list[int]], list[list[int]]] | None = None) -> torch.Tensor:
        """Masked mean embedding of each chain, shape (len(chains), hidden_size), float32.

        Windows are sorted by length and packed into batches of at most `token_budget` padded tokens
        (`batches(lengths)` overrides the plan, for benchmarks). `progress` is called after every encoder
        batch with an `EncodedBatch`. Frozen encoders run under `torch.inference_mode()`, the model under
        the autocast of `self.precision`; pooling is always float32.
        """
        device = self.device
        if len(chains) == 0:
            return torch.zeros(0, self.hidden_size, device=device)
        pools = self._pool_weights(chains)
        pieces = list(self._window_pieces(chains))
        lengths = [len(p[2]) + self.tokenizer.n_special for p in pieces]
        windows_per_chain = np.bincount([p[0] for p in pieces], minlength=len(chains))
        plan = batches(lengths) if batches is not None else token_budget_batches(lengths, token_budget)
        grad = torch.is_grad_enabled() and self.is_trainable
        context = contextlib.nullcontext() if grad else torch.inference_mode()
        owners, pooled = [], []
        with context:
            for batch in plan:
                batch_pieces = [pieces[i] for i in batch]
                pooled.append(self._encode_batch(batch_pieces, chains, pools, device))
                owners.extend(p[0] for p in batch_pieces)
                if progress is not None:
                    progress(EncodedBatch(
                        chains=float(sum(1.0 / windows_per_chain[p[0]] for p in batch_pieces)),
                        rows=len(batch), tokens=sum(lengths[i] for i in batch),
                        padded_tokens=len(batch) * max(lengths[i] for i in batch)))
            out = torch.zeros(len(chains), self.hidden_size, device=device)
            out = out.index_add(0, torch.tensor(owners, device=device), torch.cat(pooled))
        return out if grad else out.clone()

    def _pool_weights(self, chains: Sequence[str]) -> list[np.ndarray] | None:
        """With region pooling, per chain a (pools, residues) matrix whose rows average the residues of one pool:
        the whole chain, then its frameworks and each CDR (a pool without residues is a row of zeros); None for
        the plain mean."""
        if self.pooling == "mean":
            return None
        weights = []
        for chain, labels in zip(chains, residue_regions(list(chains))):
            pools = np.zeros((1 + len(POOLED_REGIONS), len(chain)))
            pools[0] = 1.0 / max(len(chain), 1)
            for region in range(len(POOLED_REGIONS)):
                members = labels == region
                if members.any():
                    pools[1 + region, members] = 1.0 / members.sum()
            weights.append(pools)
        return weights

    def _window_pieces(self, chains: Sequence[str]) -> Iterator[tuple[int, np.ndarray, str, int]]:
        """(chain index, per-residue weight, window text, window start): weights are 1/coverage so overlaps
        average."""
        for index, chain in enumerate(chains):
            if not chain:
                raise ValueError("cannot encode an empty chain")
            spans = self.window.windows(len(chain))
            if len(spans) == 1:
                yield index, np.ones(len(chain)), chain, 0
                continue
            coverage = np.zeros(len(chain))
            for s, e in spans:
                coverage[s:e] += 1
            for s, e in spans:
                yield index, 1.0 / coverage[s:e], chain[s:e], s

    def _encode_batch(self, batch_pieces: list[tuple[int, np.ndarray, str, int]], chains: Sequence[str],
                      pools: list[np.ndarray] | None, device: torch.device) -> torch.Tensor:
        """Each window's contribution to its chain's pooled vector: weighted sums per row (B, hidden), float32."""
        texts = [p[2] for p in batch_pieces]
        ids, attention, _ = self.tokenizer.encode(texts)
        # Per-token weight of each pool: 1/coverage/len(chain) on residue tokens (the mean), or 1/coverage × the
        # pool's residue weight (regions); 0 on special and padding tokens.
        n_pools = 1 if pools is None else pools[0].shape[0]
        weights = np.zeros((ids.shape[0], n_pools, ids.shape[1]), dtype=np.float32)
        start = len(self.tokenizer.prefix)
        for row, (chain_index, residue_weights, text, offset) in enumerate(batch_pieces):
            if pools is None:
                weights[row, 0, start:start + len(text)] = residue_weights / len(chains[chain_index])
            else:
                weights[row, :, start:start + len(text)] = (residue_weights
                                                            * pools[chain_index][:, offset:offset + len(text)])
        hidden = self._hidden_states(ids, attention, device)
        with torch.autocast(device.type, enabled=False):  # pooling stays float32 inside a caller's autocast
            pooled = torch.bmm(torch.from_numpy(weights).to(device), hidden.float())  # (B, pools, width)
        return pooled.reshape(len(batch_pieces), -1)

    def _hidden_states(self, ids: torch.Tensor, attention: torch.Tensor, device: torch.device) -> torch.Tensor:
        ids = ids.to(device, non_blocking=True)
        attention = attention.to(device, non_blocking=True)
        with self.autocast(device):
            return self.model(input_ids=ids, attention_mask=attention).last_hidden_state

    def _run(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states of a batch of window texts and its residue mask (kept for callers and tests)."""
        ids, attention, residues = self.tokenizer.encode(texts)
        return self._hidden_states(ids, attention, device), residues.to(device)


def autocast_context(device: torch.device, mixed_precision: bool = True):
    """The autocast context of `policy.choose_precision` for `device` (plain fp32 on CPU)."""
    return choose_precision(device, mixed_precision).autocast(device)


def transformer_layers(model: nn.Module) -> list[nn.Module]:
    """The stack of transformer blocks of a BERT/ESM/T5 encoder, in order."""
    for path in ("encoder.layer", "encoder.block", "layers"):
        obj = model
        try:
            for attr in path.split("."):
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return list(obj)
    raise ValueError(f"cannot find transformer layers in {type(model).__name__}")
