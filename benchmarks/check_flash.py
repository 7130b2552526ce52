#!/usr/bin/env python
"""GPU check of the flash-attn-4 attention path against SDPA at the Wan block's real shapes.

1. Kernel level (bf16, 480x832: 1560 tokens per latent frame, 12 heads of 128): queries of one
   3-frame block (4680 tokens) against K/V that are *views* of a preallocated cache buffer (as the
   KV memory hands them over) of 13, 26, 27, 66 and 126 attended frames, and cross-attention over
   the 512 text tokens. Both kernels are compared with attention computed in float32 from the same
   bf16 inputs; flash-attn-4 must be as close to it as SDPA is (within 1.5x, and below 1e-2
   relative). Each shape is timed (CUDA events, median of 20 after warm-up), giving TFLOP/s.
2. Model level: one forward pass of the self-forcing model (random weights) with
   ``attention="flash"`` against ``"sdpa"``: bf16-rounding-level relative difference.
The first flash-attn-4 call's just-in-time compile time is reported. Exits non-zero on failure.

    python benchmarks/check_flash.py --out check_flash.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from magbench.baselines.wan.attention import AttentionKernel, flash_attn_4, sdpa
from magbench.baselines.wan.build import build_transformer
from magbench.baselines.wan.memory import FullHistory

FT, HEADS, HEAD_DIM, BLOCK = 1560, 12, 128, 3


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def time_ms(fn, reps: int = 20) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernel_rows(dev: torch.device) -> list[dict]:
    flash = flash_attn_4()
    assert flash is not None, "flash-attn-4 does not import: pip install 'magbench[flash]'"
    g = torch.Generator(device=dev).manual_seed(0)
    lq = BLOCK * FT
    q = torch.randn(1, lq, HEADS, HEAD_DIM, device=dev, generator=g, dtype=torch.bfloat16)
    cache_tokens = (126 + 9) * FT
    kbuf = torch.randn(1, cache_tokens, HEADS, HEAD_DIM, device=dev, generator=g, dtype=torch.bfloat16)
    vbuf = torch.randn(1, cache_tokens, HEADS, HEAD_DIM, device=dev, generator=g, dtype=torch.bfloat16)
    t0 = time.perf_counter()
    flash(q, kbuf[:, :FT], vbuf[:, :FT])
    torch.cuda.synchronize(dev)
    jit_s = time.perf_counter() - t0
    rows = []
    cases = [("self", n) for n in (13, 26, 27, 66, 126)] + [("cross", 512)]
    for kind, n in cases:
        if kind == "self":
            start = 2 * FT  # a view that does not start at the buffer's beginning, as ring slots do
            k, v = kbuf[:, start : start + n * FT], vbuf[:, start : start + n * FT]
            lk = n * FT
        else:
            k = torch.randn(1, n, HEADS, HEAD_DIM, device=dev, generator=g, dtype=torch.bfloat16)
            v = torch.randn(1, n, HEADS, HEAD_DIM, device=dev, generator=g, dtype=torch.bfloat16)
            lk = n
        ref = sdpa(q.float(), k.float(), v.float())
        out_f = flash(q, k, v)[0]
        out_s = sdpa(q, k, v)
        err_f, err_s = rel(out_f, ref), rel(out_s, ref)
        flops = 4 * lq * lk * HEADS * HEAD_DIM
        ms_f = time_ms(lambda: flash(q, k, v))
        ms_s = time_ms(lambda: sdpa(q, k, v))
        rows.append({
            "kind": kind, "attended_frames": n if kind == "self" else None, "lk": lk,
            "rel_err_flash_vs_fp32": err_f, "rel_err_sdpa_vs_fp32": err_s,
            "max_abs_flash_vs_sdpa": (out_f.float() - out_s.float()).abs().max().item(),
            "flash_ms": ms_f, "sdpa_ms": ms_s, "flash_tflops": flops / ms_f / 1e9, "sdpa_tflops": flops / ms_s / 1e9,
            "kv_are_cache_views": kind == "self",
        })
        del ref
    return [{"jit_first_call_s": jit_s}] + rows


def model_check(dev: torch.device) -> dict:
    wan = build_transformer("self-forcing", dev, torch.bfloat16, random_weights=True)
    model, cfg = wan.generator, wan.generator.cfg
    g = torch.Generator(device=dev).manual_seed(1)
    x = torch.randn(1, 3, 16, 60, 104, device=dev, generator=g, dtype=torch.bfloat16)
    t = torch.full((1, 3), 937.5, device=dev)
    ctx = model.context_kv(torch.randn(1, 64, cfg.text_dim, device=dev, generator=g, dtype=torch.bfloat16))
    outs = {}
    with torch.no_grad():
        for backend in ("sdpa", "flash"):
            model.set_kernels(attention=backend)
            outs[backend] = model(x, t, ctx, FullHistory(cfg.num_layers, 3), start_frame=0, commit=False).float()
    auto = AttentionKernel("auto").describe(x)
    return {"model_rel_diff_flash_vs_sdpa": rel(outs["flash"], outs["sdpa"]), "auto_picks": auto}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    dev = torch.device("cuda")
    rows = kernel_rows(dev)
    jit = rows.pop(0)["jit_first_call_s"]
    model = model_check(dev)
    print(f"{torch.cuda.get_device_name(dev)}; flash-attn-4 first call (JIT) {jit:.1f} s; auto picks {model['auto_picks']}")
    print(f"{'kind':<6}{'frames':>7}{'Lk':>8}{'err flash':>11}{'err sdpa':>10}{'max|f-s|':>10}{'flash ms':>10}{'sdpa ms':>9}{'flash TF/s':>11}{'sdpa TF/s':>10}{'x':>6}")
    for r in rows:
        print(f"{r['kind']:<6}{r['attended_frames'] or '':>7}{r['lk']:>8}{r['rel_err_flash_vs_fp32']:>11.2e}{r['rel_err_sdpa_vs_fp32']:>10.2e}"
              f"{r['max_abs_flash_vs_sdpa']:>10.2e}{r['flash_ms']:>10.2f}{r['sdpa_ms']:>9.2f}{r['flash_tflops']:>11.0f}{r['sdpa_tflops']:>10.0f}"
              f"{r['sdpa_ms'] / r['flash_ms']:>6.2f}")
    print(f"whole model forward, flash vs sdpa: relative difference {model['model_rel_diff_flash_vs_sdpa']:.2e}")
    if args.out:
        Path(args.out).write_text(json.dumps({"gpu": torch.cuda.get_device_name(dev), "torch": torch.__version__,
                                              "jit_first_call_s": jit, "rows": rows, **model}, indent=1))
    for r in rows:
        assert r["rel_err_flash_vs_fp32"] < max(1.5 * r["rel_err_sdpa_vs_fp32"], 1e-3), r
        assert r["rel_err_flash_vs_fp32"] < 1e-2, r
    assert model["model_rel_diff_flash_vs_sdpa"] < 3e-2, model
    assert model["auto_picks"] == "flash-attn-4", model
    print("check_flash: OK")


if __name__ == "__main__":
    main()
