"""The hub path without the hub: tiny random models laid out as their hub repositories are, loaded as users load them.

One family per tokenizer users meet on the hub: ESM-2 (`EsmTokenizer`, vocab.txt), a T5 encoder with a real
SentencePiece `T5Tokenizer` (spiece.model, as IgT5 and ProtT5 ship) and BERT with a space-separated
`BertTokenizer` (vocab.txt, as IgBert and ProtBERT ship). Each repository holds config.json, the weights
(model.safetensors or pytorch_model.bin), the tokenizer's own files, tokenizer_config.json and
special_tokens_map.json: never a re-saved tokenizer.json. The expected token ids are built from the
vocabulary files themselves and the expected embeddings from the in-memory model that was saved, so neither
comes from the code under test. One test puts the T5 repository into a Hugging Face cache
(`models--org--name/snapshots/<commit>/`, blobs and symlinks) and runs `abag train` and `abag predict` on
the hub id with HF_HUB_OFFLINE=1, in a fresh process.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import random_sequence, synthetic_frame, write_csv

import abag
from abag.cli import main
from abag.encoding.hub_encoders import (
    PairedModelWarning,
    TokenizerDependencyError,
    missing_tokenizer_packages,
    warn_if_paired,
)
from abag.encoding.loader import ESM_VOCAB, load_encoder
from abag.errors import EncoderUnavailableError

PACKAGE_PARENT = str(Path(abag.__file__).resolve().parents[1])  # subprocesses import the abag under test
ESM_VOCAB_LINES = ESM_VOCAB.read_text().split()
EXTRA_RESIDUES = "XBUZO"  # in ProtT5/ProtBERT vocabularies; abag's input never contains them
SMALL = dict(hidden=32, layers=2, heads=4)


@dataclass
class Repo:
    """A tiny model repository on disk and what a correct loader must reproduce from it."""

    folder: Path
    model: torch.nn.Module                        # the base encoder whose weights were saved
    token_ids: Callable[[str], list[int]]         # ids for one chain, from the vocabulary file itself


def write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2))


def esm2_repo(folder: Path) -> Repo:
    """facebook/esm2_*: EsmForMaskedLM weights (model.safetensors), vocab.txt, no tokenizer.json."""
    from transformers import EsmConfig, EsmForMaskedLM

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(ESM_VOCAB_LINES) + "\n")
    write_json(folder / "tokenizer_config.json", {"tokenizer_class": "EsmTokenizer", "model_max_length": 1026})
    write_json(folder / "special_tokens_map.json", {"cls_token": "<cls>", "eos_token": "<eos>", "mask_token": "<mask>",
                                                    "pad_token": "<pad>", "unk_token": "<unk>"})
    vocab = {token: i for i, token in enumerate(ESM_VOCAB_LINES)}
    config = EsmConfig(vocab_size=len(vocab), hidden_size=SMALL["hidden"], num_hidden_layers=SMALL["layers"],
                       num_attention_heads=SMALL["heads"], intermediate_size=64, max_position_embeddings=1026,
                       position_embedding_type="rotary", pad_token_id=vocab["<pad>"], mask_token_id=vocab["<mask>"],
                       token_dropout=True, emb_layer_norm_before=False)
    torch.manual_seed(1)
    model = EsmForMaskedLM(config).eval()
    model.save_pretrained(folder)
    return Repo(folder, model.esm, lambda chain: [vocab["<cls>"], *(vocab[r] for r in chain), vocab["<eos>"]])


def sentencepiece_model() -> bytes:
    """A real SentencePiece Unigram model laid out as ProtT5's: <pad>, </s>, <unk>, then a "▁A" piece per residue."""
    from sentencepiece import sentencepiece_model_pb2 as spm

    model = spm.ModelProto()
    piece = spm.ModelProto.SentencePiece
    for text, kind in (("<pad>", piece.CONTROL), ("</s>", piece.CONTROL), ("<unk>", piece.UNKNOWN)):
        model.pieces.add(piece=text, score=0.0, type=kind)
    for rank, residue in enumerate("LAGVESIKRDTPNQFYMHCW" + EXTRA_RESIDUES):
        model.pieces.add(piece="\u2581" + residue, score=-float(rank + 1), type=piece.NORMAL)
    trainer = model.trainer_spec
    trainer.model_type = spm.TrainerSpec.UNIGRAM
    trainer.vocab_size, trainer.pad_id, trainer.eos_id, trainer.unk_id, trainer.bos_id = len(model.pieces), 0, 1, 2, -1
    normalizer = model.normalizer_spec
    normalizer.name, normalizer.add_dummy_prefix = "identity", True
    normalizer.remove_extra_whitespaces, normalizer.escape_whitespaces = True, True
    return model.SerializeToString()


