"""Protein language-model encoders: one obvious loader per encoder, and masked, windowed mean pooling.

Every encoder turns a list of single chains (20 standard amino acids) into one vector per chain: the mean of
its residue embeddings. Padding and special tokens never count. A chain longer than the encoder's limit is
cut into overlapping windows; each residue is averaged over the windows that cover it, so nothing is
truncated.

Registered names:

| name | what | needs |
|---|---|---|
| `tiny` | seeded random 2-layer ESM, 32 wide: tests and CI | nothing |
| `antiberty` | AntiBERTy (8 layers, 512 wide) from the `antiberty==0.1.3` wheel | `pip install "abag[offline]"` |
| any hub id (`facebook/esm2_t33_650M_UR50D`, `Exscientia/IgT5`, …) | Hugging Face `transformers` | the hub (Colab) |
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .batching import token_budget_batches
from .errors import EncoderUnavailableError
from .policy import AMINO_ACIDS, choose_precision

RESOURCES = Path(__file__).parent / "resources"
ESM_VOCAB = RESOURCES / "esm_vocab.txt"
ESM2_MODELS = (
    "facebook/esm2_t6_8M_UR50D",
    "facebook/esm2_t12_35M_UR50D",
    "facebook/esm2_t30_150M_UR50D",
    "facebook/esm2_t33_650M_UR50D",
    "facebook/esm2_t36_3B_UR50D",
)
OFFLINE_HINT = (
    "Offline, use --encoder antiberty (weights ship in the PyPI wheel: pip install 'abag[offline]') "
    "or --encoder tiny (random weights, for tests)."
)


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


class SequenceEncoder(nn.Module):
    """A transformers model plus its residue tokenizer; `forward(chains)` gives one mean vector per chain."""

    def __init__(self, name: str, model: nn.Module, tokenizer: ResidueTokenizer, max_residues: int,
                 revision: str = "", window_stride: int | None = None):
        super().__init__()
        self.name = name
        self.model = model
        self.tokenizer = tokenizer
        self.revision = revision
        self.window = WindowSpec(max_residues, window_stride or max(1, max_residues // 2))
        self.hidden_size = int(model.config.hidden_size)
        self.freeze()  # encoders load frozen; AbAgModel unfreezes the last N layers when fine-tuning

    @property
    def cache_key(self) -> dict[str, object]:
        """Everything that changes an embedding: cache entries are only reused when all of it matches."""
        return {
            "encoder": self.name,
            "revision": self.revision,
            "pooling": "masked_mean_residues",
            "window_length": self.window.length,
            "window_stride": self.window.stride,
            "trainable": self.is_trainable,
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
        return [len(text) + self.tokenizer.n_special for _, _, text in self._window_pieces(chains)]

    def forward(self, chains: Sequence[str], token_budget: int = 8192,
                progress: Callable[["EncodedBatch"], None] | None = None,
                batches: Callable[[list[int]], list[list[int]]] | None = None) -> torch.Tensor:
        """Masked mean embedding of each chain, shape (len(chains), hidden_size), float32.

        Windows are sorted by length and packed into batches of at most `token_budget` padded tokens
        (`batches(lengths)` overrides the plan, for benchmarks). `progress` is called after every encoder
        batch with an `EncodedBatch`. Frozen encoders run under `torch.inference_mode()`; on CUDA the model
        runs under bf16 (else fp16) autocast; pooling is always float32.
        """
        device = next(self.model.parameters()).device
        if len(chains) == 0:
            return torch.zeros(0, self.hidden_size, device=device)
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
                pooled.append(self._encode_batch(batch_pieces, chains, device))
                owners.extend(p[0] for p in batch_pieces)
                if progress is not None:
                    progress(EncodedBatch(
                        chains=float(sum(1.0 / windows_per_chain[p[0]] for p in batch_pieces)),
                        rows=len(batch), tokens=sum(lengths[i] for i in batch),
                        padded_tokens=len(batch) * max(lengths[i] for i in batch)))
            out = torch.zeros(len(chains), self.hidden_size, device=device)
            out = out.index_add(0, torch.tensor(owners, device=device), torch.cat(pooled))
        return out if grad else out.clone()

    def _window_pieces(self, chains: Sequence[str]) -> Iterator[tuple[int, np.ndarray, str]]:
        """(chain index, per-residue weight, window text): weights are 1/coverage so overlaps average."""
        for index, chain in enumerate(chains):
            if not chain:
                raise ValueError("cannot encode an empty chain")
            spans = self.window.windows(len(chain))
            if len(spans) == 1:
                yield index, np.ones(len(chain)), chain
                continue
            coverage = np.zeros(len(chain))
            for s, e in spans:
                coverage[s:e] += 1
            for s, e in spans:
                yield index, 1.0 / coverage[s:e], chain[s:e]

    def _encode_batch(self, batch_pieces: list[tuple[int, np.ndarray, str]], chains: Sequence[str],
                      device: torch.device) -> torch.Tensor:
        """Each window's contribution to its chain's mean: one weighted sum per row (B, hidden), float32."""
        texts = [p[2] for p in batch_pieces]
        ids, attention, _ = self.tokenizer.encode(texts)
        # Per-token weight: 1/coverage/len(chain) on residue tokens, 0 on special and padding tokens.
        weights = np.zeros(ids.shape, dtype=np.float32)
        start = len(self.tokenizer.prefix)
        for row, (chain_index, residue_weights, text) in enumerate(batch_pieces):
            weights[row, start:start + len(text)] = residue_weights / len(chains[chain_index])
        hidden = self._hidden_states(ids, attention, device)
        return torch.bmm(torch.from_numpy(weights).to(device).unsqueeze(1), hidden.float()).squeeze(1)

    def _hidden_states(self, ids: torch.Tensor, attention: torch.Tensor, device: torch.device) -> torch.Tensor:
        ids = ids.to(device, non_blocking=True)
        attention = attention.to(device, non_blocking=True)
        with autocast_context(device):
            return self.model(input_ids=ids, attention_mask=attention).last_hidden_state

    def _run(self, texts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states of a batch of window texts and its residue mask (kept for callers and tests)."""
        ids, attention, residues = self.tokenizer.encode(texts)
        return self._hidden_states(ids, attention, device), residues.to(device)


