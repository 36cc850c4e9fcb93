"""Which `abag train` default to ship: the v2.7 single split or `--folds K`, measured on frozen outer folds.

Protocol (issue 12): the 5 frozen outer folds of antigen clusters of saaintdb_dev.csv
(saaintdb_folds.json, the folds every cv_attempt.py line used). For every training seed and outer fold, the
4 outer-training folds go to the library exactly as a user's table would:

* arm `single` (`--folds 0`): `abag.train` with its own split (TrainConfig.split, 80/10/10 antigen clusters
  by default: it trains on 80%, early-stops on 10% and leaves 10% as its own test part);
* arm `foldsK` (`--folds K`): `abag.kfold.train_folds` with K inner folds of antigen clusters (dealt with the
  training seed), the averaged ensemble (`best.pt`) is the model;

and the model predicts the outer test fold (`abag.inference.member_outputs`: the members' mean, as
`predict_frame` reports it, and the network alone, scored as `network_only`). The k-mer ridge is fitted on the
same 4 outer-training folds (all of them: it needs no validation part). Scored on the pooled out-of-fold
predictions of the 5 outer test folds with `abag.metrics.evaluate_predictions`: pooled Spearman, mean Spearman
within the frozen antigen clusters with >= 5 rows (and their count), RMSE; per seed, mean and max − min
over seeds, and wall seconds per training (a training = one `train` or one `train_folds` call, warm cache).
Model and training settings are the library defaults when the arm starts (`key=value` overrides them, as in
cv_attempt.py); the summary records them in full, with a digest of the library modules imported. When the
`single` arm ran under OUT with the same settings, a `foldsK` arm also records its paired difference to it
(same rows, same seed).

Usage (one arm per process; appends one line per arm to attempts.jsonl):
  ABAG_CACHE_DIR=/tmp/abag-cache python bench/experiments/cv_folds_default.py --folds 0
  ABAG_CACHE_DIR=/tmp/abag-cache python bench/experiments/cv_folds_default.py --folds 5
  ABAG_CACHE_DIR=/tmp/abag-cache python bench/experiments/cv_folds_default.py --folds 3
Options: --seeds 0 100 200, --out /tmp/abag_exp/folds_default, --threads 1, --data, --folds-file,
--tag TEXT (appended to the attempt's name), --json PATH (the summary), --no-record (do not append to
attempts.jsonl).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from attempt_args import parse_attempt_args, record_attempt

from abag.data.pipeline import load_pairs
from abag.data.splits import row_groups
from abag.encoding.embedding_cache import default_cache_dir
from abag.encoding.loader import load_encoders
from abag.evaluation.baselines import KmerRidgeBaseline
from abag.evaluation.metrics import evaluate_predictions
from abag.folds.crossval import paired_spearman_difference
from abag.folds.members import train_folds
from abag.inference import member_outputs
from abag.model.config import ModelConfig
from abag.training.config import TrainConfig
from abag.training.run import train
from abag.version import __version__

HERE = Path(__file__).resolve().parent
LIBRARY = HERE.parents[1] / "abag"
SETTINGS_FILE = "settings.json"  # an arm's ModelConfig, TrainConfig and data: arms compare only when equal
SCORED = ("spearman", "spearman_within_group", "n_groups_within", "rmse")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=0, help="inner folds K for train_folds; 0 = the single split")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 100, 200])
    parser.add_argument("--data", default="/work/shared/data/saaintdb_dev.csv")
    parser.add_argument("--folds-file", default=str(HERE / "saaintdb_folds.json"))
    parser.add_argument("--out", default=str(Path(os.environ.get("OUT", "/tmp/abag_exp")) / "folds_default"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-boot", type=int, default=500)
    parser.add_argument("--tag", default="", help="appended to the attempt's name (e.g. what default was in force)")
    parser.add_argument("--json", default=None, help="also write the summary line here")
    parser.add_argument("--no-record", action="store_true", help="do not append to attempts.jsonl")
    parser.add_argument("overrides", nargs="*", help="ModelConfig/TrainConfig key=value (JSON values)")
    args = parser.parse_args(argv)
    if args.folds == 1 or args.folds < 0:
        parser.error("--folds is 0 (single split) or at least 2")
    return args


def arm_name(folds: int) -> str:
    return "single" if folds == 0 else f"folds{folds}"


def train_on(frame: pd.DataFrame, run_dir: Path, folds: int, model_config: ModelConfig, config: TrainConfig,
             encoders: dict, log) -> tuple[object, dict]:
    """Train the arm's model on `frame` (a user's whole table); (model to predict with, facts about the run)."""
    if folds == 0:
        result = train(frame, run_dir, model_config, config, encoders=encoders, log=log)
        return result.model, {"best_epochs": [int(result.metrics["training"]["best_epoch"])],
                              "split": result.metrics["data"].get("split_description")}
    result = train_folds(frame, run_dir, model_config, config, folds=folds, encoders=encoders, log=log)
    return result.model, {"best_epochs": [int(m["best_epoch"]) for m in result.metrics["folds"]["members"]],
                          "split": result.metrics["folds"]["protocol"]}


def progress_log(prefix: str):
    """Print the lines that show whether chains are being encoded (the cache should be warm) and the splits."""
    def log(line: str) -> None:
        if "embedding cache" in line or line.startswith("split:") or "fold ensemble" in line:
            print(f"{prefix}{line}", flush=True)
    return log


def fold_table(frame: pd.DataFrame, groups: np.ndarray, fold: int, test_rows: np.ndarray, pkd_pred,
               binder_prob=None) -> pd.DataFrame:
    """One outer fold's test rows with their labels, frozen cluster and predictions (`model` column)."""
    table = pd.DataFrame({"row": test_rows, "fold": fold, "group": groups[test_rows],
                          "pkd": frame["pkd"].to_numpy(float)[test_rows],
                          "censored": frame["censored"].to_numpy(bool)[test_rows],
                          "model": np.asarray(pkd_pred, dtype=float)})
    if binder_prob is not None:
        table["binder_prob"] = np.asarray(binder_prob, dtype=float)
    return table


