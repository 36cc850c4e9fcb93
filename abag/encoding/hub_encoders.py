"""Loading Hugging Face protein LMs (hub ids, hub-cache snapshots, local folders) as `SequenceEncoder`s.

One loader, `load_hub_encoder`, serves every family users load from the hub: ESM-2 (`EsmTokenizer`,
vocab.txt), T5 encoders with a SentencePiece tokenizer (IgT5, ProtT5: spiece.model) and BERT models with a
space-separated `BertTokenizer` (IgBert, ProtBERT: vocab.txt). Weights always load in float32; the encoder's
`Precision` decides the autocast dtype at run time.

A failed load says why in one line: a tokenizer package that is not installed (sentencepiece, protobuf,
tiktoken) is named with the pip command, and only a real network/cache problem gets the "hub unreachable"
message. Known paired antibody models (one input holding heavy and light) warn, because abag encodes every
chain on its own: their unpaired checkpoints are the ones made for that.

Imports `abag.errors` and `abag.encoding.sequence_encoder` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os
import socket
import warnings
from pathlib import Path
from urllib.parse import urlparse

import torch

from abag.encoding.sequence_encoder import ResidueTokenizer, SequenceEncoder
from abag.errors import EncoderUnavailableError

OFFLINE_HINT = (
    "Offline, use --encoder antiberty (weights ship in the PyPI wheel: pip install 'abag[offline]') "
    "or --encoder tiny (random weights, for tests)."
)

PAIRED_MODELS: dict[str, str] = {
    "exscientia/igt5": "Exscientia/IgT5_unpaired",
    "exscientia/igbert": "Exscientia/IgBert_unpaired",
}
"""Hub ids (lower case) of paired heavy+light models → the single-chain checkpoint to use with abag."""

TOKENIZER_PACKAGES: tuple[tuple[str, str], ...] = (
    ("sentencepiece", "sentencepiece"),
    ("protobuf", "google.protobuf"),
    ("tiktoken", "tiktoken"),
)
"""(pip name, import name) of the packages transformers needs to read non-JSON tokenizer files."""

SPACE_SEPARATED_FAMILIES = ("t5", "mt5", "bert")  # tokenizers that read "E V Q L …", one residue per word


class PairedModelWarning(UserWarning):
    """A paired heavy+light model is being fed single chains."""


class TokenizerDependencyError(EncoderUnavailableError):
    """The model's tokenizer needs a Python package that is not installed (not a hub or network problem)."""

    def __init__(self, message: str, packages: list[str]):
        super().__init__(message)
        self.packages = packages  # pip names, in the order to install


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

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def quiet_transformers():
    """Silence transformers' load reports (unused AntiBERTy heads are expected)."""
    # lazy: transformers takes seconds to import and only encoders need it
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def from_pretrained_sdpa(model_class, *args, **kwargs):
    """`model_class.from_pretrained` in float32, with PyTorch scaled-dot-product attention where it exists."""
    kwargs = {"dtype": torch.float32, **kwargs}  # transformers 5 would load the dtype the checkpoint stores
    try:
        return model_class.from_pretrained(*args, attn_implementation="sdpa", **kwargs)
    except (ValueError, ImportError, TypeError) as exc:
        if "sdpa" not in str(exc).lower() and "attn_implementation" not in str(exc):
            raise
        return model_class.from_pretrained(*args, **kwargs)


