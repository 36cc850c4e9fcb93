"""One command that checks abag's GPU path end to end and prints one table (issue "The Colab path, proven").

On a CUDA machine it trains three epochs with the `tiny` encoder and with a randomly initialised
ESM-2-650M-shaped encoder (33 layers, hidden 1280, 20 heads; built locally, nothing is downloaded), once in
bf16 and once in fp16 with a GradScaler, whatever the GPU itself would choose, and checks for each:

- train:      3 epochs, finite losses, the head and the encoder really ran in that precision (autocast
              seen by forward hooks) and the GradScaler was on exactly for fp16;
- cache:      embeddings written to and read back from the on-disk cache (length-sorted token-budget
              batches) agree with the encoder run batch by batch in training order (the uncached path),
              within `TOLERANCE` for the precision; the disk round trip itself is exact;
- resume:     2 epochs, then `resume=True` to 3, ends with bit-identical weights to 3 epochs straight,
              under `torch.use_deterministic_algorithms(True)` and CUBLAS_WORKSPACE_CONFIG=:4096:8;
- throughput: bench_gpu_encoder.py with the ESM-2-650M shape (tokens/s, MFU against the dense peak,
              peak memory); below 30% MFU it warns.

    python bench/gpu_check.py --out gpu_check.md     # CUDA: about 3 minutes on an H200
    python bench/gpu_check.py --tiny --out check.md  # CPU (automatic without CUDA): tiny sizes, fp32 only

Without CUDA everything runs at a tiny size in fp32 and the bf16/fp16 rows say they were skipped. The exit
code is 1 when any check fails. abag has no setting that forces a precision, so `forced_precision` replaces
`choose_precision` in every abag module for the duration of a check.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before torch starts cuBLAS: deterministic GEMMs

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import math
import pkgutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_gpu_encoder, also when imported by tests
if importlib.util.find_spec("abag") is None:  # a checkout without `pip install -e .` (e.g. a bare GPU machine)
    sys.path.insert(1, str(ROOT))

import bench_gpu_encoder  # noqa: E402

EXAMPLE = ROOT / "data" / "example_pairs.csv"
# Largest relative L2 difference (per chain) allowed between cached and uncached pooled embeddings. The two
# paths batch chains differently (padding, GEMM shapes), so low precision differs by rounding; fp32 by ~1e-6.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 4e-2}
MFU_GOAL = 0.30
TINY_LABEL, ESM_LABEL = "tiny", "ESM-2 650M shape"


@dataclass
class CheckSettings:
    """What to run: device, sizes, precisions and where the results go."""

    device: torch.device
    tiny: bool
    precisions: list[str]
    pairs: int
    epochs: int = 3
    n_chains: int = 2048
    head_steps: int = 300
    peak_tflops: float | None = None
    out: Path | None = None
    json_path: Path | None = None
    log_path: Path | None = None


@dataclass
class CheckRow:
    """One line of the results table."""

    check: str
    encoder: str
    precision: str
    result: str                      # pass, FAIL, warn, skip or info
    detail: str
    tokens_per_s: float | None = None
    mfu: float | None = None
    peak_memory_gib: float | None = None
    seconds: float | None = None


# ----------------------------------------------------------------------------------------- precision control

def _abag_modules() -> list:
    """Every abag module, imported now, so that none binds `choose_precision` while it is replaced."""
    import abag

    for info in pkgutil.walk_packages(abag.__path__, "abag."):
        if not info.name.endswith("__main__"):
            with contextlib.suppress(ImportError):
                importlib.import_module(info.name)
    return [m for name, m in sorted(sys.modules.items())
            if m is not None and (name == "abag" or name.startswith("abag."))]


@contextlib.contextmanager
def forced_precision(name: str, encoders: tuple = ()):
    """Within the block, every `choose_precision(device, mixed_precision)` in abag returns the precision
    called `name` (fp32 when mixed precision is off), on any device; `encoders` that can be pinned to a
    precision (`use_precision`) are pinned to it, and unpinned afterwards."""
    from abag import policy

    precision = {"fp32": policy.FP32, "bf16": policy.BF16, "fp16": policy.FP16}[name]
    original = policy.choose_precision

    def forced(device, mixed_precision: bool = True, requested: str = "auto"):
        return precision if mixed_precision else policy.FP32

    patched = [m for m in _abag_modules() if getattr(m, "choose_precision", None) is original]
    pinnable = [encoder for encoder in encoders if hasattr(encoder, "use_precision")]
    for module in patched:
        module.choose_precision = forced
    for encoder in pinnable:
        encoder.use_precision(precision)
    try:
        yield precision
    finally:
        for module in patched:
            module.choose_precision = original
        for encoder in pinnable:
            encoder.use_precision(None)


def autocast_name(device_type: str) -> str:
    """The precision autocast computes in right now on `device_type`."""
    if not torch.is_autocast_enabled(device_type):
        return "fp32"
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(torch.get_autocast_dtype(device_type), "other")


class PrecisionProbe:
    """Records the autocast precision in force whenever a module with weights of its own runs: in an encoder
    under test, or in any other module in training mode (the head being trained)."""

    def __init__(self, encoders: list[torch.nn.Module]):
        self.encoder_modules = {id(m) for encoder in encoders for m in encoder.modules()}
        self.encoder_seen: set[str] = set()
        self.head_seen: set[str] = set()
        self._handle = None

    def _hook(self, module: torch.nn.Module, _args) -> None:
        weight = next(module.parameters(recurse=False), None)
        if weight is None:
            return
        name = autocast_name(weight.device.type)
        if id(module) in self.encoder_modules:
            self.encoder_seen.add(name)
        elif module.training:
            self.head_seen.add(name)

    def __enter__(self) -> "PrecisionProbe":
        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()


@contextlib.contextmanager
def deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


# ----------------------------------------------------------------------------------------------- helpers

def load_frame(pairs: int):
    """The repository's example pairs, cut to about `pairs` rows spread evenly over its antigens."""
    import abag

    frame, _ = abag.load_pairs(EXAMPLE)
    per_antigen = math.ceil(pairs / frame["antigen"].nunique())
    return frame.groupby("antigen", sort=False).head(per_antigen).reset_index(drop=True)