def run_seed(frame: pd.DataFrame, groups: np.ndarray, tests: list[np.ndarray], args, seed: int,
             model_config: ModelConfig, train_config: TrainConfig, encoders: dict,
             out: Path) -> tuple[pd.DataFrame, list[dict]]:
    """Out-of-fold predictions of one training seed over every outer fold, and one record per training."""
    config = dataclasses.replace(train_config, seed=seed)
    predictions, trainings = [], []
    for i, test_rows in enumerate(tests):
        train_rows = np.setdiff1d(np.arange(len(frame)), test_rows)
        prefix = f"[{arm_name(args.folds)} seed {seed} fold {i + 1}/{len(tests)}] "
        started = time.perf_counter()
        model, facts = train_on(frame.iloc[train_rows].reset_index(drop=True), out / f"seed_{seed}" / f"fold_{i}",
                                args.folds, model_config, config, encoders, progress_log(prefix))
        seconds = time.perf_counter() - started
        # One pass gives the model's outputs (what predict_frame reports: the members' means) and the network's
        # alone, so that the correction's effect is measured on the same trained models.
        outputs = member_outputs(model, frame.iloc[test_rows], cache_dir=config.cache_dir)
        part = fold_table(frame, groups, i, test_rows, outputs.pkd.mean(axis=0), outputs.binder_prob.mean(axis=0))
        part["network"] = outputs.network_pkd.mean(axis=0)
        predictions.append(part)
        fold_score = evaluate_predictions(part["pkd"], part["model"], censored=part["censored"], ci=False)
        trainings.append({"fold": i, "seconds": seconds, "n_train_rows": int(len(train_rows)), **facts})
        print(f"{prefix}Spearman {fold_score['spearman']:.3f} on {len(test_rows)} rows; trained in {seconds:.0f}s",
              flush=True)
    table = pd.concat(predictions, ignore_index=True)
    table.to_csv(out / f"seed_{seed}" / "predictions.csv", index=False)
    return table, trainings


