#!/usr/bin/env python
"""GPU benchmark of the causal Wan2.1-T2V-1.3B generator of each Wan method.

Each method's transformer, memory policy and sampler are built by
:func:`magbench.baselines.wan.build.build_transformer`, exactly as ``magbench run`` builds them
(random weights: timings do not depend on them; ``--opt KEY=VALUE`` passes method options). For
each setting (method x history length = latent frames already in memory when the timed blocks
start) and each attention backend (``--attention sdpa,flash`` runs an A/B in one process, the
backends alternating block by block on the same models and memory contents) it reports:
per-block latency of the transformer (4 denoising passes + the clean cache-update pass: MAG's
memory model or the generator), the streaming VAE decode of the block (12 pixel frames), FPS,
peak VRAM, KV bytes (held and allocated) and the transformer's achieved TFLOP/s, counting

* linear layers: 2 x (linear parameters applied per token) x tokens, per pass;
* attention: 4 x Lq x Lk x head_dim x heads x layers (self-attention over what the memory
  exposes, and cross-attention over the 512 text tokens).

Just-in-time compilation (flash-attn-4, the fused elementwise groups) happens in the models'
``warmup`` and in ``--warmup`` untimed blocks, never in a timed block.

Usage (one H100; install magbench first: ``pip install -e .``)::

    python benchmarks/bench_wan.py --out bench_wan.json
    python benchmarks/bench_wan.py --settings mag:66,self-forcing:66,full-history:120 --attention sdpa,flash
    python benchmarks/bench_wan.py --tiny --device cpu --out /tmp/bench_wan_tiny.json   # smoke test

Other options: --compile (torch.compile each transformer block: a benchmark-only variant, measured
no faster), --cuda-graphs, --no-fused, --overlap-decode (decode block k on a second CUDA stream
while block k+1 is generated), --no-vae. The VAE needs diffusers; without it the decode columns
are skipped with a message.
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
from typing import Any

import torch

from magbench.baselines.wan.build import WanTransformer, build_transformer, wan_method
from magbench.baselines.wan.model import WanConfig

BLOCK = 3


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny config and resolution (CPU smoke test)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--policies", default="mag,self-forcing,full-history", help="Wan methods")
    ap.add_argument("--histories", default=None, help="latent frames in memory before timing (default 21,60,120; tiny: 6,12)")
    ap.add_argument("--settings", default=None, help="METHOD:HISTORY,... (instead of --policies x --histories)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed blocks per setting and backend")
    ap.add_argument("--blocks", type=int, default=3, help="timed blocks per setting and backend")
    ap.add_argument("--opt", action="append", default=[], help="method option KEY=VALUE (JSON values), all methods")
    ap.add_argument("--attention", default="auto", help="backend(s): auto, sdpa, flash; comma-separated for an A/B")
    ap.add_argument("--no-fuse-qkv", action="store_true")
    ap.add_argument("--no-fused", action="store_true", help="run the elementwise groups eagerly (no torch.compile)")
    ap.add_argument("--compile", action="store_true", help="torch.compile each transformer block (benchmark-only variant)")
    ap.add_argument("--compile-mode", default=None, help="torch.compile mode (e.g. max-autotune-no-cudagraphs)")
    ap.add_argument("--overlap-decode", action="store_true")
    ap.add_argument("--cuda-graphs", action="store_true", help="replay the denoising passes from CUDA graphs")
    ap.add_argument("--no-vae", action="store_true")
    ap.add_argument("--out", default=None, help="JSON output path")
    args = ap.parse_args(argv)
    if args.settings:
        args.settings = [(s.split(":")[0], int(s.split(":")[1])) for s in args.settings.split(",") if s]
    else:
        if args.tiny:
            args.histories = args.histories or "6,12"
        hist = [int(x) for x in (args.histories or "21,60,120").split(",")]
        args.settings = [(p.strip(), h) for p in args.policies.split(",") if p.strip() for h in hist]
    if args.tiny and (args.height, args.width) == (480, 832):
        args.height, args.width = 32, 48
    args.backends = [b for b in args.attention.split(",") if b]
    if args.cuda_graphs and len(args.backends) > 1:
        ap.error("--cuda-graphs replays the kernels it captured: time one attention backend per run")
    return args


def method_options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {"random_weights": True, "resolution": [args.height, args.width]}
    if args.tiny:
        opts["config"] = "tiny"
    opts.update(fuse_qkv=not args.no_fuse_qkv, fused_elementwise=not args.no_fused, cuda_graphs=args.cuda_graphs)
    for kv in args.opt:
        key, _, value = kv.partition("=")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        return None, "skipped: diffusers is not installed (pip install 'magbench[wan]')"
    from magbench.baselines.wan.vae import WanVAE, tiny_vae_config, wan_vae_config

    cfg = tiny_vae_config() if args.tiny else wan_vae_config()
    return WanVAE.random(cfg, device, dtype), "random AutoencoderKLWan (" + ("tiny" if args.tiny else "Wan2.1") + " config)"


def build(policy: str, args, device, dtype, cache: dict[str, Any]) -> WanTransformer:
    """The method's parts; random models are shared between methods with the same weights (the
    generator of every method, MAG's memory model) to save building them again."""
    opts = method_options(args)
    method = wan_method(policy, **opts)
    gen, mem = cache.get("generator"), cache.get("memory")
    reuse = None
    if gen is not None and (policy != "mag" or mem is not None):
        reuse = (gen, mem if policy == "mag" else None)
    wan = build_transformer(method, device, dtype, models=reuse)
    cache.setdefault("generator", wan.generator)
    if wan.memory_model is not None:
        cache.setdefault("memory", wan.memory_model)
    if args.compile and not cache.get("compiled"):
        for model in wan.models():
            for blk in model.blocks:
                blk.compile(mode=args.compile_mode)
        cache["compiled"] = True
    return wan


