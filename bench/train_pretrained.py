"""Train the model that ships in the wheel (abag/resources/pretrained/) and write its model card.

    python bench/train_pretrained.py [--data-dir ../shared/data] [--work /tmp/abag-pretrained] [--cache-dir DIR]
    python bench/train_pretrained.py --card-only      # the shipped model as it is: re-measure SKEMPI and Phillips

Training data: SAAINT-DB (MIT licence), every row, `abag train`'s defaults with the offline AntiBERTy encoder and
5 fold members over antigen clusters, but mean pooling (`POOLING`). Accuracy on the card: the out-of-fold
predictions of that run (every row scored by a member that never saw its antigen cluster: novel antigens), and the
shipped model on two sets it was not trained on: SKEMPI 2.0 antibody complexes (rows by applicability class:
mostly antigens it has seen) and the Phillips 2021 CR6261/CR9114 variant landscapes (ranking within one antibody's
variants, zero-shot). The head weights are stored in float16 to keep the wheel small; the script checks that this
moves no prediction by more than 0.01 pKd. docs/model-card.md is rewritten from the card.

`--card-only` trains nothing: it measures the shipped model on SKEMPI and Phillips again and keeps the card's
training-run entries (the out-of-fold row, members, size, float16 shift), which only a training run can measure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

import abag
from abag.checkpoint import load_checkpoint, save_checkpoint
from abag.encoding import load_encoder
from abag.pretrained import PRETRAINED_NAME
from abag.version import __version__

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "abag" / "resources" / "pretrained"
CARD_DOC = ROOT / "docs" / "model-card.md"
SEED = 0
MAX_SHIFT = 0.01  # pKd: the float16 copy may move no prediction by more than this
# Mean pooling, not the default's regions: region-pooled chain vectors make the head's first layer five times as
# wide (the weights about 70 MB instead of 17), and on held-out SAAINT-DB antigen clusters, the shipped model's
# use, the default with mean pooling measured as well (bench/RESULTS.md, "The default switched").
POOLING = "mean"


def _accuracy(group: str, frame: pd.DataFrame) -> dict:
    """Spearman, RMSE and 80% interval coverage of `pkd_pred` against exact `pkd` rows of `frame`."""
    exact = frame[~frame["censored"].astype(bool)] if "censored" in frame else frame
    rho = spearmanr(exact["pkd"], exact["pkd_pred"]).statistic if len(exact) > 2 else float("nan")
    rmse = float(np.sqrt(np.mean((exact["pkd"] - exact["pkd_pred"]) ** 2))) if len(exact) else float("nan")
    inside = (exact["pkd"] >= exact["pkd_low"]) & (exact["pkd"] <= exact["pkd_high"])
    return {"group": group, "rows": int(len(exact)), "spearman": round(float(rho), 3) + 0.0, "rmse": round(rmse, 2),
            "coverage_80": round(float(inside.mean()), 3) if len(exact) else None}


def _within(frame: pd.DataFrame, by: str) -> float:
    """Mean Spearman of pkd_pred against pkd within each value of `by` (exact rows, groups of >= 5)."""
    exact = frame[~frame["censored"].astype(bool)]
    rhos = [spearmanr(g["pkd"], g["pkd_pred"]).statistic for _, g in exact.groupby(by) if len(g) >= 5]
    return round(float(np.nanmean(rhos)), 3) + 0.0 if rhos else float("nan")  # + 0.0: no "-0.0" on the card


def _half_precision_copy(source: Path, target: Path) -> None:
    """The checkpoint with the network's float32 weights stored as float16 (loading casts them back); the wide
    part's closed-form state (`head.wide.`) keeps its precision: its kernel reads small composition distances."""
    state = load_checkpoint(source)
    state["model_state_dict"] = {k: v.half() if v.dtype == torch.float32 and ".wide." not in k else v
                                 for k, v in state["model_state_dict"].items()}
    save_checkpoint(state, target)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/abag-pretrained"))
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache (default WORK/cache, emptied with WORK; a warm one saves the encoding)")
    parser.add_argument("--card-only", action="store_true",
                        help="measure the shipped model again; keep the card's training-run entries")
    args = parser.parse_args(argv)
    torch.manual_seed(SEED)
    frame, report = abag.load_pairs(args.data_dir / "saaintdb_dev.csv")
    cache = str(args.cache_dir or args.work / "cache")
    print(report.summary(), file=sys.stderr)
    if args.card_only:
        card = json.loads((OUT / f"{PRETRAINED_NAME}.card.json").read_text(encoding="utf-8"))
        encoder = load_encoder("antiberty")
        half, _ = abag.load_trained_model(OUT / f"{PRETRAINED_NAME}.pt", encoders={"antiberty": encoder})
        trained = [row for row in card["accuracy"] if row["group"].startswith("SAAINT-DB")]
        card.update(unseen_sets(half, args.data_dir, cache, trained))
        write_card(card)
        return 0
    if args.work.exists():
        shutil.rmtree(args.work)
    encoder = load_encoder("antiberty")
    model_config = abag.ModelConfig(antibody_encoder="antiberty", antigen_encoder="antiberty", pooling=POOLING)
    train_config = abag.TrainConfig(seed=SEED, progress=False, cache_dir=cache)
    result = abag.train_folds(frame, args.work / "run", model_config, train_config, folds=5,
                              encoders={"antiberty": encoder}, log=lambda line: print(line, file=sys.stderr))

    OUT.mkdir(parents=True, exist_ok=True)
    shipped = OUT / f"{PRETRAINED_NAME}.pt"
    _half_precision_copy(result.best_checkpoint, shipped)
    full, _ = abag.load_trained_model(result.best_checkpoint, encoders={"antiberty": encoder})
    half, _ = abag.load_trained_model(shipped, encoders={"antiberty": encoder})
    shift = float(np.max(np.abs(abag.predict_frame(full, frame, cache_dir=cache)["pkd_pred"].to_numpy()
                                - abag.predict_frame(half, frame, cache_dir=cache)["pkd_pred"].to_numpy())))
    if shift > MAX_SHIFT:
        raise SystemExit(f"float16 weights moved a prediction by {shift:.4f} pKd (> {MAX_SHIFT}); not shipped")

    oof = pd.read_csv(args.work / "run" / "test_predictions.csv", keep_default_na=False)
    card = {
        "name": PRETRAINED_NAME, "abag_version": __version__,
        "summary": "pKd from heavy, light and antigen sequences, with an 80% interval and an applicability class",
        "training_data": f"SAAINT-DB affinity table ({len(frame)} complexes, MIT licence), all rows",
        "encoder": "AntiBERTy (offline, from the antiberty==0.1.3 wheel)",
        "members": int(result.member_of_row.max()),
        "weights": "the network's in float16 (cast to float32 on load), the wide part's in float64",
        "size_bytes": shipped.stat().st_size, "float16_max_shift": round(shift, 5),
        **unseen_sets(half, args.data_dir, cache, [_accuracy("SAAINT-DB out of fold (novel antigen clusters)", oof)]),
        "intended_use": "ranking candidate antibodies against an antigen, and a first pKd estimate with an honest "
                        "interval, before you have measurements of your own; then train on your own data",
        "not_for": "ranking one antibody's point mutants or designed variants (train on measured variants "
                   "instead: abag train --split random, abag suggest); absolute pKd of antigens far from "
                   "SAAINT-DB (the applicability column says novel-antigen); anything clinical",
        "command": "python bench/train_pretrained.py",
    }
    write_card(card)
    return 0