def t5_repo(folder: Path) -> Repo:
    """Exscientia/IgT5_unpaired, Rostlab/prot_t5_*: T5EncoderModel weights, spiece.model, T5Tokenizer config."""
    import sentencepiece
    from transformers import T5Config, T5EncoderModel

    folder.mkdir(parents=True)
    proto = sentencepiece_model()
    (folder / "spiece.model").write_bytes(proto)
    pieces = sentencepiece.SentencePieceProcessor(model_proto=proto)
    write_json(folder / "tokenizer_config.json", {"tokenizer_class": "T5Tokenizer", "do_lower_case": False,
                                                  "extra_ids": 100, "model_max_length": 1000000000,
                                                  "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
    write_json(folder / "special_tokens_map.json", {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
    config = T5Config(vocab_size=128, d_model=SMALL["hidden"], d_kv=8, d_ff=64, num_layers=SMALL["layers"],
                      num_heads=SMALL["heads"], pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False)
    torch.manual_seed(2)
    model = T5EncoderModel(config).eval()
    model.save_pretrained(folder)
    eos = pieces.piece_to_id("</s>")
    return Repo(folder, model, lambda chain: [*(pieces.piece_to_id("\u2581" + r) for r in chain), eos])


def bert_repo(folder: Path) -> Repo:
    """Rostlab/prot_bert, Exscientia/IgBert_unpaired: BertForMaskedLM weights as pytorch_model.bin, vocab.txt."""
    from transformers import BertConfig, BertForMaskedLM

    folder.mkdir(parents=True)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"LAGVESIKRDTPNQFYMHCW", *EXTRA_RESIDUES]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    write_json(folder / "tokenizer_config.json", {"tokenizer_class": "BertTokenizer", "do_lower_case": False,
                                                  "model_max_length": 512})
    write_json(folder / "special_tokens_map.json", {"cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]",
                                                    "sep_token": "[SEP]", "unk_token": "[UNK]"})
    vocab = {token: i for i, token in enumerate(tokens)}
    config = BertConfig(vocab_size=len(tokens), hidden_size=SMALL["hidden"], num_hidden_layers=SMALL["layers"],
                        num_attention_heads=SMALL["heads"], intermediate_size=64, max_position_embeddings=512,
                        pad_token_id=0)
    torch.manual_seed(3)
    model = BertForMaskedLM(config).eval()
    config.architectures = ["BertForMaskedLM"]
    config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # the pre-safetensors layout ProtBERT ships
    return Repo(folder, model.bert, lambda chain: [vocab["[CLS]"], *(vocab[r] for r in chain), vocab["[SEP]"]])


FAMILIES = {"esm2": esm2_repo, "t5": t5_repo, "bert": bert_repo}


def reference_embedding(repo: Repo, chain: str) -> torch.Tensor:
    """Mean of the saved model's last hidden states over the chain's residue tokens (special tokens excluded)."""
    ids = repo.token_ids(chain)
    with torch.no_grad():
        hidden = repo.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids))).last_hidden_state[0]
    start = 1 if len(ids) == len(chain) + 2 else 0
    return hidden[start:start + len(chain)].mean(0)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_hub_layout_folder_encodes_trains_and_predicts(family, tmp_path, monkeypatch):
    monkeypatch.setenv("ABAG_CACHE_DIR", str(tmp_path / "cache"))
    repo = FAMILIES[family](tmp_path / f"tiny-{family}")
    assert not (repo.folder / "tokenizer.json").exists()
    encoder = load_encoder(str(repo.folder))  # the code path of a hub id: AutoConfig/AutoTokenizer/AutoModel
    assert encoder.hidden_size == SMALL["hidden"] and encoder.precision.name == "fp32"

    rng = np.random.default_rng(4)
    chains = [random_sequence(rng, int(n)) for n in rng.integers(3, 40, 6)]
    ids, attention, residues = encoder.tokenizer.encode(chains)
    for row, chain in enumerate(chains):
        expected = repo.token_ids(chain)
        assert ids[row, :len(expected)].tolist() == expected
        assert attention[row].sum() == len(expected) and residues[row].sum() == len(chain)
    pooled = encoder(chains)
    for row, chain in enumerate(chains):  # the saved weights were loaded, and only residues were pooled
        torch.testing.assert_close(pooled[row], reference_embedding(repo, chain), atol=2e-5, rtol=1e-4)

    data = write_csv(synthetic_frame(n=48, n_antigens=6), tmp_path / "pairs.csv")
    run = tmp_path / "run"
    assert main(["train", "--data", data, "--out", str(run), "--encoder", str(repo.folder), "--epochs", "2",
                 "--split", "random", "--quiet"]) == 0
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2] and np.isfinite(history["train_loss"]).all()
    new = synthetic_frame(n=12, seed=9).drop(columns=["pkd", "censored"])
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(tmp_path / "new.csv"),
                 "--out", str(tmp_path / "pred.csv"), "--quiet"]) == 0
    predicted = pd.read_csv(tmp_path / "pred.csv", keep_default_na=False)
    assert len(predicted) == 12 and predicted["pkd_pred"].between(4, 14).all()
    assert predicted["pkd_pred"].nunique() > 1


