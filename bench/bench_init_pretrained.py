"""Does fine-tuning from the shipped model help on a user's own variants? (issue "Ready to use as shipped")

    python bench/bench_init_pretrained.py [--train-sizes 96 384] [--seeds 0 1 2] [--test-size 2000]
        [--epochs 30] [--data-dir ../shared/data] [--cache-dir DIR] [--out bench/init_pretrained.json]

Few-shot variant ranking on Phillips 2021 (CR6261 and CR9114 heavy-chain variants, one antigen each), run as a
user with a few measured variants would: per antibody and seed, `n` variants train (a quarter of `n` more
validate), `--test-size` other variants are scored (Spearman on uncensored rows). Two arms with the same model
settings (the shipped model's: AntiBERTy, the wide part, the correction), the same split and seed:

* `scratch` — the network starts from a fresh initialisation, as `abag train` does today;
* `pretrained` — the network's head starts from one member of the shipped model (member `seed % 5`); the wide
  part and the correction are refitted on the user's rows either way (they are closed-form fits).

Beside them, two ridges on the same training rows: abag's k-mer ridge and the heavy-chain 1–3-mer ridge. The
`pretrained` arm replaces `abag.training.run.build_model` for the duration of its run (a bench-only hook: abag
ships no `--init` unless this says it helps).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_common import machine as host_machine  # noqa: E402

import abag.training.run as training_run  # noqa: E402
from abag.checkpoint import load_checkpoint  # noqa: E402
from abag.data.pipeline import load_pairs  # noqa: E402
from abag.data.splits import SplitResult  # noqa: E402
from abag.encoding.loader import load_encoder  # noqa: E402
from abag.evaluation.variant_baselines import HeavyKmerRidgeBaseline  # noqa: E402
from abag.model.config import ModelConfig  # noqa: E402
from abag.model.ridge import KmerRidgeBaseline  # noqa: E402
from abag.pretrained import pretrained_path  # noqa: E402
from abag.training.config import TrainConfig  # noqa: E402
from abag.training.run import train  # noqa: E402

ARMS = ("scratch", "pretrained")
RIDGES = {"kmer_ridge": KmerRidgeBaseline, "heavy_kmer123_ridge": HeavyKmerRidgeBaseline}
# Not carried from the shipped member: the wide part is refitted on the user's rows, and the deep part's centring
# shift is computed again after training (abag.model.apply.centre_deep).
NOT_CARRIED = (".wide.", ".deep_shift")


def member_head(checkpoint: dict, member: int) -> dict:
    """One fold member's head weights from a fold-ensemble checkpoint, named as a single model names them."""
    prefix = f"head.fold_heads.{member}."
    return {"head." + key[len(prefix):]: value for key, value in checkpoint["model_state_dict"].items()
            if key.startswith(prefix) and not any(part in key for part in NOT_CARRIED)}


@contextlib.contextmanager
def starting_from(weights: dict | None):
    """Inside, `train` builds its model and then loads `weights` into its head (strictly: every key must fit)."""
    if weights is None:
        yield
        return
    original = training_run.build_model

    def build(config, encoders=None):
        model = original(config, encoders)
        own = model.state_dict()
        unknown = sorted(set(weights) - set(own))
        if unknown:
            raise KeyError(f"the shipped member's weights do not fit this model: {unknown[:5]}")
        model.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in weights.items()}})
        return model

    training_run.build_model = build
    try:
        yield
    finally:
        training_run.build_model = original