def distinct_chains(frame) -> list[str]:
    chains = list(frame["heavy"]) + [c for c in frame["light"] if c]
    chains += [c for antigen in frame["antigen"] for c in antigen.split("|")]
    return list(dict.fromkeys(chains))


def build_encoders(settings: CheckSettings) -> dict:
    """{table label: encoder}: `tiny`, and the ESM-2-650M shape with random weights (a tiny shape with --tiny).
    Each encoder's `name` is what its ModelConfig refers to."""
    from abag.encoding.loader import load_tiny_encoder

    shape = bench_gpu_encoder.TINY if settings.tiny else bench_gpu_encoder.ESM2_650M
    esm = bench_gpu_encoder.build_encoder(shape, settings.device)
    return {TINY_LABEL: load_tiny_encoder().to(settings.device), esm_label(settings): esm}


def esm_label(settings: CheckSettings) -> str:
    return ESM_LABEL + (" (tiny)" if settings.tiny else "")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def guarded(row: CheckRow, run) -> CheckRow:
    """Run one check; an exception becomes a FAIL row naming it, so the other checks still run."""
    started = time.perf_counter()
    try:
        row = run()
    except Exception as exc:  # noqa: BLE001 - a check that crashes is a failed check, reported in the table
        row.result, row.detail = "FAIL", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    row.seconds = time.perf_counter() - started
    print(f"gpu_check: {row.check:10s} {row.encoder:22s} {row.precision:5s} {row.result:4s} "
          f"({row.seconds:.1f}s) {row.detail}", file=sys.stderr, flush=True)
    return row


# ----------------------------------------------------------------------------------------------- checks

def train_run(frame, folder: Path, encoder, settings: CheckSettings, cache: Path, epochs: int, log: list,
              resume: bool = False):
    import abag

    model_config = abag.ModelConfig(antibody_encoder=encoder.name, antigen_encoder=encoder.name)
    train_config = abag.TrainConfig(epochs=epochs, device=str(settings.device), cache_dir=str(cache),
                                    progress=False, seed=0)
    return abag.train(frame, folder, model_config, train_config, resume=resume,
                      encoders={encoder.name: encoder}, log=log.append)