def install_in_hub_cache(repo: Path, hub_cache: Path, repo_id: str, commit: str) -> Path:
    """Lay `repo` out as huggingface_hub caches a download: blobs, a snapshot of symlinks, refs/main."""
    root = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (root / "blobs").mkdir()
    for path in sorted(repo.iterdir()):
        blob = hashlib.sha256(path.read_bytes()).hexdigest()
        (root / "blobs" / blob).write_bytes(path.read_bytes())
        (snapshot / path.name).symlink_to(Path("..", "..", "blobs", blob))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    return snapshot


HUB_RUN = textwrap.dedent("""
    import json, sys, warnings
    from abag.cli import main
    from abag.encoding.loader import load_encoder
    data, run, new, pred = sys.argv[1:5]
    assert main(["train", "--data", data, "--out", run, "--encoder", "Exscientia/IgT5_unpaired", "--epochs", "2",
                 "--split", "random", "--quiet"]) == 0
    assert main(["predict", "--checkpoint", run + "/checkpoints/best.pt", "--data", new, "--out", pred, "--quiet"]) == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paired = load_encoder("Exscientia/IgT5")
    print(json.dumps({"key": load_encoder("Exscientia/IgT5_unpaired").cache_key,
                      "paired_warnings": [str(w.message) for w in caught]}))
""")


