"""Wall time and memory of every stage of a training run on large synthetic pair tables (issue "Reliability at scale").

For each `--rows N` the script writes a synthetic CSV of N pairs over N/5 heavy chains (~120 aa, ending in a
framework-4 motif), N/10 light chains (~110 aa; 5 % of pairs single-domain) and N/25 antigens (100-600 aa,
a tenth of them two-chain) in N/250 families whose members are 80-95 % identical to their parent. pKd is
antibody + antigen-family effects plus noise; 2 % of rows are censored. Then, each in a fresh process:

* the stages of `abag train --encoder tiny --epochs 1` run one after another in one process (load, validate,
  split, encode, row records, epoch, checkpoints, evaluation, baselines, interval calibration, writing the
  outputs), then those of `abag predict` on the same file (predict with intervals, writing), with the
  wall and CPU time, the peak resident memory during the stage (a background thread samples RSS every 10 ms; the
  peak cannot be reset between stages) and the RSS after it;
* the end-to-end `abag train --encoder tiny --epochs 1` and `abag predict` commands, each with its wall time
  CPU time and peak RSS (`getrusage(RUSAGE_CHILDREN)` of a wrapper process that runs only that command).
  `abag train` runs with the shipped defaults (one split from `abag.cli.FOLDS_MAX_ROWS` rows on, 5 fold members
  below), and the table quotes its own "stage times: …" line (`abag.stage_times`).

It prints one markdown table per size (and `--out FILE` writes them, `--json FILE` the raw numbers):

    python bench/bench_scale.py --rows 100000 500000 1000000 --work /tmp/scale --out /tmp/scale/tables.md
    python bench/bench_scale.py --rows 2000 --threads 1            # a quick check

`--fc-fusions N …` adds the antigen clustering of N antigens that share one domain (`fc_fusions`: an Fc fusion,
a common tag or carrier protein), each size in its own process: clusters, the chain pairs whose shared seeds
were counted (all N (N - 1) / 2 of them before common seeds were bounded), CPU and wall time, peak RSS:

    python bench/bench_scale.py --fc-fusions 5000 20000 --threads 1    # the shared-domain case alone
"""

from __future__ import annotations

import _thread
import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from bench_common import machine  # noqa: E402 - bench/ is on sys.path when run as a script

from abag.policy import AMINO_ACIDS

HERE = Path(__file__).resolve()
LETTERS = np.frombuffer(AMINO_ACIDS.encode(), dtype=np.uint8)
# Residue frequencies of UniProt (A C D E F G H I K L M N P Q R S T V W Y), so chains look like proteins.
BACKGROUND = np.array([8.3, 1.4, 5.5, 6.7, 3.9, 7.1, 2.3, 5.9, 5.8, 9.7, 2.4, 4.1, 4.7, 3.9, 5.5, 6.6, 5.3,
                       6.9, 1.1, 2.9])
BACKGROUND = BACKGROUND / BACKGROUND.sum()
HEAVY_FR4, LIGHT_FR4 = "WGQGTLVTVSS", "FGGGTKLEIK"


# ------------------------------------------------------------------------------------------- synthetic data