def check_training(frame, label: str, encoder, precision: str, settings: CheckSettings, work: Path,
                   log: list) -> list[CheckRow]:
    """3 epochs straight, and 2 + resume to 3, in one precision: the train row and the resume row."""
    import abag

    cache = work / f"cache-{precision}"  # one cache per precision, whether or not the cache key records it
    train_row = CheckRow("train", label, precision, "FAIL", "")
    resume_row = CheckRow("resume", label, precision, "FAIL", "")

    def straight() -> CheckRow:
        reset_peak(settings.device)
        with forced_precision(precision, (encoder,)) as chosen, deterministic(), PrecisionProbe([encoder]) as probe:
            result = train_run(frame, work / f"{label}-{precision}-straight", encoder, settings, cache,
                               settings.epochs, log)
        last = abag.checkpoint.load_checkpoint(result.out_dir / "checkpoints" / "last.pt")
        scaler = last.get("scaler_state_dict") or {}
        history = result.history
        losses = history[["train_loss", "val_loss"]].to_numpy(dtype=float)
        problems = []
        if len(history) != settings.epochs:
            problems.append(f"{len(history)} epochs, not {settings.epochs}")
        if not np.isfinite(losses).all():
            problems.append("non-finite loss")
        if probe.head_seen != {precision}:
            problems.append(f"head ran in {sorted(probe.head_seen)}")
        if probe.encoder_seen != {precision}:
            problems.append(f"encoder ran in {sorted(probe.encoder_seen)}")
        if bool(scaler) != chosen.needs_scaler:
            problems.append(f"GradScaler {'on' if scaler else 'off'} in {precision}")
        scale = f"scaler scale {scaler['scale']:g}" if scaler.get("scale") is not None else "no scaler"
        detail = (f"{len(history)} epochs; val loss {losses[0, 1]:.3f} → {losses[-1, 1]:.3f}; head and encoder "
                  f"in {precision}; {scale}")
        return CheckRow("train", label, precision, "FAIL" if problems else "pass",
                        "; ".join(problems) if problems else detail, peak_memory_gib=peak_gib(settings.device))

    def resumed() -> CheckRow:
        folder = work / f"{label}-{precision}-resumed"
        with forced_precision(precision, (encoder,)), deterministic():
            train_run(frame, folder, encoder, settings, cache, settings.epochs - 1, log)
            train_run(frame, folder, encoder, settings, cache, settings.epochs, log, resume=True)
        return compare_weights(work / f"{label}-{precision}-straight", folder, resume_row)

    return [guarded(train_row, straight), guarded(resume_row, resumed)]


def compare_weights(straight: Path, resumed: Path, row: CheckRow) -> CheckRow:
    """Resume row: the last checkpoints of both runs hold the same epoch and bit-identical weights."""
    import abag

    a = abag.checkpoint.load_checkpoint(straight / "checkpoints" / "last.pt")
    b = abag.checkpoint.load_checkpoint(resumed / "checkpoints" / "last.pt")
    wa, wb = a["model_state_dict"], b["model_state_dict"]
    if set(wa) != set(wb) or a["epoch"] != b["epoch"]:
        row.result, row.detail = "FAIL", f"different checkpoints (epochs {a['epoch']} and {b['epoch']})"
        return row
    worst = max(float((wa[k].double() - wb[k].double()).abs().max()) if wa[k].numel() else 0.0 for k in wa)
    identical = all(torch.equal(wa[k], wb[k]) for k in wa)
    row.result = "pass" if identical else "FAIL"
    row.detail = (f"epoch {a['epoch']}: {len(wa)} tensors " + ("bit-identical" if identical else
                  f"differ (max |Δ| {worst:.3g})") + "; deterministic algorithms on")
    return row


