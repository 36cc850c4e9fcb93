"""Attempt: residue-level cross-attention between antibody and antigen, under the frozen saaintdb folds.

Per-residue AntiBERTy states (frozen; antibody chains trimmed to the variable domain, antigen chains longer
than 510 residues encoded in consecutive 510-residue pieces) are computed once and held in memory. The head:
LayerNorm + input dropout 0.3 + a linear map 512 -> 64 per side; the antibody residues (heavy + light) attend
to the antigen residues (4-head attention); the masked mean over antibody residues of [own, attended] goes
through a 2-layer MLP to a pKd bounded to [4, 14] and a binder logit, trained with StableCombinedLoss. The
recipe follows the v2.7 one in spirit (AdamW 1e-3, weight decay 1e-5, batch 16 x 8 accumulation, clipping 1.0,
ReduceLROnPlateau on validation Spearman, early stopping after 15 epochs, at most 100 epochs), on the same
training / validation / test rows as cross_validate. `--no-antigen` replaces the attended antigen vector by
zeros (the same head blind to the antigen), to isolate what the cross-attention adds.

Usage: THREADS=2 python bench/experiments/cv_cross_attention.py NAME [--no-antigen] [--repeats 3]
"""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch import nn

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
from attempt_args import record_attempt  # noqa: E402
from transformers import BertModel, BertTokenizer  # noqa: E402

from abag.data.folds import fold_split  # noqa: E402
from abag.data.pipeline import load_pairs  # noqa: E402
from abag.encoding.features import trim_antibody_chains  # noqa: E402
from abag.encoding.loader import antiberty_folder  # noqa: E402
from abag.model.losses import StableCombinedLoss  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("name")
parser.add_argument("--no-antigen", action="store_true")
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--states", default="/tmp/abag_exp/residue_states.pt")
args = parser.parse_args()

frame, _ = load_pairs("/work/shared/data/saaintdb_dev.csv")
frozen = json.loads(Path(__file__).with_name("saaintdb_folds.json").read_text())
groups, tests = np.array(frozen["groups"]), [np.array(t) for t in frozen["tests"]]
heavy, light = trim_antibody_chains(frame.heavy, frame.light)
antigen_chains = [a.split("|") for a in frame.antigen]
y = frame.pkd.to_numpy(np.float32)

# ------------------------------------------------------------------ per-residue states, encoded once
states_path = Path(args.states)
if states_path.exists():
    states = torch.load(states_path)
else:
    folder = antiberty_folder()
    tokenizer = BertTokenizer.from_pretrained(str(folder), do_lower_case=False)
    encoder = BertModel.from_pretrained(str(folder / "AntiBERTy_md_smooth"), add_pooling_layer=False).eval()
    pieces = {}
    for chain in set(heavy) | {c for c in light if c} | {c for cs in antigen_chains for c in cs}:
        for start in range(0, len(chain), 510):
            pieces[chain[start:start + 510]] = None
    order = sorted(pieces, key=len)
    started = time.time()
    with torch.no_grad():
        i = 0
        while i < len(order):
            batch = [order[i]]
            while i + len(batch) < len(order) and (len(batch) + 1) * len(order[i + len(batch)]) <= 8192:
                batch.append(order[i + len(batch)])
            encoded = tokenizer([" ".join(p) for p in batch], return_tensors="pt", padding=True)
            hidden = encoder(**encoded).last_hidden_state
            for j, piece in enumerate(batch):
                pieces[piece] = hidden[j, 1:len(piece) + 1].to(torch.float16).clone()
            i += len(batch)
    states = {}
    for chain in set(heavy) | {c for c in light if c} | {c for cs in antigen_chains for c in cs}:
        states[chain] = torch.cat([pieces[chain[s:s + 510]] for s in range(0, len(chain), 510)])
    states_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(states, states_path)
    print(f"encoded {len(order)} pieces in {time.time() - started:.0f}s", flush=True)

antibody_states = [torch.cat([states[h]] + ([states[l]] if l else [])) for h, l in zip(heavy, light)]
antigen_states = [torch.cat([states[c] for c in cs]) for cs in antigen_chains]