class EncodedBatch(NamedTuple):
    """What one encoder batch did, as reported to `SequenceEncoder.forward`'s `progress` callback."""

    chains: float        # chains completed (a window of a chain split into k windows counts 1/k)
    rows: int            # windows in the batch
    tokens: int          # real tokens (residues + special tokens)
    padded_tokens: int   # token slots computed: rows × longest row


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


def load_tiny_encoder(seed: int = 0, hidden_size: int = 32, layers: int = 2, max_residues: int = 126) -> SequenceEncoder:
    """A seeded, randomly initialised 2-layer ESM for tests and CI; identical on every machine."""
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    tokenizer = EsmTokenizer(vocab_file=str(ESM_VOCAB))
    config = EsmConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
        num_attention_heads=4, intermediate_size=hidden_size * 2, max_position_embeddings=max_residues + 2,
        position_embedding_type="rotary", pad_token_id=tokenizer.pad_token_id, mask_token_id=tokenizer.mask_token_id,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, token_dropout=False, attn_implementation="sdpa",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = EsmModel(config, add_pooling_layer=False)
    model.eval()
    return SequenceEncoder("tiny", model, ResidueTokenizer.from_hf(tokenizer, False), max_residues,
                           revision=f"seed{seed}-h{hidden_size}-l{layers}")


def antiberty_folder() -> Path:
    """Folder of the AntiBERTy weights inside the installed `antiberty` wheel (its code is never imported)."""
    spec = importlib.util.find_spec("antiberty")
    if spec is None or spec.origin is None:
        raise EncoderUnavailableError(
            "encoder 'antiberty' needs the AntiBERTy weights from PyPI: pip install 'abag[offline]' "
            "(or pip install antiberty==0.1.3)."
        )
    return Path(spec.origin).parent / "trained_models"


