"""Where encoders come from: the registered offline encoders and the one entry point, `load_encoder`.

Registered names:

| name | what | needs |
|---|---|---|
| `tiny` | seeded random 2-layer ESM, 32 wide: tests and CI | nothing |
| `antiberty` | AntiBERTy (8 layers, 512 wide) from the `antiberty==0.1.3` wheel | `pip install "abag[offline]"` |
| a hub id (`facebook/esm2_t33_650M_UR50D`, `Exscientia/IgT5_unpaired`, …) or a model folder | `abag.encoding.hub_encoders` | the hub or its cache |

Every encoder is a `SequenceEncoder` (`abag.encoding.sequence_encoder`): one masked mean vector per single chain.
The names other modules import from here (`SequenceEncoder`, `EncodedBatch`, `WindowSpec`, …) are
re-exported from those two modules. Imports `abag.errors`, `abag.encoding.sequence_encoder`, `abag.encoding.hub_encoders`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import torch

from abag.encoding.hub_encoders import (
    OFFLINE_HINT,
    PAIRED_MODELS,
    PairedModelWarning,
    TokenizerDependencyError,
    from_pretrained_sdpa,
    hub_offline,
    hub_reachable,
    load_hub_encoder,
    quiet_transformers,
)
from abag.encoding.sequence_encoder import (
    EncodedBatch,
    ResidueTokenizer,
    SequenceEncoder,
    WindowSpec,
    autocast_context,
    transformer_layers,
)
from abag.errors import EncoderUnavailableError, NonFiniteEmbeddingError

__all__ = [
    "ESM_VOCAB", "ESM2_MODELS", "LOCAL_ENCODERS", "OFFLINE_HINT", "PAIRED_MODELS", "EncodedBatch",
    "NonFiniteEmbeddingError", "PairedModelWarning", "ResidueTokenizer", "SequenceEncoder", "TokenizerDependencyError",
    "WindowSpec", "antiberty_folder", "autocast_context", "from_pretrained_sdpa", "hub_offline", "hub_reachable",
    "load_antiberty_encoder", "load_encoder", "load_encoders", "load_hub_encoder", "load_tiny_encoder", "quiet_transformers",
    "transformer_layers",
]

RESOURCES = Path(__file__).parent.parent / "resources"
ESM_VOCAB = RESOURCES / "esm_vocab.txt"
ESM2_MODELS = (
    "facebook/esm2_t6_8M_UR50D",
    "facebook/esm2_t12_35M_UR50D",
    "facebook/esm2_t30_150M_UR50D",
    "facebook/esm2_t33_650M_UR50D",
    "facebook/esm2_t36_3B_UR50D",
)


def load_tiny_encoder(seed: int = 0, hidden_size: int = 32, layers: int = 2, max_residues: int = 126) -> SequenceEncoder:
    """A seeded, randomly initialised 2-layer ESM for tests and CI; identical on every machine."""
    # lazy: transformers takes seconds to import and only encoders need it
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
    # lazy: transformers takes seconds to import and only encoders need it
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


LOCAL_ENCODERS: dict[str, Callable[[], SequenceEncoder]] = {
    "tiny": load_tiny_encoder,
    "antiberty": load_antiberty_encoder,
}


def load_encoder(name: str, revision: str | None = None) -> SequenceEncoder:
    """Load an encoder by registered name (`tiny`, `antiberty`), Hugging Face hub id (`org/model`) or model folder."""
    if name in LOCAL_ENCODERS:
        return LOCAL_ENCODERS[name]()
    if "/" in name or Path(name).expanduser().is_dir():
        return load_hub_encoder(name, revision)
    raise EncoderUnavailableError(
        f"unknown encoder '{name}'. Use one of {sorted(LOCAL_ENCODERS)}, a Hugging Face id such as "
        f"{ESM2_MODELS[3]} or Exscientia/IgT5_unpaired, or a folder holding a Hugging Face model."
    )


def load_encoders(names, given: dict | None = None) -> dict:
    """`given` (name → encoder) completed with every other encoder in `names`, each loaded once."""
    encoders = dict(given or {})
    for name in names:
        if name not in encoders:
            encoders[name] = load_encoder(name)
    return encoders
