#!/usr/bin/env python
"""GPU check: one Wan forward pass (480x832, bf16, random weights, the self-forcing method's
model) with the elementwise groups fused (torch.compile) and eager, on the same inputs. Fails
unless they agree to bf16 rounding (two op orders in bf16 differ by ~1e-2 relative over the
30 layers; the float32 graphs are checked to 1e-5 in tests/test_wan_fused_elementwise.py)."""

from __future__ import annotations

import torch

from magbench.baselines.wan.build import build_transformer
from magbench.baselines.wan.memory import FullHistory
from magbench.baselines.wan.model import linear_gelu

TOLERANCE = 3e-2


def main() -> None:
    dev = torch.device("cuda")
    wan = build_transformer("self-forcing", dev, torch.bfloat16, random_weights=True)
    model, cfg = wan.generator, wan.generator.cfg
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(1, 3, 16, 60, 104, device=dev, generator=g, dtype=torch.bfloat16)
    t = torch.full((1, 3), 937.5, device=dev)
    ctx = model.context_kv(torch.randn(1, 64, cfg.text_dim, device=dev, generator=g, dtype=torch.bfloat16))
    outs = {}
    with torch.no_grad():
        for fused in (False, True):
            model.set_kernels(fused_elementwise=fused)
            outs[fused] = model(x, t, ctx, FullHistory(cfg.num_layers, 3), start_frame=0, commit=False).float()
    rel = ((outs[True] - outs[False]).norm() / outs[False].norm()).item()
    print(f"fused vs eager forward, bf16: relative difference {rel:.2e} (tolerance {TOLERANCE:.0e})")
    assert torch.isfinite(outs[True]).all(), "non-finite output from the fused path"
    assert rel < TOLERANCE, f"fused and eager differ by {rel:.2e}"

    # The FFN's GELU in the matmul epilogue must be Wan's tanh approximation (the CPU kernel of
    # torch._addmm_activation is the erf GELU; the CUDA one is asserted here), checked in float32.
    torch.backends.cuda.matmul.allow_tf32 = False
    lin = torch.nn.Linear(cfg.dim, cfg.ffn_dim, device=dev)
    h = torch.randn(1, 4680, cfg.dim, device=dev, generator=g)
    fused_gelu = linear_gelu(h, lin, fused=True)
    tanh_ref = torch.nn.functional.gelu(lin(h), approximate="tanh")
    erf_ref = torch.nn.functional.gelu(lin(h))
    d_tanh, d_erf = (fused_gelu - tanh_ref).abs().max().item(), (fused_gelu - erf_ref).abs().max().item()
    print(f"linear+GELU epilogue vs tanh GELU {d_tanh:.1e}, vs erf GELU {d_erf:.1e} (float32)")
    assert d_tanh < 1e-4 and d_tanh < d_erf / 5, "the fused GELU is not the tanh approximation"


if __name__ == "__main__":
    main()
