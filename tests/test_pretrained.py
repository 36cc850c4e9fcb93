"""The model that ships in the wheel: it loads offline, `abag predict` uses it without --checkpoint, and its card
(docs/model-card.md, `abag info`) says what bench/train_pretrained.py measured."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from built_wheel import built_wheel

import abag
from abag.pretrained import PRETRAINED_NAME, model_card, pretrained_path

REPO = Path(__file__).resolve().parents[1]
VH = ("EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMD"
      "YWGQGTLVTVSS")
VL = "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK"
HER2 = ("TQVCTGTDMKLRLPASPETHLDMLRHLYQGCQVVQGNLELTYLPTNASLSFLQDIQEVQGYVLIAHNQVRQVPLQRLRIVRGTQLFEDNYALAVLDNGDPLNNTTPVTG"
        "ASPGGLRELQLRSLTEILKGGVLIQRNPQLCYQDTILWKDIFHKNNQLALTLIDTNRSRACHPCSPMCKGSRCWGESSEDCQSLTRTVCAGGCARCKGPLPTDCCHE")


def test_the_card_in_docs_is_the_card_in_the_package():
    sys.path.insert(0, str(REPO / "bench"))
    from train_pretrained import card_markdown

    assert (REPO / "docs" / "model-card.md").read_text(encoding="utf-8") == card_markdown(model_card())


def test_the_card_reports_accuracy_by_applicability_class():
    card = model_card()
    groups = [a["group"] for a in card["accuracy"]]
    assert groups[0].startswith("SAAINT-DB out of fold") and any("SKEMPI" in g for g in groups)
    assert all(a["rows"] > 0 and -1 <= a["spearman"] <= 1 for a in card["accuracy"])
    assert card["size_bytes"] == pretrained_path().stat().st_size < 40e6
    # Zero-shot ranking of one antibody's variants is measured (the card says what the model is not for).
    assert set(card["phillips_spearman_by_antibody"]) == {"CR6261", "CR9114"}
    assert -1 <= card["phillips_spearman_within_antibody"] <= 1


def test_abag_info_prints_the_card(capsys):
    from abag.cli import main

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert PRETRAINED_NAME in out and "Intended use" in out and "SAAINT-DB out of fold" in out
    assert "within one antibody's variants (Phillips 2021, zero-shot)" in out


@pytest.mark.skipif(importlib.util.find_spec("antiberty") is None, reason="the offline encoder (abag[offline])")
def test_load_pretrained_predicts_with_intervals_and_applicability():
    model, _ = abag.load_pretrained(device="cpu")
    frame = pd.DataFrame({"heavy": [VH], "light": [VL], "antigen": [HER2]})
    predicted = abag.predict_frame(model, frame)
    row = predicted.iloc[0]
    assert 4 <= row["pkd_low"] <= row["pkd_pred"] <= row["pkd_high"] <= 14
    assert row["applicability"] in ("in-domain", "novel-antigen", "novel-antibody", "novel-both")


@pytest.mark.skipif(importlib.util.find_spec("antiberty") is None, reason="the offline encoder (abag[offline])")
def test_the_built_wheel_predicts_without_a_checkpoint(tmp_path):
    wheel, site = built_wheel()
    names = zipfile.ZipFile(wheel).namelist()
    assert f"abag/resources/pretrained/{PRETRAINED_NAME}.pt" in names
    assert "abag/resources/example_pairs.csv" in names
    data, out = tmp_path / "ten.csv", tmp_path / "predictions.csv"
    pd.DataFrame({"heavy": [VH] * 3, "light": [VL, VL, ""], "antigen": [HER2] * 3}).to_csv(data, index=False)
    work = tmp_path / "elsewhere"  # not the checkout: abag comes from the wheel alone
    work.mkdir()
    env = {"PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "ABAG_CACHE_DIR": str(tmp_path / "cache"),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "abag", "predict", "--data", str(data), "--out", str(out),
                           "--quiet"], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"using the pretrained model {PRETRAINED_NAME}" in done.stderr
    table = pd.read_csv(out)
    assert len(table) == 3 and table["pkd_pred"].between(4, 14).all()
    assert {"pkd_low", "pkd_high", "applicability"} <= set(table.columns)
    probe = subprocess.run([sys.executable, "-c", "import abag, json; print(json.dumps(abag.__file__))"],
                           cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(probe.stdout).startswith(str(site))