def unseen_sets(model, data_dir: Path, cache: str, trained: list[dict]) -> dict:
    """The card's entries measured on sets the model never trained on: SKEMPI 2.0 by applicability class and
    within each complex, Phillips 2021 within each antibody's variants (2,000 per antibody, seeded); `trained` (the
    training run's rows) first in `accuracy`."""
    accuracy = list(trained)
    skempi, _ = abag.load_pairs(data_dir / "skempi2_ab_ag.csv")
    skempi_pred = abag.predict_frame(model, skempi, cache_dir=cache)
    for cls, part in skempi_pred.groupby("applicability"):
        accuracy.append(_accuracy(f"SKEMPI 2.0, {cls}", part))
    phillips, _ = abag.load_pairs(data_dir / "phillips2021_cr9114_cr6261.csv.gz")
    phillips = pd.concat([g.sample(min(len(g), 2000), random_state=SEED)
                          for _, g in phillips.groupby("antibody", sort=True)], ignore_index=True)
    phillips_pred = abag.predict_frame(model, phillips, cache_dir=cache)
    if len(phillips_pred) != len(phillips):
        raise SystemExit(f"{len(phillips)} Phillips rows but {len(phillips_pred)} predictions")
    # By position: the prediction table keeps the input's row order, not its extra columns.
    phillips_pred = phillips_pred.assign(antibody=phillips["antibody"].to_numpy(),
                                         pkd=phillips["pkd"].to_numpy(), censored=phillips["censored"].to_numpy())
    skempi_within = _within(skempi_pred.assign(skempi_complex=skempi["skempi_complex"].to_numpy()), "skempi_complex") \
        if "skempi_complex" in skempi and len(skempi_pred) == len(skempi) else None
    return {"accuracy": accuracy, "skempi_spearman_within_complex": skempi_within,
            "phillips_spearman_within_antibody": _within(phillips_pred, "antibody"),
            "phillips_spearman_by_antibody": {name: _within(part, "antibody")
                                              for name, part in phillips_pred.groupby("antibody", sort=True)}}