def pad(items):
    lengths = torch.tensor([len(t) for t in items])
    out = torch.zeros(len(items), int(lengths.max()), items[0].shape[1])
    for k, t in enumerate(items):
        out[k, :len(t)] = t.float()
    mask = torch.arange(out.shape[1])[None, :] < lengths[:, None]
    return out, mask


class CrossAttentionHead(nn.Module):
    def __init__(self, width=64, use_antigen=True):
        super().__init__()
        self.use_antigen = use_antigen
        self.ab_in = nn.Sequential(nn.LayerNorm(512), nn.Dropout(0.3), nn.Linear(512, width))
        self.ag_in = nn.Sequential(nn.LayerNorm(512), nn.Dropout(0.3), nn.Linear(512, width))
        self.attend = nn.MultiheadAttention(width, 4, dropout=0.1, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Dropout(0.1), nn.Linear(width, 2))

    def forward(self, ab, ab_mask, ag, ag_mask):
        q = self.ab_in(ab)
        if self.use_antigen:
            kv = self.ag_in(ag)
            attended, _ = self.attend(q, kv, kv, key_padding_mask=~ag_mask, need_weights=False)
        else:
            attended = torch.zeros_like(q)
        weights = ab_mask.unsqueeze(-1).float()
        pooled = (torch.cat([q, attended], -1) * weights).sum(1) / weights.sum(1)
        out = self.mlp(pooled)
        return 4.0 + 10.0 * torch.sigmoid(out[:, 0]), out[:, 1]


def predict(model, rows):
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(rows), 64):
            r = rows[s:s + 64]
            ab, abm = pad([antibody_states[i] for i in r])
            ag, agm = pad([antigen_states[i] for i in r])
            out.append(model(ab, abm, ag, agm)[0])
    return torch.cat(out).numpy()


def fit(train_rows, val_rows, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = CrossAttentionHead(use_antigen=not args.no_antigen)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.6, patience=10,
                                                           min_lr=1e-6)
    loss_fn = StableCombinedLoss()
    best, best_state, since = -np.inf, None, 0
    for epoch in range(100):
        model.train()
        order = rng.permutation(train_rows)
        # Within each group of 8 batches (one optimizer step) sort by antigen length: less padding, same steps.
        batches = []
        for g in range(0, len(order), 128):
            group = sorted(order[g:g + 128], key=lambda i: len(antigen_states[i]))
            batches += [np.array(group[s:s + 16]) for s in range(0, len(group), 16)]
        for b, rows in enumerate(batches):
            ab, abm = pad([antibody_states[i] for i in rows])
            ag, agm = pad([antigen_states[i] for i in rows])
            pkd, logit = model(ab, abm, ag, agm)
            loss = loss_fn(pkd, torch.from_numpy(y[rows]), logit) / 8
            loss.backward()
            if (b + 1) % 8 == 0 or b == len(batches) - 1:
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad()
        score = stats.spearmanr(y[val_rows], predict(model, val_rows)).statistic
        score = -1.0 if np.isnan(score) else score
        scheduler.step(score)
        if score > best:
            best, since = score, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            since += 1
            if since >= 15:
                break
    model.load_state_dict(best_state)
    return model, epoch + 1


means = []
started = time.time()
for r in range(args.repeats):
    per_fold = []
    for i, test in enumerate(tests):
        split = fold_split(groups, test, seed=i)
        model, epochs = fit(split.indices("train"), split.indices("val"), seed=100 * r)
        per_fold.append(float(stats.spearmanr(y[test], predict(model, test)).statistic))
        print(f"  fold {i + 1}: {per_fold[-1]:.3f} after {epochs} epochs ({time.time() - started:.0f}s)", flush=True)
    means.append(float(np.mean(per_fold)))
    print(f"{args.name} repeat {r}: per fold {np.round(per_fold, 3).tolist()} mean {means[-1]:.3f} "
          f"({time.time() - started:.0f}s)", flush=True)
line = {"name": args.name, "model": {"cross_attention": True, "use_antigen": not args.no_antigen},
        "train": {}, "repeats": args.repeats, "mean_spearman": float(np.mean(means)), "repeat_means": means,
        "seconds": time.time() - started}
record_attempt(line)
