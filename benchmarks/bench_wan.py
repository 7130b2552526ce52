#!/usr/bin/env python
"""GPU benchmark of the causal Wan2.1-T2V-1.3B generator under each KV memory policy.

Random weights (timings do not depend on them). For each policy (mag, self-forcing,
full-history) and each history length (latent frames already in memory when the timed blocks
start; default 21, 60, 120) it reports: per-block latency of the transformer alone (4 denoising
passes + the clean cache-update pass: MAG's memory model or the generator), the same with the
streaming VAE decode of the block (12 pixel frames), FPS, peak VRAM, KV bytes (held and
allocated) and the transformer's achieved TFLOP/s, counting

* linear layers: 2 x (linear parameters applied per token) x tokens, per pass;
* attention: 4 x Lq x Lk x head_dim x heads x layers (self-attention over what the memory
  exposes, and cross-attention over the 512 text tokens).

Usage (one H100, < 6 minutes)::

    python benchmarks/bench_wan.py --out bench_wan.json
    python benchmarks/bench_wan.py --tiny --device cpu --out /tmp/bench_wan_tiny.json   # smoke test

Options: --attention {auto,sdpa,flash} (auto: flash-attn when installed, else SDPA),
--compile (torch.compile each transformer block; --compile-mode reduce-overhead uses inductor's
CUDA graphs), --cuda-graphs (the denoising passes replayed from CUDA graphs, captured per memory
plan: use histories past the ring/window fill, e.g. 66,120), --no-fused, --overlap-decode (decode block k on a second CUDA stream while block k+1 is
generated), --no-vae. The VAE part needs diffusers; without it the decode columns are skipped
with a message.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    import magbench.baselines.wan.model  # noqa: F401  (installed: baselines/ is magbench.baselines)
except ModuleNotFoundError:
    # An uninstalled checkout (e.g. a bare GPU machine): map baselines/ the way pyproject does,
    # without running baselines/__init__ (which registers every built-in method).
    import types

    sys.path.insert(0, str(ROOT))
    import magbench

    pkg = types.ModuleType("magbench.baselines")
    pkg.__path__ = [str(ROOT / "baselines")]
    sys.modules["magbench.baselines"] = pkg
    magbench.baselines = pkg  # type: ignore[attr-defined]

from magbench.baselines.wan.memory import CompressedMemory, FullHistory, KVMemory, SlidingWindow  # noqa: E402
from magbench.baselines.wan.model import CausalWan, WanConfig, set_attention_backend, set_fused_elementwise  # noqa: E402
from magbench.baselines.wan.sampler import BlockSampler  # noqa: E402

BLOCK = 3


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny config and resolution (CPU smoke test)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--policies", default="mag,self-forcing,full-history")
    ap.add_argument("--histories", default=None, help="latent frames in memory before timing (default 21,60,120; tiny: 6,12)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up blocks per setting")
    ap.add_argument("--blocks", type=int, default=3, help="timed blocks per setting")
    ap.add_argument("--window", type=int, default=21)
    ap.add_argument("--sink", type=int, default=3)
    ap.add_argument("--slots", type=int, default=21)
    ap.add_argument("--mag-sink", type=int, default=2)
    ap.add_argument("--attention", default="auto", choices=["auto", "sdpa", "flash"])
    ap.add_argument("--no-fuse-qkv", action="store_true")
    ap.add_argument("--no-fused", action="store_true", help="run the elementwise groups eagerly (no torch.compile)")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (e.g. max-autotune-no-cudagraphs, reduce-overhead)")
    ap.add_argument("--overlap-decode", action="store_true")
    ap.add_argument("--cuda-graphs", action="store_true", help="replay the denoising passes from CUDA graphs")
    ap.add_argument("--no-vae", action="store_true")
    ap.add_argument("--out", default=None, help="JSON output path")
    args = ap.parse_args()
    if args.tiny:
        args.height, args.width = (32, 48) if (args.height, args.width) == (480, 832) else (args.height, args.width)
        args.histories = args.histories or "6,12"
        args.window, args.slots = min(args.window, 6), min(args.slots, 4)
    args.histories = [int(x) for x in (args.histories or "21,60,120").split(",")]
    return args


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(cfg: WanConfig, device: torch.device, dtype: torch.dtype, seed: int, args) -> CausalWan:
    with torch.device(device):
        model = CausalWan(cfg)
    model = model.to(dtype).init_random(seed).eval().requires_grad_(False)
    if not args.no_fuse_qkv:
        model.fuse_qkv()
    if args.compile:
        for blk in model.blocks:
            blk.compile(mode=args.compile_mode)
    return model


def make_memory(policy: str, cfg: WanConfig, args) -> KVMemory:
    if policy == "mag":
        return CompressedMemory(cfg.num_layers, slots=args.slots, sink_frames=args.mag_sink)
    if policy == "self-forcing":
        return SlidingWindow(cfg.num_layers, window_frames=args.window, sink_frames=args.sink)
    if policy == "full-history":
        return FullHistory(cfg.num_layers)
    raise SystemExit(f"unknown policy {policy!r}")


def attended_frames(mem: KVMemory) -> int:
    """Latent frames a pass of the next block attends to (kept + itself)."""
    if isinstance(mem, CompressedMemory):
        return (mem.sink_frames if mem._sink_valid else 0) + min(mem._blocks, mem.slots) + BLOCK
    return len(mem.kept_frames()) + BLOCK


def block_flops(cfg: WanConfig, frame_tokens: int, attended: int) -> float:
    """FLOPs of one generated block: 4 denoising passes + 1 cache-update pass."""
    d, f = cfg.dim, cfg.ffn_dim
    lq = BLOCK * frame_tokens
    linear_params = cfg.num_layers * (6 * d * d + 2 * d * f)  # self q,k,v,o + cross q,o + ffn
    linear_params += cfg.in_dim * math.prod(cfg.patch_size) * d + d * cfg.out_dim * math.prod(cfg.patch_size)
    linear = 2 * linear_params * lq
    attn = 4 * lq * (attended * frame_tokens) * cfg.head_dim * cfg.num_heads * cfg.num_layers
    cross = 4 * lq * cfg.text_len * cfg.head_dim * cfg.num_heads * cfg.num_layers
    return 5 * (linear + attn + cross)


def load_vae(args, device, dtype):
    if args.no_vae:
        return None, "disabled (--no-vae)"
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return None, "skipped: diffusers is not installed (pip install diffusers>=0.33)"
    from magbench.baselines.wan.vae import WanVAE, tiny_vae_config, wan_vae_config

    cfg = tiny_vae_config() if args.tiny else wan_vae_config()
    return WanVAE.random(cfg, device, dtype), "random AutoencoderKLWan (" + ("tiny" if args.tiny else "Wan2.1") + " config)"


def bench_setting(policy, history, cfg, models, vae, args, device, dtype) -> dict:
    gen, memm = models["generator"], (models["memory"] if policy == "mag" else None)
    mem = make_memory(policy, cfg, args)
    sampler = BlockSampler(gen, mem, memory_model=memm, cuda_graphs=args.cuda_graphs)
    h, w = args.height // 8, args.width // 8
    ft = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    g = torch.Generator(device=device).manual_seed(0)
    text = torch.randn(1, min(64, cfg.text_len), cfg.text_dim, device=device, generator=g).to(dtype)
    sampler.reset(text, empty_embeds=text[:, :1], seed=0, latent_shape=(cfg.in_dim, h, w))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    ctx = torch.randn(1, BLOCK, cfg.in_dim, h, w, device=device, generator=g).to(dtype)
    for _ in range(history // BLOCK):  # real cache-update passes build the history
        sampler.commit(ctx)
    sync(device)
    fill_s = time.perf_counter() - t0
    dec = vae.decoder_stream() if vae is not None else None
    if dec is not None:  # the decoder's causal cache after the context, as in a real run
        dec.push(torch.randn(1, BLOCK, cfg.in_dim, h, w, device=device, generator=g))

    gen_s, dec_s, both_s, flops, attended_timed = [], [], [], [], []
    side = torch.cuda.Stream(device) if (args.overlap_decode and device.type == "cuda" and dec is not None) else None
    for i in range(args.warmup + args.blocks):
        attended = attended_frames(mem)
        sync(device)
        t0 = time.perf_counter()
        lat = sampler.next_block()
        sync(device)
        t1 = time.perf_counter()
        if dec is not None and side is None:
            dec.push(lat)
            sync(device)
        t2 = time.perf_counter()
        if i >= args.warmup:
            gen_s.append(t1 - t0)
            flops.append(block_flops(cfg, ft, attended))
            attended_timed.append(attended)
            if dec is not None and side is None:
                dec_s.append(t2 - t1)
                both_s.append(t2 - t0)
    overlap_s = None
    if side is not None:
        # Steady state with decode of block k on a second stream while block k+1 is generated.
        n = args.blocks
        sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            lat = sampler.next_block()
            done = torch.cuda.Event()
            done.record()
            side.wait_event(done)
            with torch.cuda.stream(side):
                lat.record_stream(side)
                dec.push(lat)
        sync(device)
        overlap_s = (time.perf_counter() - t0) / n
    med = statistics.median
    row = {
        "policy": policy,
        "history_frames": history,
        "attended_frames": attended_timed[0],  # at the first timed block (full history grows)
        "fill_s": fill_s,
        "transformer_block_s": med(gen_s),
        "transformer_block_s_all": gen_s,
        "transformer_fps": 12 / med(gen_s),
        "tflops": med(f / t for f, t in zip(flops, gen_s)) / 1e12,
        "kv_bytes": mem.memory_bytes(),
        "kv_allocated_bytes": mem.allocated_bytes(),
        "peak_vram_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
    }
    if dec_s:
        row.update(decode_block_s=med(dec_s), end_to_end_block_s=med(both_s), end_to_end_fps=12 / med(both_s))
    if overlap_s is not None:
        row.update(overlap_block_s=overlap_s, overlap_fps=12 / overlap_s)
    if sampler._graphed is not None:
        row["cuda_graph_passes"] = dict(sampler._graphed.counts)
    del sampler, mem
    return row


def main() -> None:
    args = parse()
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if device.type == "cpu" and dtype != torch.float32:
        dtype = torch.float32  # CPU half-precision matmuls are not what this measures
    set_attention_backend(args.attention)
    set_fused_elementwise(not args.no_fused)
    cfg = WanConfig.tiny() if args.tiny else WanConfig.t2v_1_3b()
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    try:
        import flash_attn  # type: ignore[import-not-found]  # noqa: F401

        flash = True
    except Exception:
        flash = False
    backend = "flash-attn" if (flash and args.attention != "sdpa" and device.type == "cuda") else "sdpa"
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'}), "
          f"torch {torch.__version__}, dtype {dtype}, attention {backend}, {args.height}x{args.width}", flush=True)
    t_start = time.perf_counter()
    models = {"generator": build_model(cfg, device, dtype, 0, args)}
    if "mag" in policies:
        models["memory"] = build_model(cfg, device, dtype, 1, args)
    vae, vae_note = load_vae(args, device, dtype)
    print(f"VAE: {vae_note}", flush=True)

    rows = []
    for policy in policies:
        for history in args.histories:
            try:
                row = bench_setting(policy, history, cfg, models, vae, args, device, dtype)
            except torch.cuda.OutOfMemoryError as exc:
                row = {"policy": policy, "history_frames": history, "error": f"out of memory: {str(exc).splitlines()[0]}"}
                torch.cuda.empty_cache()
            rows.append(row)
            msg = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if not k.endswith("_all")}
            print(json.dumps(msg), flush=True)

    total_s = time.perf_counter() - t_start
    print()
    print(f"{'policy':<14}{'hist':>5}{'attn':>6}{'xfmr ms':>9}{'fps':>7}{'TFLOP/s':>9}{'+dec ms':>9}{'e2e fps':>8}{'ovl fps':>8}{'KV GiB':>8}{'peak GiB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['policy']:<14}{r['history_frames']:>5}  {r['error']}")
            continue
        gib = 2**30
        e2e = r.get("end_to_end_block_s")
        print(
            f"{r['policy']:<14}{r['history_frames']:>5}{r['attended_frames']:>6}{r['transformer_block_s'] * 1e3:>9.1f}"
            f"{r['transformer_fps']:>7.1f}{r['tflops']:>9.1f}"
            f"{(e2e * 1e3 if e2e else float('nan')):>9.1f}{r.get('end_to_end_fps', float('nan')):>8.1f}"
            f"{r.get('overlap_fps', float('nan')):>8.1f}{r['kv_bytes'] / gib:>8.2f}"
            f"{(r['peak_vram_bytes'] or 0) / gib:>9.2f}"
        )
    print(f"total {total_s:.0f} s")
    if args.out:
        out = {
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "device": str(device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "command": " ".join(sys.argv),
            "dtype": str(dtype),
            "attention": backend,
            "vae": vae_note,
            "resolution": [args.height, args.width],
            "config": "tiny" if args.tiny else "t2v-1.3b",
            "param_count": cfg.param_count(),
            "total_s": total_s,
            "rows": rows,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
