"""Where a block's time goes: torch.profiler over one generated block (MAG and self-forcing,
history 21) and one streaming VAE decode, at 480x832 bf16 on the GPU. Prints the top operators
by device time. Usage: python benchmarks/profile_wan.py [--out DIR]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_wan  # noqa: E402

BLOCK = bench_wan.BLOCK


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--rows", type=int, default=22)
    opts = ap.parse_args()
    sys.argv = [sys.argv[0]]
    args = bench_wan.parse()
    device, dtype = torch.device("cuda"), torch.bfloat16
    cfg = bench_wan.WanConfig.t2v_1_3b()
    gen = bench_wan.build_model(cfg, device, dtype, 0, args)
    memm = bench_wan.build_model(cfg, device, dtype, 1, args)
    vae, _ = bench_wan.load_vae(args, device, dtype)
    h, w = args.height // 8, args.width // 8
    g = torch.Generator(device=device).manual_seed(0)
    text = torch.randn(1, 64, cfg.text_dim, device=device, generator=g).to(dtype)
    for policy in ("mag", "self-forcing"):
        mem = bench_wan.make_memory(policy, cfg, args)
        sampler = bench_wan.BlockSampler(gen, mem, memory_model=memm if policy == "mag" else None)
        sampler.reset(text, empty_embeds=text[:, :1], seed=0, latent_shape=(cfg.in_dim, h, w))
        ctx = torch.randn(1, BLOCK, cfg.in_dim, h, w, device=device, generator=g).to(dtype)
        for _ in range(7):
            sampler.commit(ctx)
        sampler.next_block()  # warm-up
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            sampler.next_block()
            torch.cuda.synchronize()
        print(f"\n=== {policy}: one block (4 denoising passes + cache update), history 21 ===")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=opts.rows, max_name_column_width=60))
        if opts.out:
            Path(opts.out).mkdir(parents=True, exist_ok=True)
            (Path(opts.out) / f"profile_{policy}.txt").write_text(
                prof.key_averages().table(sort_by="cuda_time_total", row_limit=60, max_name_column_width=90)
            )
        del sampler, mem
        torch.cuda.empty_cache()
    if vae is not None:
        dec = vae.decoder_stream()
        lat = torch.randn(1, BLOCK, cfg.in_dim, h, w, device=device, generator=g)
        dec.push(lat)
        dec.push(lat)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            dec.push(lat)
            torch.cuda.synchronize()
        print("\n=== streaming VAE decode of one block ===")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))


if __name__ == "__main__":
    main()
