"""Probe (usage: python bench/experiments/naturalness_probe.py [threads]): does AntiBERTy 'naturalness' (mean log-prob of the observed residues, one unmasked forward pass)
of the heavy/light variable domains rank pKd across unseen antigen clusters? Frozen saaintdb folds."""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from transformers import BertForMaskedLM, BertTokenizer

from abag.data.pipeline import load_pairs
from abag.encoding.features import InputSpec
from abag.encoding.loader import antiberty_folder

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
folder = antiberty_folder()
tok = BertTokenizer.from_pretrained(str(folder), do_lower_case=False)
mlm = BertForMaskedLM.from_pretrained(str(folder / "AntiBERTy_md_smooth")).eval()
frame, _ = load_pairs("/work/shared/data/saaintdb_dev.csv")
frozen = json.loads(Path(__file__).with_name("saaintdb_folds.json").read_text())
trim = InputSpec(trim_antibody=True)
chains = sorted({trim.encoder_input(c, "heavy") for c in frame.heavy} | {trim.encoder_input(c, "light") for c in frame.light if c})
print(len(chains), "chains", flush=True)
score = {}
t = time.time()
with torch.no_grad():
    for i in range(0, len(chains), 32):
        batch = chains[i:i + 32]
        enc = tok([" ".join(c) for c in batch], return_tensors="pt", padding=True, truncation=True, max_length=512)
        logits = mlm(**enc).logits.log_softmax(-1)
        lp = logits.gather(-1, enc["input_ids"].unsqueeze(-1)).squeeze(-1)
        mask = enc["attention_mask"].clone(); mask[:, 0] = 0
        lengths = enc["attention_mask"].sum(1) - 1
        mask[torch.arange(len(batch)), lengths] = 0  # drop [SEP]
        for c, v in zip(batch, (lp * mask).sum(1) / mask.sum(1)):
            score[c] = float(v)
print(f"{time.time() - t:.0f}s", flush=True)
h = np.array([score[trim.encoder_input(c, "heavy")] for c in frame.heavy])
l = np.array([score.get(trim.encoder_input(c, "light"), np.nan) if c else np.nan for c in frame.light])
y = frame.pkd.to_numpy(float)
for name, x in [("heavy", h), ("light", l), ("mean", np.nanmean(np.c_[h, l], 1))]:
    per = [spearmanr(x[t], y[t], nan_policy="omit")[0] for t in frozen["tests"]]
    print(name, "per fold", np.round(per, 3), "mean", round(float(np.mean(per)), 3),
          "all rows", round(spearmanr(x, y, nan_policy="omit")[0], 3))