def kmer_ridge_predictions(frame: pd.DataFrame, groups: np.ndarray, tests: list[np.ndarray]) -> pd.DataFrame:
    """The k-mer ridge fitted on all the other outer folds of each fold, predicting its test rows."""
    parts = []
    for i, test_rows in enumerate(tests):
        train_rows = np.setdiff1d(np.arange(len(frame)), test_rows)
        ridge = KmerRidgeBaseline().fit(frame.iloc[train_rows])
        parts.append(fold_table(frame, groups, i, test_rows, ridge.predict(frame.iloc[test_rows])))
    return pd.concat(parts, ignore_index=True)


def score(table: pd.DataFrame, antibodies: np.ndarray, n_boot: int, seed: int) -> dict:
    """Pooled metrics of out-of-fold predictions (within-cluster over the frozen clusters), and the fold mean;
    `n_boot` 0: no bootstrap intervals."""
    prob = table["binder_prob"] if "binder_prob" in table else None
    pooled = evaluate_predictions(table["pkd"], table["model"], prob, censored=table["censored"], ci=n_boot > 0,
                                  n_boot=max(n_boot, 1), seed=seed, groups=table["group"],
                                  antibody_groups=antibodies[table["row"]])
    per_fold = [evaluate_predictions(p["pkd"], p["model"], censored=p["censored"], ci=False)["spearman"]
                for _, p in table.groupby("fold")]
    out = {key: pooled.get(key) for key in SCORED}
    out.update(spearman_ci95_cluster=pooled.get("spearman_ci95_cluster"),
               spearman_within_group_ci95=pooled.get("spearman_within_group_ci95"),
               auroc=(pooled.get("binder") or {}).get("auroc"), mean_over_folds=float(np.mean(per_fold)),
               per_fold=per_fold)
    return out


def over_seeds(per_seed: list[dict]) -> dict:
    """Mean and max − min over seeds of every scored metric."""
    out = {}
    for key in ("spearman", "spearman_within_group", "rmse", "mean_over_folds"):
        values = np.array([s[key] for s in per_seed], dtype=float)
        out[key] = float(values.mean())
        out[f"{key}_spread"] = float(values.max() - values.min())
    return out


def versus_single(out_root: Path, table: pd.DataFrame, seed: int, antibodies: np.ndarray, n_boot: int,
                  settings: dict) -> dict | None:
    """This arm minus the single-split arm on the same rows and seed, if that arm ran with the same settings
    (its SETTINGS_FILE) and its predictions for this seed exist."""
    path = out_root / "single" / f"seed_{seed}" / "predictions.csv"
    recorded = out_root / "single" / SETTINGS_FILE
    if not path.exists() or not recorded.exists():
        return None
    if json.loads(recorded.read_text()) != json.loads(json.dumps(settings)):  # as JSON: tuples read back as lists
        return {"skipped": f"the single arm in {recorded.parent} ran with other settings"}
    single = pd.read_csv(path).set_index("row").loc[table["row"]]
    paired = paired_spearman_difference(table["pkd"], table["model"], single["model"].to_numpy(),
                                        censored=table["censored"], n_boot=n_boot, seed=seed)
    reference = score(single.reset_index(), antibodies, n_boot=0, seed=seed)
    mine = score(table, antibodies, n_boot=0, seed=seed)
    return {"pooled_spearman_difference": paired["difference"], "pooled_ci95": paired["ci95"],
            "within_cluster_difference": mine["spearman_within_group"] - reference["spearman_within_group"],
            "rmse_difference": mine["rmse"] - reference["rmse"]}