def deal(rows: pd.DataFrame, n_train: int, test_size: int, seed: int) -> np.ndarray:
    """'train' / 'val' / 'test' / '' per row of one antibody's variants (seeded)."""
    order = np.random.default_rng(seed).permutation(len(rows))
    n_val = max(16, n_train // 4)
    assignment = np.full(len(rows), "", dtype=object)
    assignment[order[:n_train]] = "train"
    assignment[order[n_train:n_train + n_val]] = "val"
    assignment[order[n_train + n_val:n_train + n_val + test_size]] = "test"
    return assignment


def spearman(y: np.ndarray, p: np.ndarray) -> float | None:
    if len(y) < 3 or np.ptp(y) == 0 or np.ptp(p) == 0:
        return None
    return float(stats.spearmanr(y, p).statistic)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-sizes", type=int, nargs="+", default=[96, 384])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--work", default="runs/init_pretrained")
    parser.add_argument("--out", default=str(ROOT / "bench" / "init_pretrained.json"))
    args = parser.parse_args(argv)

    shipped = load_checkpoint(pretrained_path())
    model_config = ModelConfig(**shipped["config"]["model"])  # initial_pkd: train() sets it from the rows
    encoders = {"antiberty": load_encoder("antiberty")}
    full, _ = load_pairs(Path(args.data_dir) / "phillips2021_cr9114_cr6261.csv.gz")
    results = []
    for antibody, rows in full.groupby("antibody", sort=True):
        rows = rows.reset_index(drop=True)
        for n_train in args.train_sizes:
            for seed in args.seeds:
                assignment = deal(rows, n_train, args.test_size, seed)
                used = assignment != ""
                frame = rows[used].reset_index(drop=True)
                split = SplitResult("random", assignment[used].astype(str), None,
                                    f"{n_train} train variants, seed {seed}")
                test = frame[split.assignment == "test"]
                scored = ~test["censored"].to_numpy(bool)
                y = test["pkd"].to_numpy(float)[scored]
                entry = {"antibody": antibody, "n_train": n_train, "seed": seed, "n_test_scored": int(scored.sum())}
                train_rows = frame[split.assignment == "train"]
                for name, make in RIDGES.items():
                    entry[name] = spearman(y, make().fit(train_rows).predict(test)[scored])
                for arm in ARMS:
                    started = time.perf_counter()
                    weights = member_head(shipped, seed % shipped["ensemble"]["n_folds"]) if arm == "pretrained" \
                        else None
                    config = TrainConfig(epochs=args.epochs, seed=seed, progress=False, cache_dir=args.cache_dir)
                    with starting_from(weights):
                        result = train(frame, Path(args.work) / f"{antibody}_{n_train}_{seed}_{arm}", model_config,
                                       config, encoders=encoders, split=split, log=lambda _: None)
                    predicted = pd.read_csv(result.out_dir / "test_predictions.csv")["pkd_pred"].to_numpy(float)
                    entry[arm] = spearman(y, predicted[scored])
                    entry[f"{arm}_seconds"] = round(time.perf_counter() - started, 1)
                print(json.dumps(entry), flush=True)
                results.append(entry)
    summary = summarise(results)
    Path(args.out).write_text(json.dumps({"machine": host_machine(), "settings": vars(args), "runs": results,
                                          "summary": summary}, indent=1) + "\n")
    print(markdown(summary))
    return 0


def summarise(results: list[dict]) -> list[dict]:
    """Mean and spread over seeds of every predictor, per antibody and training size."""
    table = pd.DataFrame(results)
    rows = []
    for (antibody, n_train), group in table.groupby(["antibody", "n_train"]):
        row = {"antibody": antibody, "n_train": int(n_train), "seeds": len(group)}
        for name in (*ARMS, *RIDGES):
            values = group[name].dropna().to_numpy(float)
            row[name] = (round(float(values.mean()), 3), round(float(values.std()), 3)) if len(values) else None
        rows.append(row)
    return rows


def markdown(summary: list[dict]) -> str:
    names = (*ARMS, *RIDGES)
    lines = ["| antibody | train variants | " + " | ".join(names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for row in summary:
        cells = [f"{row[n][0]:.3f} ± {row[n][1]:.3f}" if row[n] else "n/a" for n in names]
        lines.append(f"| {row['antibody']} | {row['n_train']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