@dataclass(frozen=True)
class SyntheticMix:
    """How many pairs and distinct chains a synthetic table has (the issue's mix, scaled with `rows`)."""

    rows: int
    heavy: int
    light: int
    antigens: int
    families: int
    seed: int = 0

    @classmethod
    def scaled(cls, rows: int, seed: int = 0) -> "SyntheticMix":
        """N/5 heavy, N/10 light, N/25 antigens in N/250 families (at least one of each)."""
        return cls(rows, max(rows // 5, 1), max(rows // 10, 1), max(rows // 25, 1), max(rows // 250, 1), seed)

    def describe(self) -> str:
        return (f"{self.rows:,} pairs: {self.heavy:,} heavy, {self.light:,} light, {self.antigens:,} antigens "
                f"in {self.families:,} families")


def random_chains(rng: np.random.Generator, lengths: np.ndarray, suffix: str = "") -> list[str]:
    """Chains of the given lengths (plus `suffix`) with UniProt residue frequencies, 10,000 at a time."""
    out: list[str] = []
    for start in range(0, len(lengths), 10_000):
        part = lengths[start:start + 10_000]
        codes = rng.choice(20, size=(len(part), int(part.max())), p=BACKGROUND).astype(np.uint8)
        text = LETTERS[codes]
        out += [row[:n].tobytes().decode() + suffix for row, n in zip(text, part)]
    return out


def family_members(rng: np.random.Generator, parents: list[str], count: int) -> tuple[list[str], np.ndarray]:
    """`count` antigens, each a copy of a random parent with 5-20 % of its residues substituted (80-95 %
    identity) and a one-residue indel in half of them; a tenth are split into two chains ('A|B')."""
    family = rng.integers(0, len(parents), size=count)
    family[: len(parents)] = np.arange(min(len(parents), count))  # every family has a member
    out = []
    for i, f in enumerate(family):
        chain = np.frombuffer(parents[f].encode(), dtype=np.uint8).copy()
        sites = rng.random(chain.size) < rng.uniform(0.05, 0.20)
        chain[sites] = LETTERS[rng.choice(20, size=int(sites.sum()), p=BACKGROUND)]
        text = chain.tobytes().decode()
        if i % 2:
            cut = int(rng.integers(1, len(text) - 1))
            text = text[:cut] + text[cut + 1:] if i % 4 == 1 else text[:cut] + "G" + text[cut:]
        if i % 10 == 0:
            cut = len(text) // 3
            text = text[:cut] + "|" + text[cut:]
        out.append(text)
    return out, family


def synthetic_pairs(mix: SyntheticMix) -> pd.DataFrame:
    """A table of `mix.rows` pairs (columns heavy, light, antigen, pkd, censored; see the module docstring)."""
    rng = np.random.default_rng(mix.seed)
    heavy = random_chains(rng, rng.integers(98, 121, size=mix.heavy), HEAVY_FR4)
    light = random_chains(rng, rng.integers(92, 110, size=mix.light), LIGHT_FR4)
    parents = random_chains(rng, rng.integers(100, 601, size=mix.families))
    antigens, family = family_members(rng, parents, mix.antigens)
    rows = {"heavy": rng.integers(0, mix.heavy, size=mix.rows),
            "light": np.where(rng.random(mix.rows) < 0.05, -1, rng.integers(0, mix.light, size=mix.rows)),
            "antigen": rng.integers(0, mix.antigens, size=mix.rows)}
    pkd = (8.0 + rng.normal(0, 1.0, mix.heavy)[rows["heavy"]] + rng.normal(0, 0.5, mix.light)[rows["light"]]
           + rng.normal(0, 0.7, mix.families)[family[rows["antigen"]]] + rng.normal(0, 0.5, mix.rows))
    light_column = np.array(light + [""], dtype=object)[rows["light"]]  # index -1: no light chain
    return pd.DataFrame({"heavy": np.array(heavy, dtype=object)[rows["heavy"]], "light": light_column,
                         "antigen": np.array(antigens, dtype=object)[rows["antigen"]],
                         "pkd": np.round(np.clip(pkd, 4.0, 14.0), 3), "censored": rng.random(mix.rows) < 0.02})


def fc_fusions(count: int, seed: int = 0, fc_length: int = 220) -> list[str]:
    """`count` distinct antigens that share one domain: a variable part of 100-300 random residues followed by a
    common `fc_length`-residue "Fc" (random, drawn once) carrying 0-3 substitutions (allotypes, silencing
    mutations). Every pair is >= 40 % identical through the Fc (220 / at most 520 residues), so single linkage
    puts them all in one antigen cluster; the Fc's seeds are each held by (nearly) every antigen, the shape that
    made the seed search compare every pair (issue 24)."""
    rng = np.random.default_rng(seed)
    fc = np.frombuffer(random_chains(rng, np.array([fc_length]))[0].encode(), dtype=np.uint8)
    variable = random_chains(rng, rng.integers(100, 301, size=count))
    out = []
    for part in variable:
        domain = fc.copy()
        sites = rng.choice(fc_length, size=int(rng.integers(0, 4)), replace=False)
        domain[sites] = LETTERS[rng.choice(20, size=len(sites), p=BACKGROUND)]
        out.append(part + domain.tobytes().decode())
    return out


# ------------------------------------------------------------------------------------------- measuring

def resident_bytes(pid: int | None = None) -> int:
    """Resident memory (VmRSS) of this process or of `pid`, in bytes; 0 for a process that has gone."""
    try:
        with open(f"/proc/{pid or 'self'}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return 0
    except OSError:
        pass
    import psutil  # not Linux: psutil reads the same number

    return psutil.Process(pid).memory_info().rss


@dataclass
class StageResult:
    """One stage: wall and CPU seconds (all threads), the peak RSS sampled during it and the RSS after it (GiB)."""

    name: str
    seconds: float
    cpu_seconds: float
    peak_gib: float
    after_gib: float
    note: str = ""


class MemoryLimitReached(Exception):
    """A stage passed the resident-memory limit; the stages before it are recorded."""


@dataclass
class StageRecorder:
    """Times stages and tracks the highest RSS seen within each, from a thread sampling every `interval` s.

    Past `limit_bytes` (on a shared machine) the stage is interrupted and recorded with a note; then
    `MemoryLimitReached` ends the run, unless the stage is `optional` (nothing later needs its result).
    """

    interval: float = 0.01
    limit_bytes: int | None = None
    results: list[StageResult] = field(default_factory=list)
    stopped: str = ""
    _active: bool = False
    _peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = resident_bytes()
            self._peak = max(self._peak, rss)
            if self._active and self.limit_bytes and rss > self.limit_bytes and not self.stopped:
                self.stopped = f"stopped at {rss / 2**30:.1f} GiB (limit {self.limit_bytes / 2**30:g} GiB)"
                _thread.interrupt_main()

    @contextmanager
    def stage(self, name: str, note: str = "", optional: bool = False):
        """Measure the block as stage `name`; it may set `["note"]` of the dict it gets."""
        gc.collect()
        self._peak = resident_bytes()
        started, cpu = time.perf_counter(), time.process_time()
        info = {"note": note}
        self._active = True
        try:
            yield info
            note = info["note"]
        except KeyboardInterrupt:
            if not self.stopped:
                raise
            note = self.stopped
        finally:
            self._active = False
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            now = resident_bytes()
            self.results.append(StageResult(name, seconds, cpu, max(self._peak, now) / 2**30, now / 2**30, note))
        if self.stopped and not optional:
            raise MemoryLimitReached(self.stopped)
        self.stopped = ""

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


# ------------------------------------------------------------------------------------------- the stages

def cluster_fc_fusions(count: int, seed: int = 0) -> dict:
    """Cluster `fc_fusions(count)` in this process: clusters, compared pairs, CPU and wall seconds, peak RSS."""
    from abag.identity import seed_search
    from abag.identity.clustering import cluster_antigens

    antigens = fc_fusions(count, seed)
    compared, counts = [], seed_search._shared_counts

    def counting(*args):
        for block in counts(*args):
            compared.append(len(block[0]))
            yield block

    seed_search._shared_counts = counting
    recorder = StageRecorder()
    try:
        with recorder.stage("cluster"):
            clusters = cluster_antigens(antigens)
    finally:
        seed_search._shared_counts = counts
        recorder.close()
    [result] = recorder.results
    return {"antigens": count, "clusters": int(clusters.max()) + 1, "compared_pairs": int(sum(compared)),
            "all_pairs": count * (count - 1) // 2, "seconds": result.seconds, "cpu_seconds": result.cpu_seconds,
            "peak_gib": result.peak_gib}


def fc_table(results: list[dict]) -> str:
    lines = ["### Antigen clustering, antigens sharing one domain (`fc_fusions`)", "",
             "| antigens | clusters | pairs compared (per antigen) | all pairs | CPU s | wall s | peak RSS (GiB) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['antigens']:,} | {r['clusters']:,} | {r['compared_pairs']:,} "
              f"({r['compared_pairs'] / r['antigens']:.0f}) | {r['all_pairs']:,} | {r['cpu_seconds']:.1f} | "
              f"{r['seconds']:.1f} | {r['peak_gib']:.2f} |" for r in results]
    return "\n".join(lines) + "\n"


def shipped_model_config(frame: pd.DataFrame):
    """The ModelConfig `abag train --encoder tiny` builds for `frame`: the defaults, with the size rule of
    `abag.cli.train` for the defaults that number every chain (`abag.model.config.defaults_for_table`: ModelConfig's
    up to NUMBERING_MAX_CHAINS distinct antibody chains, the model before numbering above)."""
    from abag.model.config import ModelConfig, defaults_for_table
    from abag.numbering import distinct_chains

    return ModelConfig(antibody_encoder="tiny", antigen_encoder="tiny",
                       **defaults_for_table(distinct_chains(frame["heavy"], frame["light"])))


def run_stages(csv: Path, work: Path, recorder: StageRecorder) -> list[StageResult]:
    """The stages of `abag train --encoder tiny --epochs 1` (then `abag predict` on the same file), in order."""
    from abag.data import prepare_pairs, read_table
    from abag.inference import load_trained_model, predict_frame
    from abag.outputs import write_csv_atomic, write_json_atomic
    from abag.posthoc.intervals import PredictionSupport
    from abag.training.config import TrainConfig
    from abag.training.alongside import evaluation_groups
    from abag.training.finalize import calibrate_single_split, fit_correction, reload_best, store_support
    from abag.training.run import RunFolder, _prepare, _split, seed_everything

    stage = recorder.stage
    out = work / "run"
    config = TrainConfig(epochs=1, cache_dir=str(work / "cache"), progress=False, device="cpu")
    with stage("load (read_table)"):
        table = read_table(csv)
    with stage("validate (prepare_pairs)"):
        frame, _ = prepare_pairs(table, source=str(csv))
        del table
    model_config = shipped_model_config(frame)
    seed_everything(config.seed)
    with stage("split (antigen clusters)"):
        split = _split(frame, config, None, None)
    with stage("encode (model + embedding tables)", f"{frame['heavy'].nunique() + frame['light'].nunique():,} "
                                                    f"antibody chains"):
        run, model = _prepare(frame, split, model_config, config, None, None, _quiet, {})
    folder = RunFolder.prepare(out)
    with stage("row records + fingerprint"):
        state = _initial_state(frame, split, run, model, config)
    epoch, evaluation = _epoch_and_evaluation(stage, state, run, folder)
    with stage("evaluation (val + test, cluster bootstrap)"):
        reload_best(state, folder.best)
        report = evaluation(evaluation_groups(run))
    with stage("familiar-antigen correction (construct term, k-mer ridge on training residuals)"):
        support = PredictionSupport.from_training(frame.iloc[run.parts["train"]], None, "")
        model.familiar_correction = fit_correction(state, run, support, report["groups"][0][run.parts["train"]])
    with stage("baselines (mean, k-mer ridge)"):
        report["baselines"] = _baselines(run, report["groups"])
    with stage("intervals (calibration on val, references into best.pt/last.pt)", optional=True):
        calibrate_single_split(run, report["predictions"], state.best_epoch, support)
        store_support(support, [folder.best, folder.last], model.familiar_correction)
    with stage("write metrics + test_predictions.csv"):
        write_json_atomic(out / "metrics.json", {k: report[k] for k in ("val", "test", "baselines")})
        write_csv_atomic(out / "test_predictions.csv", report["test_predictions"])
    del run, model, state, report, frame, split, epoch
    gc.collect()
    predicted = None
    with stage("predict (checkpoint, every row, intervals + applicability)", optional=True):
        trained, _ = load_trained_model(folder.best, device="cpu")
        new, _ = prepare_pairs(read_table(csv), require_pkd=False)
        predicted = predict_frame(trained, new, cache_dir=work / "cache")
    if predicted is not None:
        with stage("write predictions.csv"):
            write_csv_atomic(work / "predictions.csv", predicted)
    return recorder.results


def _quiet(_: str) -> None:
    return None


def _initial_state(frame, split, run, model, config):
    """The TrainingState `abag.train` creates (run config with the fingerprint, the per-row split record)."""
    import dataclasses

    from abag.training.data_identity import RowRecord, data_fingerprint
    from abag.training.state import TrainingState

    run_config = {"model": dataclasses.asdict(run.model_config), "train": dataclasses.asdict(config),
                  "data_fingerprint": data_fingerprint(frame, None)}
    rows = RowRecord.from_frame(frame, None).with_split(split)
    return TrainingState.create(model, config, run.precision, run_config, rows.to_checkpoint())


def _epoch_and_evaluation(stage, state, run, folder):
    """Run the epoch and the checkpoint writes as stages; return what `finalize` evaluates, as a function."""
    from abag.evaluation.metrics import evaluate_predictions
    from abag.model.apply import predict_data, sigmoid
    from abag.model.losses import StableCombinedLoss
    from abag.training.loop import fit

    config = run.config
    criterion = StableCombinedLoss(config.mse_weight, config.class_weight, config.binder_threshold)
    saved = []
    with stage("epoch (train + validate)", f"{len(run.data['train']):,} training rows"):
        fit(state, run, criterion, lambda s, improved: saved.append(improved), _quiet, folder.last)
    with stage("checkpoints (last.pt at start, best.pt, last.pt)") as info:
        folder.save_start(state)
        for improved in saved:
            folder.save_epoch(state, improved)
        info["note"] = f"last.pt {folder.last.stat().st_size / 2**20:.0f} MB"

    def evaluation(groups):
        clusters, antibodies = groups
        report = {"groups": groups, "predictions": {}}
        for name in ("val", "test"):
            data, rows = run.data[name], run.parts[name]
            pkd, logits = predict_data(state.model, data, run.device, precision=run.precision)
            report["predictions"][name] = (pkd, sigmoid(logits))
            report[name] = evaluate_predictions(data.target.numpy(), pkd, sigmoid(logits),
                                                censored=data.censored.numpy(), seed=config.seed,
                                                groups=clusters[rows], antibody_groups=antibodies[rows])
            if name == "test":
                report["test_predictions"] = run.frame.iloc[rows].assign(pkd_pred=pkd, binder_prob=sigmoid(logits))
        return report

    return saved, evaluation


def _baselines(run, groups):
    from abag.evaluation.baselines import evaluate_baselines

    clusters, antibodies = groups
    train, test = run.parts["train"], run.parts["test"]
    return evaluate_baselines(run.frame.iloc[train], run.frame.iloc[test], seed=run.config.seed,
                              groups=clusters[test], antibody_groups=antibodies[test])


# ------------------------------------------------------------------------------------------- end to end

@dataclass
class CommandResult:
    """One CLI command run in its own wrapper process: exit code, wall and CPU seconds, peak RSS (GiB)."""

    command: str
    returncode: int
    seconds: float
    cpu_seconds: float
    peak_gib: float
    tail: str = ""
    stage_times: str = ""  # `abag train`'s own "stage times: …" line (abag.stage_times), when it prints one


# Runs one command and prints its numbers as JSON. It is a fresh, small interpreter, because a child's ru_maxrss
# starts at the RSS of the process it was forked from: forked from this script it would inherit this script's.
_WRAPPER = """
import json, os, subprocess, sys, time
limit, argv = int(sys.argv[1]), sys.argv[3:]
started, note = time.perf_counter(), ""
with open(sys.argv[2], "w") as stderr:
    process = subprocess.Popen(argv, stdout=stderr, stderr=stderr)
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{process.pid}/status") as lines:
                rss = next(int(l.split()[1]) * 1024 for l in lines if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            rss = 0
        if limit and rss > limit and not note:
            note = f"killed at {rss / 2**30:.1f} GiB (limit {limit / 2**30:g} GiB)"
            process.kill()
        time.sleep(0.1)
    process.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"returncode": process.returncode, "seconds": time.perf_counter() - started, "note": note,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_gib": usage.ru_maxrss / 2**20}))
"""


def run_command(label: str, argv: list[str], env: dict, limit_bytes: int | None = None) -> CommandResult:
    """Run `argv` in a small wrapper: its own peak RSS and CPU time (`os.wait4`); killed past `limit_bytes`."""
    with tempfile.TemporaryDirectory() as folder:
        stderr = Path(folder) / "stderr.txt"
        done = subprocess.run([sys.executable, "-c", _WRAPPER, str(limit_bytes or 0), str(stderr), *argv],
                              capture_output=True, text=True, env=env, check=True)
        numbers = json.loads(done.stdout)
        output = stderr.read_text(errors="replace")
    note, tail = numbers.pop("note"), output[-1500:]
    stages = [line for line in output.splitlines() if line.startswith("stage times: ")]
    return CommandResult(label, **numbers, tail=(tail + (f"\n{note}" if note else "")).strip(),
                         stage_times=stages[-1] if stages else "")


def run_end_to_end(csv: Path, work: Path, env: dict, limit_bytes: int | None) -> list[CommandResult]:
    """`abag train --encoder tiny --epochs 1` into a cold cache, then `abag predict` with the run's best.pt."""
    env = {**env, "ABAG_CACHE_DIR": str(work / "cli-cache")}
    out, cache = work / "cli-run", str(work / "cli-cache")
    commands = [["train", "--data", str(csv), "--out", str(out), "--encoder", "tiny", "--epochs", "1",
                 "--embedding-cache", cache, "--quiet"],
                ["predict", "--checkpoint", str(out / "checkpoints" / "best.pt"), "--data", str(csv),
                 "--out", str(work / "cli-predictions.csv"), "--embedding-cache", cache, "--quiet"]]
    results = []
    for words in commands:
        results.append(run_command(" ".join(["abag", *words]), [sys.executable, "-m", "abag", *words], env,
                                   limit_bytes))
        if results[-1].returncode != 0:
            break
    return results


# ------------------------------------------------------------------------------------------- report

def markdown_table(size: dict) -> str:
    """The stage table and the end-to-end lines of one size."""
    lines = [f"### {size['mix']}", "",
             f"CSV {size['csv_mb']:.0f} MB, generated in {size['generate_s']:.0f} s; torch threads: "
             f"{size['threads']}; {size['machine']} (at the end)", "",
             "| stage | wall s | CPU s | peak RSS during stage (GiB) | RSS after stage (GiB) | note |",
             "|---|---:|---:|---:|---:|---|"]
    for s in size["stages"]:
        lines.append(f"| {s['name']} | {s['seconds']:.1f} | {s['cpu_seconds']:.1f} | {s['peak_gib']:.2f} | "
                     f"{s['after_gib']:.2f} | {s['note']} |")
    wall, cpu = (sum(s[key] for s in size["stages"]) for key in ("seconds", "cpu_seconds"))
    peak = max(s["peak_gib"] for s in size["stages"])
    lines.append(f"| **all stages** | **{wall:.1f}** | **{cpu:.1f}** | **{peak:.2f}** | | |")
    lines += ["", "| end to end (own process) | exit | wall s | CPU s | peak RSS (GiB) | note |",
              "|---|---:|---:|---:|---:|---|"]
    for c in size["end_to_end"]:
        command = c["command"].replace(str(size["folder"]), "DIR")
        note = c["tail"].splitlines()[-1][:100] if c["returncode"] != 0 and c["tail"] else ""
        lines.append(f"| `{command}` | {c['returncode']} | {c['seconds']:.1f} | {c['cpu_seconds']:.1f} | "
                     f"{c['peak_gib']:.2f} | {note} |")
    lines += [f"\n`{c['command'].replace(str(size['folder']), 'DIR').split(' --')[0]}` {c['stage_times']}"
              for c in size["end_to_end"] if c.get("stage_times")]
    return "\n".join(lines) + "\n"


def measure_size(rows: int, work: Path, seed: int, end_to_end: bool, threads: int | None, limit_gib: float) -> dict:
    """Generate (once per size and seed), then the in-process stages and the CLI commands, each in a new process.

    `threads` sets OMP_NUM_THREADS (torch's intra-op threads) for both; None leaves torch's default.
    """
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    mix = SyntheticMix.scaled(rows, seed)
    folder = work / f"rows{rows}-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "pairs.csv"
    started = time.perf_counter()
    if not csv.exists():  # written beside, then renamed: an interrupted run leaves no half file behind
        synthetic_pairs(mix).to_csv(folder / "pairs.partial.csv", index=False)
        (folder / "pairs.partial.csv").rename(csv)
        gc.collect()
    generate_s = time.perf_counter() - started
    for stale in ("run", "cache", "cli-run", "cli-cache"):
        subprocess.run(["rm", "-rf", str(folder / stale)], check=True)
    stages_json = folder / "stages.json"
    _self(["stages", "--csv", str(csv), "--work", str(folder), "--json", str(stages_json),
           "--limit-gib", str(limit_gib)], env)
    limit = int(limit_gib * 2**30)
    commands = [asdict(c) for c in run_end_to_end(csv, folder, env, limit)] if end_to_end else []
    for c in commands:
        if c["returncode"] != 0:
            print(f"{c['command']} failed:\n{c['tail']}", file=sys.stderr)
    return {"rows": rows, "mix": mix.describe(), "csv_mb": csv.stat().st_size / 2**20, "generate_s": generate_s,
            "machine": machine(), "threads": threads or "torch default", "folder": str(folder),
            "stages": json.loads(stages_json.read_text()), "end_to_end": commands}


def _self(args: list[str], env: dict) -> None:
    subprocess.run([sys.executable, str(HERE), *args], check=True, env=env)


# ------------------------------------------------------------------------------------------- command line

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode")
    stages = sub.add_parser("stages", help="(internal) run the stages on one CSV, write their numbers as JSON")
    stages.add_argument("--csv", type=Path, required=True)
    stages.add_argument("--work", type=Path, required=True)
    stages.add_argument("--json", type=Path, required=True)
    stages.add_argument("--limit-gib", type=float, default=12.0)
    fc = sub.add_parser("fc", help="(internal) cluster N shared-domain antigens, write the numbers as JSON")
    fc.add_argument("--count", type=int, required=True)
    fc.add_argument("--seed", type=int, default=0)
    fc.add_argument("--json", type=Path, required=True)
    parser.add_argument("--rows", type=int, nargs="+",
                        help="pair-table sizes (default 100000 500000, none when only --fc-fusions is given)")
    parser.add_argument("--fc-fusions", type=int, nargs="+", default=[], metavar="N",
                        help="also cluster N antigens that share one domain (see fc_fusions)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="folder for the CSVs, caches and runs (default: a temporary one)")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the abag train / abag predict commands")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for every measured process (default: torch's)")
    parser.add_argument("--limit-gib", type=float, default=12.0,
                        help="stop a stage or kill a command whose resident memory passes this (default 12 GiB)")
    parser.add_argument("--out", type=Path, help="write the markdown tables here")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.mode == "stages":
        recorder = StageRecorder(limit_bytes=int(args.limit_gib * 2**30))
        try:
            run_stages(args.csv, args.work, recorder)
        except MemoryLimitReached as exc:
            print(f"stages stopped: {exc}", file=sys.stderr)
        recorder.close()
        args.json.write_text(json.dumps([asdict(s) for s in recorder.results], indent=2))
        return []
    if args.mode == "fc":
        args.json.write_text(json.dumps(cluster_fc_fusions(args.count, args.seed)))
        return []
    rows = args.rows if args.rows is not None else ([] if args.fc_fusions else [100_000, 500_000])
    work = args.work or Path(tempfile.mkdtemp(prefix="abag-scale-"))
    sizes, fc = [], []
    for n in rows:
        sizes.append(measure_size(n, work, args.seed, not args.no_end_to_end, args.threads, args.limit_gib))
        print(markdown_table(sizes[-1]), flush=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    for count in args.fc_fusions:  # each in a fresh process: its own peak RSS
        work.mkdir(parents=True, exist_ok=True)
        numbers = work / f"fc{count}.json"
        _self(["fc", "--count", str(count), "--seed", str(args.seed), "--json", str(numbers)], env)
        fc.append(json.loads(numbers.read_text()))
        print(fc_table(fc[-1:]), flush=True)
    text = f"machine: {machine()}\n\n" + "\n".join(markdown_table(s) for s in sizes) + (fc_table(fc) if fc else "")
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(sizes + [{"fc_fusions": r} for r in fc], indent=2))
    return sizes + [{"fc_fusions": r} for r in fc]


if __name__ == "__main__":
    main()