def library_digest() -> dict:
    """sha1 of the modules whose defaults others were changing while this ran (which code was in force)."""
    return {name: hashlib.sha1((LIBRARY / name).read_bytes()).hexdigest()[:12]
            for name in ("model/network.py", "model/losses.py", "training/loop.py", "folds/members.py",
                         "training/config.py")}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    _, model_kw, train_kw = parse_attempt_args(args.overrides, {})
    model_config = ModelConfig(**model_kw)
    train_config = TrainConfig(progress=False, cache_dir=str(default_cache_dir()), **train_kw)
    frame, _ = load_pairs(args.data)
    frame = frame.reset_index(drop=True)
    frozen = json.loads(Path(args.folds_file).read_text())
    groups = np.asarray(frozen["groups"])
    tests = [np.asarray(t, dtype=np.int64) for t in frozen["tests"]]
    if len(groups) != len(frame):
        raise SystemExit(f"{args.folds_file} has {len(groups)} rows, {args.data} {len(frame)}")
    antibodies = np.asarray(row_groups(frame, "antibody").labels)
    arm = arm_name(args.folds)
    out_root = Path(args.out)
    out = out_root / arm
    for seed in args.seeds:
        (out / f"seed_{seed}").mkdir(parents=True, exist_ok=True)
    settings = {"model": dataclasses.asdict(model_config), "train": dataclasses.asdict(train_config),
                "data": str(args.data), "folds_file": str(args.folds_file)}
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=1))
    code = library_digest()  # at the start: the modules this process imported
    print(f"arm {arm}: {len(frame)} rows, {len(tests)} frozen outer folds, seeds {args.seeds}, cache "
          f"{train_config.cache_dir}, {args.threads} torch thread(s)\nModelConfig: {dataclasses.asdict(model_config)}",
          flush=True)
    started = time.perf_counter()
    encoders = load_encoders((model_config.antibody_encoder, model_config.antigen_encoder))
    per_seed, trainings, versus = [], {}, {}
    for seed in args.seeds:
        table, trainings[seed] = run_seed(frame, groups, tests, args, seed, model_config, train_config, encoders, out)
        per_seed.append(score(table, antibodies, args.n_boot, seed))
        per_seed[-1]["network_only"] = score(table.assign(model=table["network"]).drop(columns="binder_prob"),
                                             antibodies, 0, seed)
        versus[seed] = versus_single(out_root, table, seed, antibodies, args.n_boot, settings) if args.folds else None
        print(f"[{arm} seed {seed}] pooled Spearman {per_seed[-1]['spearman']:.3f}, within-cluster "
              f"{per_seed[-1]['spearman_within_group']:.3f} ({per_seed[-1]['n_groups_within']} clusters), RMSE "
              f"{per_seed[-1]['rmse']:.3f}", flush=True)
    kmer = score(kmer_ridge_predictions(frame, groups, tests), antibodies, args.n_boot, 0)
    seconds = [t["seconds"] for seed in args.seeds for t in trainings[seed]]
    how = "abag.training.run, its own split" if args.folds == 0 else f"train_folds K={args.folds}"
    line = {
        "name": f"folds_default_{arm}{'_' + args.tag if args.tag else ''}", "arm": arm,
        "inner_folds": args.folds or None,
        "protocol": f"{frozen.get('protocol', 'frozen folds')} from {Path(args.folds_file).name}; model trained on "
                    f"the {len(tests) - 1} outer-training folds ({how}), predicted on the outer test fold; pooled "
                    f"over the {len(tests)} outer test folds",
        "seeds": args.seeds, "per_seed": dict(zip(map(str, args.seeds), per_seed)),
        **over_seeds(per_seed), "network_only": over_seeds([s["network_only"] for s in per_seed]),
        "n_clusters_within": per_seed[0]["n_groups_within"],
        "seconds_per_training_mean": float(np.mean(seconds)), "seconds_per_training": seconds,
        "trainings": {str(s): t for s, t in trainings.items()},
        "versus_single": {str(s): v for s, v in versus.items()} if args.folds else None,
        "kmer_ridge": kmer, "model_config": dataclasses.asdict(model_config),
        "train_config": dataclasses.asdict(train_config), "overrides": args.overrides, "abag_version": __version__,
        "library_sha1_at_start": code, "threads": args.threads, "total_seconds": time.perf_counter() - started,
        "load_average_at_end": list(os.getloadavg()),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(line, indent=1))
    if args.no_record:
        print(json.dumps(line))
    else:
        record_attempt(line)
    return line


if __name__ == "__main__":
    main()