def warn_if_paired(name: str) -> None:
    """Warn (`PairedModelWarning`) when `name` is a known paired heavy+light model."""
    unpaired = PAIRED_MODELS.get(name.strip().lower())
    if unpaired is not None:
        warnings.warn(
            f"{name} is a paired model: it was trained on heavy and light chain in ONE input "
            f"(\"E V Q … S S </s> D I Q … I K\"), but abag encodes every chain on its own. "
            f"Use --antibody-encoder {unpaired}, the single-chain checkpoint.", PairedModelWarning, stacklevel=2)


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _exception_text(exc: BaseException) -> str:
    """Type, message and missing-module name of `exc` and of every exception it was raised from."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__name__} {exc} {getattr(exc, 'name', '') or ''}")
        exc = exc.__cause__ or exc.__context__
    return " ".join(parts).lower()


def missing_tokenizer_packages(exc: BaseException) -> list[str]:
    """pip names of the tokenizer packages a failed load needed and this Python cannot import ([] if none).

    transformers 5 reads a SentencePiece model (spiece.model) with sentencepiece + protobuf and, when either
    is missing, falls back to tiktoken and reports only that: so sentencepiece/protobuf are named first.
    """
    text = _exception_text(exc)
    mentioned = [pip for pip, module in TOKENIZER_PACKAGES if pip in text or module in text]
    if not mentioned:
        return []
    missing = [pip for pip, module in TOKENIZER_PACKAGES if not _importable(module)]
    sentencepiece_stack = [pip for pip in missing if pip in ("sentencepiece", "protobuf")]
    return sentencepiece_stack or [pip for pip in missing if pip in mentioned]


def load_failure(name: str, exc: BaseException, local: bool, offline: bool) -> EncoderUnavailableError:
    """The one-line error for a failed load: missing tokenizer package, local folder, or hub/cache."""
    detail = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}"
    missing = missing_tokenizer_packages(exc)
    if missing:
        packages = " ".join(missing)
        return TokenizerDependencyError(
            f"encoder '{name}': its tokenizer needs the Python package{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}, not installed in this environment. Install with: pip install {packages} "
            f"(abag lists sentencepiece and protobuf as dependencies; an install with --no-deps misses them). "
            f"[{detail}]", missing)
    if local:
        return EncoderUnavailableError(
            f"encoder '{name}': the folder could not be loaded as a Hugging Face model ({detail}). It needs "
            f"config.json, the weights (model.safetensors or pytorch_model.bin) and the tokenizer's files.")
    where = ("the hub is unreachable or HF_HUB_OFFLINE is set, and the model is not in the local "
             "Hugging Face cache" if offline else "Check the name and your connection")
    return EncoderUnavailableError(
        f"encoder '{name}' could not be loaded from the Hugging Face hub ({detail}). {where}. {OFFLINE_HINT}")


def folder_revision(folder: Path) -> str:
    """A revision for a local model folder: a digest of its files' names, sizes and modification times."""
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return "local-" + digest.hexdigest()[:16]


def _snapshot_revision(config, name: str, revision: str | None, offline: bool) -> str:
    """The commit the files came from (the hub-cache snapshot folder), else the requested revision."""
    commit = getattr(config, "_commit_hash", None)
    if commit:
        return str(commit)
    try:
        # lazy: transformers takes seconds to import and only encoders need it
        from transformers.utils import cached_file

        resolved = Path(cached_file(name, "config.json", revision=revision, local_files_only=offline))
        parts = resolved.parts
        if "snapshots" in parts[:-1]:
            return parts[parts.index("snapshots") + 1]
    except Exception:  # the revision is a label for the cache key; the model itself is already loaded
        pass
    return revision or "main"


def load_hub_encoder(name: str, revision: str | None = None) -> SequenceEncoder:
    """Any Hugging Face protein LM (ESM-2, IgT5, IgBert, ProtT5, ProtBERT, …) by hub id or local folder.

    Fails with one clear line: a missing tokenizer package, a broken folder, or an unreachable hub.
    """
    # lazy: transformers takes seconds to import and only encoders need it
    from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel

    folder = Path(name).expanduser()
    local = folder.is_dir()
    source = str(folder) if local else name
    offline = local or hub_offline() or not hub_reachable()
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(source, revision=revision, local_files_only=offline)
            tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, local_files_only=offline)
            model_class = T5EncoderModel if config.model_type in ("t5", "mt5") else AutoModel
            model = from_pretrained_sdpa(model_class, source, revision=revision, local_files_only=offline)
    except Exception as exc:  # transformers raises OSError, HTTP, offline and import errors of many types
        raise load_failure(name, exc, local, offline) from None
    model.eval()
    warn_if_paired(name)
    limit = getattr(config, "max_position_embeddings", None) or 1024
    if config.model_type == "esm":
        limit = min(limit, 1026)
    tokens = ResidueTokenizer.from_hf(tokenizer, config.model_type in SPACE_SEPARATED_FAMILIES)
    commit = folder_revision(folder) if local else _snapshot_revision(config, name, revision, offline)
    return SequenceEncoder(name, model, tokens, int(limit) - 2, revision=commit)