def check_cache(label: str, encoder, chains: list[str], precision: str, settings: CheckSettings,
                work: Path) -> CheckRow:
    """Cached embeddings (written, then read back by a fresh cache) against the encoder run batch by batch."""
    from abag.encoding.embedding_cache import EmbeddingCache

    row = CheckRow("cache", label, precision, "FAIL", "")

    def run() -> CheckRow:
        folder = work / f"cache-check-{label}-{precision}"
        reset_peak(settings.device)
        with forced_precision(precision, (encoder,)):
            cache = EmbeddingCache(encoder, folder, token_budget=8192, progress=False)
            cached = cache.embed(chains)
            again = EmbeddingCache(encoder, folder, token_budget=8192, progress=False)
            reread = again.embed(chains)
            uncached = np.concatenate([encoder(chains[i:i + 16]).float().cpu().numpy()
                                       for i in range(0, len(chains), 16)])
        relative = np.linalg.norm(cached - uncached, axis=1) / np.maximum(np.linalg.norm(uncached, axis=1), 1e-12)
        stats = cache.stats
        seconds = getattr(stats, "encode_seconds", 0.0)
        row.tokens_per_s = stats.tokens / seconds if seconds and getattr(stats, "tokens", 0) else None
        row.peak_memory_gib = peak_gib(settings.device)
        problems = []
        if again.stats.encoded:
            problems.append(f"a fresh cache re-encoded {again.stats.encoded} chains")
        if not np.array_equal(cached, reread):
            problems.append("disk round trip changed the numbers")
        if not relative.max() <= TOLERANCE[precision]:
            problems.append(f"max relative difference {relative.max():.2e} > {TOLERANCE[precision]:g}")
        row.result = "FAIL" if problems else "pass"
        row.detail = "; ".join(problems) if problems else (
            f"{len(chains)} chains: max relative L2 difference {relative.max():.2e} ≤ {TOLERANCE[precision]:g} "
            f"(mean {relative.mean():.1e}); read back exactly")
        return row

    return guarded(row, run)


def check_throughput(label: str, precision: str, settings: CheckSettings, work: Path, log: list) -> CheckRow:
    """bench_gpu_encoder.py in this precision: tokens/s, MFU and peak memory of the ESM-2-650M shape."""
    row = CheckRow("throughput", label, precision, "FAIL", "")

    def run() -> CheckRow:
        path = work / f"throughput-{precision}.json"
        argv = ["--device", str(settings.device), "--n-chains", str(settings.n_chains),
                "--head-steps", str(settings.head_steps), "--json", str(path)]
        argv += ["--tiny"] if settings.tiny else []
        argv += ["--peak-tflops", str(settings.peak_tflops)] if settings.peak_tflops else []
        printed = io.StringIO()
        with forced_precision(precision), contextlib.redirect_stdout(printed):
            result = bench_gpu_encoder.main(argv)
        log.extend(printed.getvalue().splitlines())
        row.tokens_per_s, row.mfu = result["tokens_per_s"], result["mfu"]
        row.peak_memory_gib = result.get("peak_memory_gib")
        extrapolation = result["extrapolation"]
        row.detail = (f"{result['chains']} chains, {result['tokens']:,} tokens in {result['seconds']:.2f}s on "
                      f"{result['device_name']}; 160k pairs: encode {extrapolation['encode_minutes']:.1f} min, "
                      f"head epoch {extrapolation['head_epoch_seconds']:.1f}s")
        if result["precision"] != precision:
            row.result, row.detail = "FAIL", f"the bench ran in {result['precision']}, not {precision}"
        elif settings.device.type != "cuda":
            row.result = "pass"
            row.detail += "; MFU only on CUDA" if row.mfu is None else ""
        elif row.mfu is None:
            row.result, row.detail = "warn", row.detail + "; MFU n/a: GPU not in the peak table (--peak-tflops)"
        else:
            row.result = "pass" if row.mfu >= MFU_GOAL else "warn"
            row.detail += f"; MFU goal ≥ {MFU_GOAL:.0%} {'met' if row.mfu >= MFU_GOAL else 'NOT met'}"
        return row

    return guarded(row, run)


# ----------------------------------------------------------------------------------------------- report

def policy_row(device: torch.device) -> CheckRow:
    from abag.policy import choose_precision

    chosen = choose_precision(device).name
    if device.type != "cuda":
        return CheckRow("policy", "-", chosen, "info", "CPU: abag trains in fp32")
    capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return CheckRow("policy", "-", chosen, "info", f"{torch.cuda.get_device_name(device)} (compute capability "
                    f"{capability}): abag would choose {chosen}; the checks below force each precision")


def markdown_table(rows: list[CheckRow]) -> str:
    header = ["check", "encoder", "precision", "result", "detail", "tokens/s", "MFU", "peak memory", "seconds"]

    def cells(row: CheckRow) -> list[str]:
        return [row.check, row.encoder, row.precision, row.result, row.detail.replace("|", "/"),
                "n/a" if row.tokens_per_s is None else f"{row.tokens_per_s:,.0f}",
                "n/a" if row.mfu is None else f"{row.mfu:.1%}",
                "n/a" if row.peak_memory_gib is None else f"{row.peak_memory_gib:.2f} GiB",
                "" if row.seconds is None else f"{row.seconds:.1f}"]

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells(row)) + " |" for row in rows]
    return "\n".join(lines)