def load_antiberty_encoder() -> SequenceEncoder:
    """AntiBERTy (8 layers, 512 wide, 558M antibody sequences) from the antiberty==0.1.3 wheel, offline."""
    from transformers import BertModel, BertTokenizer

    folder = antiberty_folder()
    weights = folder / "AntiBERTy_md_smooth"
    if not (weights / "config.json").is_file():
        raise EncoderUnavailableError(f"AntiBERTy weights not found in {weights}; reinstall antiberty==0.1.3.")
    with quiet_transformers():
        tokenizer = BertTokenizer.from_pretrained(str(folder), do_lower_case=False)
        model = from_pretrained_sdpa(BertModel, str(weights), add_pooling_layer=False)
    model.eval()
    max_residues = int(model.config.max_position_embeddings) - 2
    return SequenceEncoder("antiberty", model, ResidueTokenizer.from_hf(tokenizer, True), max_residues,
                           revision="antiberty-0.1.3")


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off (`HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE`), read now.

    huggingface_hub reads these variables once, at import; checking them at call time and passing
    `local_files_only=True` makes an offline load fail in seconds instead of retrying the network.
    """
    return any(os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the hub's host answers on port 443 within `timeout` (an offline machine fails in ms).

    Without this check huggingface_hub retries an unreachable host for over a minute before failing.
    """
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def from_pretrained_sdpa(model_class, *args, **kwargs):
    """`model_class.from_pretrained` with PyTorch scaled-dot-product attention where the architecture has it."""
    try:
        return model_class.from_pretrained(*args, attn_implementation="sdpa", **kwargs)
    except (ValueError, ImportError, TypeError) as exc:
        if "sdpa" not in str(exc).lower() and "attn_implementation" not in str(exc):
            raise
        return model_class.from_pretrained(*args, **kwargs)


def load_hub_encoder(name: str, revision: str | None = None) -> SequenceEncoder:
    """Any Hugging Face protein LM (ESM-2, IgT5, ProtBERT, …); fails clearly when the hub is unreachable."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel

    offline = hub_offline() or not hub_reachable()
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(name, revision=revision, local_files_only=offline)
            tokenizer = AutoTokenizer.from_pretrained(name, revision=revision, local_files_only=offline)
            model_class = T5EncoderModel if config.model_type in ("t5", "mt5") else AutoModel
            model = from_pretrained_sdpa(model_class, name, revision=revision, local_files_only=offline)
    except Exception as exc:  # transformers raises OSError, HTTP and offline errors of many types
        where = ("the hub is unreachable or HF_HUB_OFFLINE is set, and the model is not in the local "
                 "Hugging Face cache" if offline else "Check the name and your connection")
        raise EncoderUnavailableError(
            f"encoder '{name}' could not be loaded from the Hugging Face hub "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}). "
            f"{where}. {OFFLINE_HINT}"
        ) from None
    model.eval()
    space_separated = config.model_type in ("t5", "mt5", "bert")
    limit = getattr(config, "max_position_embeddings", None) or 1024
    if config.model_type == "esm":
        limit = min(limit, 1026)
    max_residues = int(limit) - 2
    commit = getattr(config, "_commit_hash", None) or revision or "main"
    return SequenceEncoder(name, model, ResidueTokenizer.from_hf(tokenizer, space_separated), max_residues,
                           revision=str(commit))


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports (unused AntiBERTy heads are expected)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


LOCAL_ENCODERS: dict[str, Callable[[], SequenceEncoder]] = {
    "tiny": load_tiny_encoder,
    "antiberty": load_antiberty_encoder,
}


def load_encoder(name: str, revision: str | None = None) -> SequenceEncoder:
    """Load an encoder by registered name (`tiny`, `antiberty`) or Hugging Face hub id (`org/model`)."""
    if name in LOCAL_ENCODERS:
        return LOCAL_ENCODERS[name]()
    if "/" in name:
        return load_hub_encoder(name, revision)
    raise EncoderUnavailableError(
        f"unknown encoder '{name}'. Use one of {sorted(LOCAL_ENCODERS)} or a Hugging Face id such as "
        f"{ESM2_MODELS[3]} or Exscientia/IgT5."
    )