def write_card(card: dict) -> None:
    (OUT / f"{PRETRAINED_NAME}.card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    CARD_DOC.write_text(card_markdown(card), encoding="utf-8")
    print(json.dumps(card, indent=2))


def card_markdown(card: dict) -> str:
    """docs/model-card.md from the card (tests/test_pretrained.py checks they agree)."""
    rows = "\n".join(f"| {a['group']} | {a['rows']} | {a['spearman']} | {a['rmse']} | {a['coverage_80']} |"
                     for a in card["accuracy"])
    by_antibody = ", ".join(f"{name} {value}" for name, value in card["phillips_spearman_by_antibody"].items())
    return f"""# Model card: {card['name']}

The model that ships inside abag: what it was trained on, how well it works, and what to use it for.

`abag predict --data pairs.csv --out predictions.csv` uses it when no `--checkpoint` is given; in Python,
`model, _ = abag.load_pretrained()`; `abag info` prints this card.

- **What it predicts**: {card['summary']}.
- **Training data**: {card['training_data']}.
- **Encoder**: {card['encoder']}; {card['members']} fold members over antigen clusters (`abag train`'s defaults,
  `--wide grouped_blend`, with `--pooling mean`, which keeps the weights a fifth of the size).
- **Weights**: {card['weights']}; {card['size_bytes'] / 1e6:.1f} MB; the float16 copy moves no prediction by more
  than {card['float16_max_shift']} pKd.
- **Rebuild it**: `{card['command']}` (abag {card['abag_version']}).

## Accuracy by applicability class

| rows | n | Spearman | RMSE | 80% interval coverage |
|---|---|---|---|---|
{rows}

Within one SKEMPI complex (its antibody's mutants against one antigen), mean Spearman
{card['skempi_spearman_within_complex']}; within one Phillips antibody's variants (zero-shot, 2,000 per antibody),
mean Spearman {card['phillips_spearman_within_antibody']} ({by_antibody}). Protocols: bench/train_pretrained.py;
every other measurement: [bench/RESULTS.md](../bench/RESULTS.md).

## Intended use

{card['intended_use']}.

## Fine-tuning from it

Starting `abag train` from this model's head instead of a fresh one changed nothing measurable on a few measured
variants of one antibody (Phillips 2021, 96 or 384 variants, 3 seeds; `bench/bench_init_pretrained.py`, results in
bench/RESULTS.md), so `abag train` has no option for it: train on your own measurements from a fresh start.

## Not for

{card['not_for']}.
"""


if __name__ == "__main__":
    sys.exit(main())