def machine_line(device: torch.device) -> str:
    import abag

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return f"abag {abag.__version__}, torch {torch.__version__}, device {device} ({name})"


# ----------------------------------------------------------------------------------------------- main

def parse_args(argv=None) -> CheckSettings:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (automatic without CUDA)")
    parser.add_argument("--precisions", help="comma-separated, from fp32,bf16,fp16 (default: bf16,fp16 on "
                        "CUDA, fp32 on CPU)")
    parser.add_argument("--pairs", type=int, help="training pairs from data/example_pairs.csv (default 240; "
                        "tiny 60)")
    parser.add_argument("--n-chains", type=int, default=2048, help="chains in the throughput bench")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not in the table")
    parser.add_argument("--out", type=Path, help="write the results table (markdown) here")
    parser.add_argument("--json", type=Path, dest="json_path", help="write the rows as JSON here")
    parser.add_argument("--log", type=Path, dest="log_path", help="write the training and bench output here")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu") if args.device == "auto" else torch.device(args.device)
    tiny = args.tiny or device.type != "cuda"
    precisions = args.precisions.split(",") if args.precisions else (
        ["bf16", "fp16"] if device.type == "cuda" else ["fp32"])
    unknown = [p for p in precisions if p not in TOLERANCE]
    if unknown:
        parser.error(f"unknown precision {unknown[0]!r}; choose from {', '.join(TOLERANCE)}")
    if device.type != "cuda" and set(precisions) - {"fp32"}:
        parser.error("bf16 and fp16 are checked on CUDA only (this device is the CPU)")
    return CheckSettings(device, tiny, precisions, args.pairs or (60 if tiny else 240),
                         n_chains=min(args.n_chains, 48) if tiny else args.n_chains,
                         head_steps=50 if tiny else 300, peak_tflops=args.peak_tflops, out=args.out,
                         json_path=args.json_path, log_path=args.log_path)


def encoder_checks(settings: CheckSettings, work: Path, log: list) -> list[CheckRow]:
    """train, resume and cache rows for every precision and both encoders."""
    frame = load_frame(settings.pairs)
    chains = distinct_chains(frame)
    rows = []
    for label, encoder in build_encoders(settings).items():
        for precision in settings.precisions:
            rows += check_training(frame, label, encoder, precision, settings, work, log)
            rows.append(check_cache(label, encoder, chains, precision, settings, work))
    return rows


def run_checks(settings: CheckSettings, work: Path, log: list) -> list[CheckRow]:
    rows = [policy_row(settings.device), *encoder_checks(settings, work, log)]
    if settings.device.type != "cuda":
        for precision in ("bf16", "fp16"):
            rows.append(CheckRow("all", "all", precision, "skip", "needs CUDA (autocast on a GPU and, for fp16, "
                                 "the GradScaler)"))
    # Last, once the encoders above are freed: the bench builds its own encoder and turns TF32 on.
    for precision in settings.precisions:
        rows.append(check_throughput(esm_label(settings), precision, settings, work, log))
    return rows


def main(argv=None) -> int:
    settings = parse_args(argv)
    started = time.perf_counter()
    log: list[str] = []
    with tempfile.TemporaryDirectory(prefix="abag-gpu-check-") as work:
        rows = run_checks(settings, Path(work), log)
    failed = [row for row in rows if row.result == "FAIL"]
    summary = (f"{len(rows)} rows: {sum(r.result == 'pass' for r in rows)} pass, {len(failed)} FAIL, "
               f"{sum(r.result == 'warn' for r in rows)} warn, {sum(r.result == 'skip' for r in rows)} skip "
               f"in {time.perf_counter() - started:.0f}s")
    text = (f"# abag GPU check\n\n{machine_line(settings.device)}; {settings.pairs} training pairs, "
            f"{settings.epochs} epochs{' (tiny sizes)' if settings.tiny else ''}\n\n{markdown_table(rows)}\n\n"
            f"{summary}\n")
    print(text)
    if settings.out:
        settings.out.write_text(text)
    if settings.json_path:
        settings.json_path.write_text(json.dumps({"summary": summary, "device": str(settings.device),
                                                  "rows": [asdict(r) for r in rows]}, indent=2))
    if settings.log_path:
        settings.log_path.write_text("\n".join(log) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