@pytest.mark.slow
def test_the_t5_family_from_an_offline_hub_cache_by_hub_id(tmp_path):
    repo = t5_repo(tmp_path / "repo")
    hub_cache = tmp_path / "hf" / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    install_in_hub_cache(repo.folder, hub_cache, "Exscientia/IgT5_unpaired", commit)
    install_in_hub_cache(repo.folder, hub_cache, "Exscientia/IgT5", "f" * 40)
    data = write_csv(synthetic_frame(n=48, n_antigens=6), tmp_path / "pairs.csv")
    synthetic_frame(n=10, seed=9).drop(columns=["pkd", "censored"]).to_csv(tmp_path / "new.csv", index=False)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "ABAG_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": PACKAGE_PARENT}
    env.pop("HF_HUB_CACHE", None)
    env.pop("TRANSFORMERS_CACHE", None)
    result = subprocess.run([sys.executable, "-c", HUB_RUN, data, str(tmp_path / "run"), str(tmp_path / "new.csv"),
                             str(tmp_path / "pred.csv")], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["key"]["encoder"] == "Exscientia/IgT5_unpaired" and report["key"]["revision"] == commit
    assert report["key"]["precision"] == "fp32"
    assert any("Exscientia/IgT5_unpaired" in w and "paired" in w for w in report["paired_warnings"])
    predicted = pd.read_csv(tmp_path / "pred.csv", keep_default_na=False)
    assert len(predicted) == 10 and predicted["pkd_pred"].between(4, 14).all()


# ----------------------------------------------------------------------------- missing tokenizer packages

@pytest.fixture(scope="module")
def t5_folder(tmp_path_factory) -> Path:
    return t5_repo(tmp_path_factory.mktemp("t5") / "tiny-t5").folder


def block_modules(monkeypatch, *names: str) -> None:
    """Make `import name` fail as if the package were not installed (sys.modules[name] = None)."""
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_sentencepiece_is_named_not_blamed_on_the_hub(t5_folder, monkeypatch):
    load_encoder(str(t5_folder))  # loads with the package present
    block_modules(monkeypatch, "sentencepiece")
    with pytest.raises(TokenizerDependencyError) as error:
        load_encoder(str(t5_folder))
    message = str(error.value)
    assert error.value.packages == ["sentencepiece"] and "pip install sentencepiece (" in message
    assert "hub" not in message and "unreachable" not in message
    assert isinstance(error.value, EncoderUnavailableError) and error.value.exit_code == 2


def test_the_cli_prints_the_package_to_install(t5_folder, tmp_path, monkeypatch, capsys):
    block_modules(monkeypatch, "sentencepiece")
    data = write_csv(synthetic_frame(n=20), tmp_path / "pairs.csv")
    code = main(["train", "--data", data, "--out", str(tmp_path / "run"), "--encoder", str(t5_folder), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install sentencepiece" in err and "Traceback" not in err


@pytest.mark.slow
def test_missing_protobuf_in_a_fresh_process_is_named(t5_folder):
    """protobuf is imported by transformers early, so it is blocked before anything is imported."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["google.protobuf"] = None
        from abag.encoding.loader import load_encoder
        from abag.encoding.hub_encoders import TokenizerDependencyError
        try:
            load_encoder({str(t5_folder)!r})
        except TokenizerDependencyError as exc:
            print(exc)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": PACKAGE_PARENT})
    assert "pip install protobuf" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "pip install sentencepiece" not in result.stdout and "unreachable" not in result.stdout


@pytest.mark.parametrize("blocked, expected", [
    (("sentencepiece",), ["sentencepiece"]),
    (("google.protobuf",), ["protobuf"]),
    (("sentencepiece", "google.protobuf"), ["sentencepiece", "protobuf"]),
    (("tiktoken",), ["tiktoken"]),  # a real tiktoken vocabulary, with the SentencePiece stack installed
])
def test_the_tiktoken_fallback_error_is_traced_to_the_missing_package(blocked, expected, monkeypatch):
    """transformers 5 hides a missing sentencepiece/protobuf behind "`tiktoken` is required"."""
    pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    block_modules(monkeypatch, *blocked)
    try:
        raise ModuleNotFoundError("No module named 'tiktoken'", name="tiktoken")
    except ModuleNotFoundError as inner:
        try:
            raise ValueError("`tiktoken` is required to read a `tiktoken` file. Install it with `pip install tiktoken`")
        except ValueError as outer:
            assert outer.__context__ is inner
            found = missing_tokenizer_packages(outer)
    assert found == expected


def test_other_failures_are_not_mistaken_for_a_missing_package(monkeypatch):
    block_modules(monkeypatch, "sentencepiece")
    assert missing_tokenizer_packages(OSError("We couldn't connect to 'https://huggingface.co'")) == []


def test_a_broken_folder_names_the_folder_not_the_hub(tmp_path):
    folder = tmp_path / "half-a-model"
    folder.mkdir()
    write_json(folder / "config.json", {"model_type": "bert"})
    with pytest.raises(EncoderUnavailableError) as error:
        load_encoder(str(folder))
    assert "folder" in str(error.value) and "unreachable" not in str(error.value)


# ----------------------------------------------------------------------------- paired models

@pytest.mark.parametrize("name, unpaired", [("Exscientia/IgT5", "Exscientia/IgT5_unpaired"),
                                            ("exscientia/IgBert", "Exscientia/IgBert_unpaired")])
def test_paired_models_warn_and_name_their_single_chain_checkpoint(name, unpaired):
    with pytest.warns(PairedModelWarning, match=unpaired):
        warn_if_paired(name)


@pytest.mark.parametrize("name", ["Exscientia/IgT5_unpaired", "Exscientia/IgBert_unpaired",
                                  "facebook/esm2_t33_650M_UR50D", "Rostlab/prot_t5_xl_uniref50"])
def test_single_chain_models_do_not_warn(name, recwarn):
    warn_if_paired(name)
    assert not [w for w in recwarn if issubclass(w.category, PairedModelWarning)]