def bench_setting(policy, history, wan: WanTransformer, vae, args, device, dtype) -> list[dict]:
    """Rows for one method and history, one per attention backend (A/B alternating by block)."""
    cfg, sampler, mem = wan.generator.cfg, wan.sampler, wan.memory
    h, w = args.height // 8, args.width // 8
    ft = (h // cfg.patch_size[1]) * (w // cfg.patch_size[2])
    latent_shape = (cfg.in_dim, h, w)
    g = torch.Generator(device=device).manual_seed(0)
    text = torch.randn(1, min(64, cfg.text_len), cfg.text_dim, device=device, generator=g).to(dtype)
    for backend in args.backends:  # JIT compilation of each backend's kernels, before any timing
        for m in wan.models():
            m.set_kernels(attention=backend)
        wan.warmup(latent_shape)
    sampler.reset(text, empty_embeds=text[:, :1], seed=0, latent_shape=latent_shape)
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
    probe = torch.empty(1, 1, 1, cfg.head_dim, device=device, dtype=dtype)

    stats = {b: {"gen": [], "dec": [], "both": [], "flops": [], "attended": []} for b in args.backends}
    side = torch.cuda.Stream(device) if (args.overlap_decode and device.type == "cuda" and dec is not None) else None
    for i in range(args.warmup + args.blocks):
        for backend in args.backends:
            for m in wan.models():
                m.set_kernels(attention=backend)
            attended = mem.attended_frames(sampler.position, BLOCK)
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
                s = stats[backend]
                s["gen"].append(t1 - t0)
                s["flops"].append(block_flops(cfg, ft, attended))
                s["attended"].append(attended)
                if dec is not None and side is None:
                    s["dec"].append(t2 - t1)
                    s["both"].append(t2 - t0)
    overlap_s = None
    if side is not None:
        # Steady state with decode of block k on a second stream while block k+1 is generated
        # (last backend only).
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
    rows = []
    for backend, s in stats.items():
        for m in wan.models():
            m.set_kernels(attention=backend)
        row = {
            "policy": policy,
            "history_frames": history,
            "attention": backend,
            "attention_kernel": wan.generator.attention.describe(probe),
            "attended_frames": s["attended"][0],  # at the first timed block (full history grows)
            "fill_s": fill_s,
            "transformer_block_s": med(s["gen"]),
            "transformer_block_s_all": s["gen"],
            "transformer_fps": 12 / med(s["gen"]),
            "tflops": med(f / t for f, t in zip(s["flops"], s["gen"])) / 1e12,
            "kv_bytes": mem.memory_bytes(),
            "kv_allocated_bytes": mem.allocated_bytes(),
            "peak_vram_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        }
        if s["dec"]:
            row.update(decode_block_s=med(s["dec"]), end_to_end_block_s=med(s["both"]), end_to_end_fps=12 / med(s["both"]))
        if overlap_s is not None and backend == args.backends[-1]:
            row.update(overlap_block_s=overlap_s, overlap_fps=12 / overlap_s)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if device.type == "cpu" and dtype != torch.float32:
        dtype = torch.float32  # CPU half-precision matmuls are not what this measures
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"device {device} ({name}), torch {torch.__version__}, dtype {dtype}, attention {args.backends}, "
          f"{args.height}x{args.width}", flush=True)
    t_start = time.perf_counter()
    vae, vae_note = load_vae(args, device, dtype)
    print(f"VAE: {vae_note}", flush=True)
    cache: dict[str, Any] = {}
    rows = []
    for policy, history in args.settings:
        try:
            wan = build(policy, args, device, dtype, cache)
            rows += bench_setting(policy, history, wan, vae, args, device, dtype)
            del wan
        except torch.cuda.OutOfMemoryError as exc:
            rows.append({"policy": policy, "history_frames": history, "error": f"out of memory: {str(exc).splitlines()[0]}"})
            torch.cuda.empty_cache()
        for row in rows[-len(args.backends):]:
            msg = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if not k.endswith("_all")}
            print(json.dumps(msg), flush=True)

    total_s = time.perf_counter() - t_start
    print()
    print(f"{'policy':<14}{'hist':>5}{'attn':>6}{'kernel':>14}{'xfmr ms':>9}{'fps':>7}{'TFLOP/s':>9}{'dec ms':>8}"
          f"{'e2e ms':>8}{'e2e fps':>8}{'ovl fps':>8}{'KV GiB':>8}{'peak GiB':>9}")
    nan = float("nan")
    for r in rows:
        if "error" in r:
            print(f"{r['policy']:<14}{r['history_frames']:>5}  {r['error']}")
            continue
        gib = 2**30
        print(
            f"{r['policy']:<14}{r['history_frames']:>5}{r['attended_frames']:>6}{r['attention_kernel']:>14}"
            f"{r['transformer_block_s'] * 1e3:>9.1f}{r['transformer_fps']:>7.1f}{r['tflops']:>9.1f}"
            f"{r.get('decode_block_s', nan) * 1e3:>8.1f}{r.get('end_to_end_block_s', nan) * 1e3:>8.1f}"
            f"{r.get('end_to_end_fps', nan):>8.1f}{r.get('overlap_fps', nan):>8.1f}{r['kv_bytes'] / gib:>8.2f}"
            f"{(r['peak_vram_bytes'] or 0) / gib:>9.2f}"
        )
    print(f"total {total_s:.0f} s")
    out = {
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": " ".join(sys.argv),
        "dtype": str(dtype),
        "method_options": method_options(args),
        "vae": vae_note,
        "resolution": [args.height, args.width],
        "config": "tiny" if args.tiny else "t2v-1.3b",
        "param_count": (WanConfig.tiny() if args.tiny else WanConfig.t2v_1_3b()).param_count(),
        "total_s": total_s,
        "rows": rows,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
