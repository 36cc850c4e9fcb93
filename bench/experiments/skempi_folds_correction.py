"""SKEMPI leave-one-complex-out with the product default `abag train` (a 5-fold ensemble per held-out complex):
the familiar-antigen correction fitted on out-of-fold residuals (what `train_folds` saves) against the same
ensemble's correction fitted on in-sample residuals, the ensemble's network alone and the k-mer ridge.

Usage (ABAG_CACHE_DIR with the SKEMPI chains, one torch thread):
    python bench/experiments/skempi_folds_correction.py run --seed 0 --part 0/2 --out /tmp/skf
    python bench/experiments/skempi_folds_correction.py run --seed 0 --part 1/2 --out /tmp/skf
    python bench/experiments/skempi_folds_correction.py summary --out /tmp/skf [--record NAME]

`run` writes OUT/seed_<s>/complex_<i>.csv (the held-out complex's rows and every predictor); `summary` scores
them: mean Spearman per complex (complexes with >= 3 uncensored rows), by antigen familiarity, pooled Spearman
and RMSE, and paired per-complex differences with a bootstrap over complexes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "skempi2_ab_ag.csv"
PREDICTORS = ("oof_correction", "in_sample_correction", "network_only", "kmer_ridge")


def run(args) -> None:
    from abag.data.pipeline import load_pairs
    from abag.encoding.embedding_cache import default_cache_dir
    from abag.encoding.loader import load_encoder
    from abag.evaluation.baselines import KmerRidgeBaseline
    from abag.folds.members import train_folds
    from abag.inference import member_outputs
    from abag.model.config import ModelConfig
    from abag.posthoc.familiar_correction import fit_for_model
    from abag.training.config import TrainConfig

    torch.set_num_threads(1)
    frame, _ = load_pairs(DATA)
    frame = frame.reset_index(drop=True)
    complexes = sorted(frame["skempi_complex"].unique())
    part, parts = (int(x) for x in args.part.split("/"))
    model_config = ModelConfig()
    config = TrainConfig(progress=False, seed=args.seed, cache_dir=str(default_cache_dir()))
    encoders = {"antiberty": load_encoder("antiberty")}
    out = Path(args.out) / f"seed_{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(complexes):
        target = out / f"complex_{i}.csv"
        if i % parts != part or target.exists():
            continue
        test = frame[frame["skempi_complex"] == name]
        training = frame[frame["skempi_complex"] != name].reset_index(drop=True)
        run_dir = out / f"run_{i}"  # a finished run folder is reused (its members are not retrained)
        result = train_folds(training, run_dir, model_config, config, folds=5, encoders=encoders,
                             resume=(run_dir / "folds.json").exists(), log=lambda line: None)
        ensemble = result.model
        table = test[["skempi_complex", "pkd", "censored"]].copy()
        on_test = member_outputs(ensemble, test, cache_dir=config.cache_dir)
        table["oof_correction"] = on_test.pkd.mean(axis=0)
        table["network_only"] = on_test.network_pkd.mean(axis=0)
        on_training = member_outputs(ensemble, training, cache_dir=config.cache_dir)
        in_sample = fit_for_model(ensemble, training, on_training.network_pkd.mean(axis=0),
                                  on_training.network_logits.mean(axis=0), ensemble.prediction_support)
        table["in_sample_correction"] = in_sample.apply(test, on_test.network_pkd, on_test.network_logits)[0].mean(axis=0)
        table["kmer_ridge"] = KmerRidgeBaseline().fit(training).predict(test)
        table["antigen_weight"] = in_sample.weights(test)
        table.to_csv(target, index=False)
        print(f"{i + 1}/{len(complexes)} {name}: " + ", ".join(
            f"{p} {_spearman(table, p):.3f}" for p in PREDICTORS), flush=True)


def _spearman(table: pd.DataFrame, column: str) -> float:
    exact = table[~table["censored"].astype(bool)]
    if len(exact) < 3 or np.ptp(exact[column]) == 0 or np.ptp(exact["pkd"]) == 0:
        return float("nan")
    return float(spearmanr(exact["pkd"], exact[column])[0])


def summary(args) -> None:
    lines = {}
    for folder in sorted(Path(args.out).glob("seed_*")):
        tables = [pd.read_csv(p) for p in sorted(folder.glob("complex_*.csv"))]
        pooled = pd.concat(tables, ignore_index=True)
        exact = pooled[~pooled["censored"].astype(bool)]
        scored = [t for t in tables if (~t["censored"].astype(bool)).sum() >= 3]
        per = pd.DataFrame({p: [_spearman(t, p) for t in scored] for p in PREDICTORS})
        familiar = np.array([t["antigen_weight"].mean() >= 0.5 for t in scored])
        line = {"complexes": len(tables), "scored": len(scored), "familiar": int(familiar.sum())}
        for p in PREDICTORS:
            line[p] = {"per_complex": float(per[p].mean()), "familiar": float(per[p][familiar].mean()),
                       "novel": float(per[p][~familiar].mean()),
                       "pooled": float(spearmanr(exact["pkd"], exact[p])[0]),
                       "rmse": float(np.sqrt(np.mean((exact["pkd"] - exact[p]) ** 2)))}
        rng = np.random.default_rng(0)
        for a, b in (("oof_correction", "kmer_ridge"), ("oof_correction", "in_sample_correction"),
                     ("oof_correction", "network_only")):
            d = (per[a] - per[b]).dropna().to_numpy()
            boots = [rng.choice(d, len(d)).mean() for _ in range(2000)]
            line[f"{a}-{b}"] = {"mean": float(d.mean()), "ci95": np.quantile(boots, [0.025, 0.975]).tolist(),
                                "better": int((d > 0).sum()), "of": len(d)}
        lines[folder.name] = line
        print(folder.name, json.dumps(line, indent=1))
    if args.record:
        sys.path.insert(0, str(Path(__file__).parent))
        from attempt_args import record_attempt
        record_attempt({"name": args.record, "protocol": "SKEMPI leave one complex out, 5-fold ensemble per complex",
                        "seeds": lines})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("run", "summary"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--part", default="0/1")
    parser.add_argument("--out", default="/tmp/skempi_folds_correction")
    parser.add_argument("--record", default=None, help="summary: append the result to attempts.jsonl as NAME")
    args = parser.parse_args()
    run(args) if args.mode == "run" else summary(args)


if __name__ == "__main__":
    main()
