"""GPU encoding throughput and model-FLOPs utilisation (MFU) of an ESM-2-650M-shaped encoder (issue 6).

Builds a randomly initialised encoder with ESM-2 650M's shape (33 layers, hidden 1280, 20 heads,
intermediate 5120, rotary positions; nothing is downloaded), wraps it exactly like `abag` wraps a hub
model (`SequenceEncoder`: residue tokenizer, windows of <= 1022 residues, length-sorted token-budget
batches, `torch.inference_mode()`, the autocast of `abag.policy.choose_precision` (bf16 on Ampere and newer,
fp16 on a T4; `bench/gpu_check.py` forces either), PyTorch scaled-dot-product attention) and encodes chains
whose lengths are drawn from the real SAAINT-DB + Phillips chains.

MFU = useful model FLOPs per second / the GPU's dense bf16 peak. Useful FLOPs count real tokens only:
2 × (non-embedding parameters) per token, plus attention 4 × layers × hidden × L² per chain of L tokens
(QKᵀ and AV). Padding is reported separately. Then it extrapolates what the measured rate means for a
160k-pair v2.7 run: encoding every distinct chain once (minutes) and an epoch of head training on the
cached embeddings (measured here with the real head, loss and optimizer: seconds).

    python bench/bench_gpu_encoder.py                      # on a CUDA machine (goal: >= 30% of bf16 peak)
    python bench/bench_gpu_encoder.py --peak-tflops 989    # when the GPU is not in the table below
    python bench/bench_gpu_encoder.py --tiny               # CPU, tiny shape: checks the script (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("ABAG_DATA_DIR") or ROOT.parent / "shared" / "data")
AMINO = np.array(list("ACDEFGHIKLMNPQRSTVWY"))

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendor data sheets; fp16 where the GPU
# has no bf16 (T4, V100). Matched in order against torch.cuda.get_device_name().
PEAK_TFLOPS = (
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("A10G", 70.0), ("A10", 125.0), ("T4", 65.0), ("V100", 125.0),
)
ESM2_650M = dict(num_hidden_layers=33, hidden_size=1280, num_attention_heads=20, intermediate_size=5120)
TINY = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="real chains to draw lengths from")
    parser.add_argument("--n-chains", type=int, default=4096, help="chains encoded in the timed pass")
    parser.add_argument("--token-budget", type=int, default=65536, help="padded tokens per encoder batch")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not in the table")
    parser.add_argument("--pairs", type=int, default=160_000, help="size of the run to extrapolate to")
    parser.add_argument("--chains-per-pair", type=float, default=None,
                        help="distinct chains per pair (default: measured on SAAINT-DB, else 3)")
    parser.add_argument("--head-steps", type=int, default=2000, help="head training steps timed")
    parser.add_argument("--bf16-weights", action="store_true",
                        help="cast the weights to bf16 too (default: fp32 weights under bf16 autocast, as abag runs)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the encoder (experimental)")
    parser.add_argument("--tiny", action="store_true", help="tiny shape, 48 chains, CPU unless --device says")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.tiny:
        args.n_chains, args.token_budget, args.head_steps = min(args.n_chains, 48), min(args.token_budget, 4096), 50
    return args


def real_chains(data_dir: Path) -> tuple[list[str], float | None]:
    """Distinct chains (antibody chains and antigen chains) of SAAINT-DB, the most varied real set, and
    its distinct chains per pair; the Phillips landscapes (one length per chain type) only as a fallback."""
    import pandas as pd

    for name in ("saaintdb_dev.csv", "phillips2021_cr9114_cr6261.csv.gz"):
        path = data_dir / name
        if path.is_file():
            frame = pd.read_csv(path, keep_default_na=False)
            found = set(frame["heavy"]) | {c for c in frame["light"] if c} | \
                {c for a in frame["antigen"] for c in a.split("|")}
            return sorted(found), len(found) / len(frame)
    return [], None


def build_encoder(shape: dict, device, max_residues: int = 1022):
    import torch
    from transformers import EsmConfig, EsmModel, EsmTokenizer

    from abag.encoding.loader import ESM_VOCAB
    from abag.encoding.sequence_encoder import ResidueTokenizer, SequenceEncoder

    tokenizer = EsmTokenizer(vocab_file=str(ESM_VOCAB))
    config = EsmConfig(vocab_size=len(tokenizer), max_position_embeddings=max_residues + 4,
                       position_embedding_type="rotary", pad_token_id=tokenizer.pad_token_id,
                       mask_token_id=tokenizer.mask_token_id, token_dropout=True, layer_norm_eps=1e-5,
                       emb_layer_norm_before=False, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                       attn_implementation="sdpa", **shape)
    torch.manual_seed(0)
    with torch.device(device):
        model = EsmModel(config, add_pooling_layer=False)
    model.eval()
    return SequenceEncoder("esm2-650M-shaped-random", model, ResidueTokenizer.from_hf(tokenizer, False),
                           max_residues, revision="random")


def peak_for(device, override: float | None) -> tuple[float | None, str]:
    import torch

    if override:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "no peak for CPU (pass --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops, f"table entry '{key}' for {name}"
    return None, f"{name} is not in the table (pass --peak-tflops)"


def flops(encoder, token_lengths: list[int], batches: list[list[int]] | None = None) -> float:
    """Forward FLOPs: 2 × non-embedding params per token + 4 × layers × hidden × L² attention per sequence.

    With `batches`, counts what the GPU computes on padded batches (rows × longest row) instead.
    """
    config = encoder.model.config
    embedding = sum(p.numel() for n, p in encoder.model.named_parameters() if "embeddings" in n)
    dense = sum(p.numel() for p in encoder.model.parameters()) - embedding
    per_layer_attention = 4 * config.hidden_size * config.num_hidden_layers
    if batches is None:
        return float(sum(2 * dense * n + per_layer_attention * n * n for n in token_lengths))
    total = 0.0
    for batch in batches:
        longest = max(token_lengths[i] for i in batch)
        total += len(batch) * (2 * dense * longest + per_layer_attention * longest * longest)
    return total


def time_head_epoch(d_antibody: int, d_antigen: int, rows: int, steps: int, device) -> float:
    """Seconds per epoch of head training over `rows` cached pairs (batch 16, accumulation 8): the default network
    (`d_antibody`: an antibody chain's vector width under the default pooling), without the wide part (fitted before
    training; in the head a per-row constant added to the output, then an elementwise bound: nothing a timing of
    the head sees)."""
    import torch

    from abag.encoding.batches import PairEmbeddings
    from abag.model.config import ModelConfig
    from abag.model.losses import StableCombinedLoss
    from abag.model.network import AffinityHead
    from abag.policy import choose_precision

    n = 4096
    rng = np.random.default_rng(0)
    config = ModelConfig(wide="none")
    antibody = rng.standard_normal((n, d_antibody), dtype=np.float32)
    antigen = rng.standard_normal((n, d_antigen), dtype=np.float32)
    head = AffinityHead(d_antibody, d_antigen, config).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=1e-5)
    loss_fn = StableCombinedLoss()
    target = torch.from_numpy(rng.uniform(5, 11, n).astype(np.float32))
    dtype = choose_precision(device).autocast_dtype

    def step(i: int) -> None:
        rows_ = rng.integers(0, n, 16)
        batch = PairEmbeddings(torch.from_numpy(antibody[rows_]), torch.from_numpy(antibody[rows_[::-1].copy()]),
                               torch.ones(16, dtype=torch.bool), torch.from_numpy(antigen[rows_])).to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            pkd, logits = head(batch)
        loss = loss_fn(pkd, target[rows_].to(device), logits)
        (loss / 8).backward()
        if i % 8 == 7:
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # the training loop reads the loss every step

    for i in range(16):
        step(i)
    started = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / steps * (rows / 16)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    from abag.encoding.batching import padding_fraction, token_budget_batches
    from abag.model.config import ModelConfig
    from abag.policy import choose_precision

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    shape = TINY if args.tiny else ESM2_650M
    rng = np.random.default_rng(0)
    pool, per_pair = real_chains(args.data_dir)
    lengths = [len(c) for c in pool] if pool else list(rng.integers(100, 500, 1000))
    drawn = rng.choice(lengths, args.n_chains)
    chains = ["".join(rng.choice(AMINO, int(n))) for n in drawn]
    started = time.perf_counter()
    encoder = build_encoder(shape, device)
    build_seconds = time.perf_counter() - started
    if args.bf16_weights and device.type == "cuda":
        encoder.model.to(torch.bfloat16)
    if args.compile:
        encoder.model = torch.compile(encoder.model, dynamic=True)
    params = sum(p.numel() for p in encoder.model.parameters())
    token_lengths = encoder.token_lengths(chains)
    plan = token_budget_batches(token_lengths, args.token_budget)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    precision = choose_precision(device).name
    print(f"bench_gpu_encoder: {params / 1e6:.0f}M-parameter ESM-2-shaped encoder {shape} (random, built in "
          f"{build_seconds:.1f}s); {encoder.attention_implementation} attention; device {device} ({device_name}); "
          f"{precision if precision == 'fp32' else precision + ' autocast'}; torch {torch.__version__}")
    print(f"  {len(chains)} chains, lengths drawn from {len(pool) or 'no'} real SAAINT-DB chains: {len(token_lengths)} "
          f"windows, {sum(token_lengths):,} tokens (mean {np.mean(token_lengths):.0f}); token budget "
          f"{args.token_budget:,}: {len(plan)} batches, padding {padding_fraction(token_lengths, plan):.1%}")

    # Warm-up on a slice of the same length mix (kernel selection, allocator, lazy imports).
    warm = chains[:: max(1, len(chains) // 64)]
    with torch.inference_mode():
        encoder(warm, token_budget=args.token_budget)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    reports = []
    started = time.perf_counter()
    with torch.inference_mode():
        vectors = encoder(chains, token_budget=args.token_budget, progress=reports.append)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    assert vectors.shape == (len(chains), shape["hidden_size"]) and bool(torch.isfinite(vectors).all())

    tokens = sum(r.tokens for r in reports)
    useful = flops(encoder, token_lengths)
    computed = flops(encoder, token_lengths, plan)
    peak, peak_source = peak_for(device, args.peak_tflops)
    achieved = useful / seconds / 1e12
    mfu = achieved / peak if peak else None
    per_token = useful / tokens
    print(f"  encoded in {seconds:.2f}s: {len(chains) / seconds:,.0f} seq/s, {tokens / seconds:,.0f} tokens/s; "
          f"{useful / 1e12:.1f} TFLOP useful ({per_token / 1e9:.2f} GFLOP/token), {computed / 1e12:.1f} TFLOP "
          f"incl. padding")
    if mfu is not None:
        print(f"  achieved {achieved:.1f} TFLOP/s of {peak:.0f} peak ({peak_source}): MFU {mfu:.1%} "
              f"(incl. padding {computed / seconds / 1e12 / peak:.1%}); goal >= 30%: "
              f"{'met' if mfu >= 0.30 else 'NOT met'}")
    else:
        print(f"  achieved {achieved:.3f} TFLOP/s; MFU n/a: {peak_source}")
    peak_memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    if peak_memory is not None:
        print(f"  peak GPU memory {peak_memory:.1f} GiB")

    # What this means for a 160k-pair v2.7 run.
    per_pair = args.chains_per_pair or per_pair or 3.0
    n_distinct = int(args.pairs * per_pair)
    mean_tokens = float(np.mean(token_lengths)) * len(token_lengths) / len(chains)  # windows included
    encode_minutes = n_distinct * mean_tokens / (tokens / seconds) / 60
    antibody_width = encoder.with_pooling(ModelConfig().pooling).hidden_size  # the default head's input
    head_epoch = time_head_epoch(antibody_width, shape["hidden_size"], int(args.pairs * 0.8),
                                 args.head_steps, device)
    print(f"extrapolation to {args.pairs:,} pairs ({per_pair:.2f} distinct chains per pair -> {n_distinct:,} chains, "
          f"{mean_tokens:.0f} tokens each, all through this encoder):")
    print(f"  encode every distinct chain once: {encode_minutes:.1f} min on this device; later epochs and runs: 0")
    print(f"  head training on cached embeddings: {head_epoch:.1f}s per epoch of {int(args.pairs * 0.8):,} "
          f"training pairs (batch 16, accumulation 8)")
    uncached_epoch_minutes = args.pairs * 0.8 * 3 * mean_tokens / (tokens / seconds) / 60
    print(f"  without the cache every epoch re-encodes ~{uncached_epoch_minutes:.0f} min of chains "
          f"(3 per pair, no reuse): {uncached_epoch_minutes * 60 / max(head_epoch, 1e-9):,.0f}x a cached epoch")
    results = {
        "device": str(device), "device_name": device_name, "torch": torch.__version__, "shape": shape,
        "precision": precision, "peak_memory_gib": peak_memory,
        "params": params, "chains": len(chains), "tokens": tokens, "seconds": seconds,
        "tokens_per_s": tokens / seconds, "seq_per_s": len(chains) / seconds, "useful_tflop": useful / 1e12,
        "achieved_tflops": achieved, "peak_tflops": peak, "mfu": mfu, "padding": padding_fraction(token_lengths, plan),
        "token_budget": args.token_budget, "extrapolation": {
            "pairs": args.pairs, "chains_per_pair": per_pair, "distinct_chains": n_distinct,
            "encode_minutes": encode_minutes, "head_epoch_seconds": head_epoch,
            "uncached_epoch_minutes": uncached_epoch_minutes},
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
