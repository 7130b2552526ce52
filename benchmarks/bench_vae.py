#!/usr/bin/env python
"""GPU benchmark of the Wan VAE's streaming decode and encode (diffusers ``AutoencoderKLWan``,
random weights, 480x832, bf16) under cuDNN settings, each checked against the default's output.

Variants: ``fp32-reference`` (the same weights in float32: what the others' errors are measured
against), ``default`` (bf16, as diffusers runs it: one decoder pass per latent frame),
``channels-last`` (conv weights in channels_last_3d, cudnn.benchmark on),
``channels-last+fused-norms`` (and each ``WanRMS_norm`` module through torch.compile: ``WanVAE``'s
default on CUDA; called ``channels-last+compiled-norms`` in ``results/vae_compile_variants.json``).
(A batched decode, all latent frames of a block in one decoder pass, was measured slower and
removed: benchmarks/RESULTS.md, "The VAE decode".) With ``--try-compile`` also ``cudnn-benchmark``
alone and channels-last with each ``WanResidualBlock`` through torch.compile. Per block: 3 latent frames -> 12 pixel frames (decode), 12 pixel frames -> 3
latent frames (encode). Medians of ``--blocks`` blocks after one warm-up block.

    python benchmarks/bench_vae.py --out vae.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from magbench.baselines.wan.vae import WanVAE, tiny_vae_config, wan_vae_config


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(variant: str, args, device, dtype) -> tuple[dict, torch.Tensor, torch.Tensor]:
    if variant == "fp32-reference":
        dtype = torch.float32
    torch.backends.cudnn.benchmark = variant not in ("default", "fp32-reference")
    cfg = tiny_vae_config() if args.tiny else wan_vae_config()
    vae = WanVAE.random(
        cfg, device, dtype, channels_last=variant.startswith("channels-last"), fused_norms=variant.endswith("fused-norms")
    )
    if variant.endswith("compiled-resblocks"):
        from diffusers.models.autoencoders import autoencoder_kl_wan as akw

        # One code object serves every stage's shapes and cache states: allow the recompiles.
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, 64)
        for mod in vae.vae.modules():
            if isinstance(mod, akw.WanResidualBlock):
                mod.compile()
    g = torch.Generator(device=device).manual_seed(0)
    h, w = args.height // 8, args.width // 8
    lat = [torch.randn(1, 3, 16, h, w, device=device, generator=g).to(dtype) for _ in range(args.blocks + 2)]
    pix = [torch.rand(12, 3, args.height, args.width, device=device, generator=g) for _ in range(args.blocks + 2)]
    dec, enc = vae.decoder_stream(), vae.encoder_stream()
    dec.push(lat[0])  # the video's first latent frame decodes alone; prime past it
    enc.push(pix[0][:1])
    dec_s, enc_s, outs_d, outs_e = [], [], [], []
    for i in range(1, args.blocks + 2):
        sync(device)
        t0 = time.perf_counter()
        d = dec.push(lat[i])
        sync(device)
        t1 = time.perf_counter()
        e = enc.push(pix[i])
        sync(device)
        t2 = time.perf_counter()
        if i > 1:
            dec_s.append(t1 - t0)
            enc_s.append(t2 - t1)
        outs_d.append(d.float())
        outs_e.append(e.float())
    row = {
        "variant": variant,
        "decode_block_s": statistics.median(dec_s),
        "encode_block_s": statistics.median(enc_s),
        "decode_all_s": dec_s,
        "encode_all_s": enc_s,
        "peak_vram_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0,
    }
    del vae, dec, enc
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row, torch.cat(outs_d), torch.cat(outs_e, dim=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--try-compile", action="store_true", help="also torch.compile the RMS norms / residual blocks")
    ap.add_argument("--variants", default=None, help="comma-separated subset (fp32-reference always runs first)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.tiny:
        args.height, args.width = 32, 48
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    # The bf16 variants' errors are measured against the same network in float32, so a faster
    # variant is kept only if it is as close to it as the default is.
    rows, ref = [], None
    variants = ["fp32-reference", "default", "channels-last", "channels-last+fused-norms"]
    if args.try_compile:
        variants += ["cudnn-benchmark", "channels-last+compiled-resblocks"]
    if args.variants:
        variants = ["fp32-reference"] + [v for v in args.variants.split(",") if v and v != "fp32-reference"]
    for variant in variants:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        row, d, e = run(variant, args, device, dtype)
        if ref is None:
            ref = (d, e)
        for part, got, want in (("decode", d, ref[0]), ("encode", e, ref[1])):
            err = (got - want).abs()
            row[f"{part}_max_abs_err_vs_fp32"] = err.max().item()
            row[f"{part}_mean_abs_err_vs_fp32"] = err.mean().item()
        rows.append(row)
    base = next((r for r in rows if r["variant"] == "default"), rows[1] if len(rows) > 1 else rows[0])
    print(f"{'variant':<33}{'decode ms':>10}{'x':>6}{'encode ms':>10}{'x':>6}{'dec err max/mean':>20}{'enc err max/mean':>20}{'peak GiB':>9}")
    for r in rows:
        print(
            f"{r['variant']:<33}{r['decode_block_s'] * 1e3:>10.1f}{base['decode_block_s'] / r['decode_block_s']:>6.2f}"
            f"{r['encode_block_s'] * 1e3:>10.1f}{base['encode_block_s'] / r['encode_block_s']:>6.2f}"
            f"{r['decode_max_abs_err_vs_fp32']:>11.1e}/{r['decode_mean_abs_err_vs_fp32']:.1e}"
            f"{r['encode_max_abs_err_vs_fp32']:>11.1e}/{r['encode_mean_abs_err_vs_fp32']:.1e}{r['peak_vram_bytes'] / 2**30:>9.2f}"
        )
    if args.out:
        gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
        info = {"gpu": gpu, "torch": torch.__version__, "cudnn": torch.backends.cudnn.version()}
        Path(args.out).write_text(json.dumps({"device": info, "rows": rows}, indent=1))
        print("wrote", args.out)


if __name__ == "__main__":
    main()
