#!/usr/bin/env python
"""Where a block's GPU time goes: torch.profiler over one generated block (4 denoising passes +
the cache-update pass) of each method's transformer, built as the method builds it, at 480x832
bf16 with the memory full (history 66 latent frames by default), once per attention backend.

The device kernels are grouped: attention (SDPA's cuDNN/flash kernels, flash-attn-4), GEMM
(cuBLAS/CUTLASS matmuls and convolutions), fused elementwise (the torch.compile'd Triton groups),
other elementwise/normalisation, copies and fills; "idle" is the block's wall time not covered by
any kernel (launch gaps, Python, synchronisation). Prints a table per (method, backend) and the
largest kernels outside attention and GEMM; writes everything as JSON.

    python benchmarks/profile_wan.py --policies mag --attention sdpa,flash --out profile.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from magbench.baselines.wan.build import build_transformer

BLOCK = 3
GROUPS = ("attention", "gemm", "fused elementwise (triton)", "other elementwise/norm", "copy/fill")


def group(name: str) -> str:
    n = name.lower()
    if any(s in n for s in ("flash", "fmha", "attention", "sdpa", "attn")):
        return "attention"
    if any(s in n for s in ("gemm", "nvjet", "cublas", "cutlass", "xmma", "wgmma", "conv", "sm90_", "sm80_")):
        return "gemm"
    if n.startswith("triton") or "triton_" in n:
        return "fused elementwise (triton)"
    if any(s in n for s in ("copy", "memcpy", "memset", "fill", "cat_", "catarray")):
        return "copy/fill"
    return "other elementwise/norm"


def kernel_time_us(evt) -> float:
    for attr in ("device_time_total", "cuda_time_total"):
        v = getattr(evt, attr, None)
        if v:
            return float(v)
    return 0.0


def profile_block(wan, latent_shape, dev) -> dict:
    s = wan.sampler
    torch.cuda.synchronize(dev)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        s.next_block()
        torch.cuda.synchronize(dev)
        wall_us = (time.perf_counter() - t0) * 1e6
    per_group: dict[str, float] = defaultdict(float)
    per_kernel: dict[str, list] = defaultdict(lambda: [0.0, 0, ""])
    for evt in prof.events():
        if evt.device_type != DeviceType.CUDA:
            continue
        us = kernel_time_us(evt)
        g = group(evt.name)
        per_group[g] += us
        k = per_kernel[evt.name]
        k[0] += us
        k[1] += 1
        k[2] = g
    busy = sum(per_group.values())
    top = sorted(((v[0], v[1], n, v[2]) for n, v in per_kernel.items() if v[2] not in ("attention", "gemm")), reverse=True)[:15]
    return {
        "wall_ms": wall_us / 1e3,
        "kernel_ms": busy / 1e3,
        "groups_ms": {g: per_group.get(g, 0.0) / 1e3 for g in GROUPS},
        "idle_ms": max(0.0, wall_us - busy) / 1e3,
        "top_other_kernels": [{"name": n[:120], "group": g, "ms": us / 1e3, "count": c} for us, c, n, g in top],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", default="mag", help="Wan methods (empty: none)")
    ap.add_argument("--attention", default="sdpa,flash")
    ap.add_argument("--history", type=int, default=66)
    ap.add_argument("--no-fused", action="store_true")
    ap.add_argument("--vae", action="store_true", help="also profile one streaming VAE decode block")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev, dtype = torch.device("cuda"), torch.bfloat16
    h, w = 60, 104
    results = []
    gen = mem = None
    for policy in [p for p in args.policies.split(",") if p]:
        reuse = None if gen is None or (policy == "mag" and mem is None) else (gen, mem if policy == "mag" else None)
        wan = build_transformer(policy, dev, dtype, models=reuse, random_weights=True, fused_elementwise=not args.no_fused)
        gen, mem = wan.generator, wan.memory_model or mem
        cfg = wan.generator.cfg
        latent_shape = (cfg.in_dim, h, w)
        g = torch.Generator(device=dev).manual_seed(0)
        text = torch.randn(1, 64, cfg.text_dim, device=dev, generator=g).to(dtype)
        for backend in [b for b in args.attention.split(",") if b]:
            for m in wan.models():
                m.set_kernels(attention=backend)
            wan.warmup(latent_shape)
            wan.sampler.reset(text, empty_embeds=text[:, :1], seed=0, latent_shape=latent_shape)
            ctx = torch.randn(1, BLOCK, *latent_shape, device=dev, generator=g).to(dtype)
            for _ in range(args.history // BLOCK):
                wan.sampler.commit(ctx)
            wan.sampler.next_block()  # warm-up block
            res = profile_block(wan, latent_shape, dev)
            res.update(policy=policy, attention=backend, kernel=wan.generator.attention.describe(text), history=args.history,
                       attended_frames=wan.memory.attended_frames(wan.sampler.position, BLOCK))
            results.append(res)
            gr = res["groups_ms"]
            print(f"\n=== {policy}, attention {backend} ({res['kernel']}), history {args.history}: one block ===")
            print(f"wall {res['wall_ms']:.1f} ms, kernels {res['kernel_ms']:.1f} ms, idle {res['idle_ms']:.1f} ms")
            for name in GROUPS:
                print(f"  {name:<30}{gr[name]:>9.1f} ms {100 * gr[name] / res['wall_ms']:>5.1f}%")
            print("  largest kernels outside attention and GEMM:")
            for k in res["top_other_kernels"][:8]:
                print(f"    {k['ms']:>7.1f} ms x{k['count']:<5}{k['group']:<28}{k['name'][:70]}")
        del wan
        torch.cuda.empty_cache()
    if args.vae:
        results.append(profile_decode(dev, dtype, h, w))
    if args.out:
        Path(args.out).write_text(json.dumps({"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__, "results": results}, indent=1))


def profile_decode(dev, dtype, h, w) -> dict:
    """One streaming VAE decode block (3 latent -> 12 pixel frames) after the first frame and a
    warm-up block, grouped as above (convolutions count as GEMM)."""
    from magbench.baselines.wan.vae import WanVAE, wan_vae_config

    vae = WanVAE.random(wan_vae_config(), dev, dtype)
    g = torch.Generator(device=dev).manual_seed(0)
    lat = torch.randn(1, BLOCK, 16, h, w, device=dev, generator=g).to(dtype)
    dec = vae.decoder_stream()
    dec.push(lat[:, :1])
    dec.push(lat)

    class _Stream:  # profile_block's interface: next_block()
        def next_block(self):
            return dec.push(lat)

    res = profile_block(type("W", (), {"sampler": _Stream()})(), None, dev)
    res.update(policy="vae-decode", attention=None, kernel=None)
    gr = res["groups_ms"]
    print(f"\n=== streaming VAE decode, one block ===\nwall {res['wall_ms']:.1f} ms, kernels {res['kernel_ms']:.1f} ms, idle {res['idle_ms']:.1f} ms")
    for name in GROUPS:
        print(f"  {name:<30}{gr[name]:>9.1f} ms")
    for k in res["top_other_kernels"][:6]:
        print(f"    {k['ms']:>7.1f} ms x{k['count']:<5}{k['group']:<28}{k['name'][:70]}")
    return res


if __name__ == "__main__":
    main()
