"""On the GPU: one Wan forward pass (480x832, bf16, random weights) with the elementwise groups
fused (torch.compile) and eager, on the same inputs; prints the relative difference."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_wan  # noqa: E402
from magbench.baselines.wan.memory import FullHistory  # noqa: E402
from magbench.baselines.wan.model import set_fused_elementwise  # noqa: E402

sys.argv = sys.argv[:1]
args = bench_wan.parse()
cfg = bench_wan.WanConfig.t2v_1_3b()
dev = torch.device("cuda")
model = bench_wan.build_model(cfg, dev, torch.bfloat16, 0, args)
g = torch.Generator(device=dev).manual_seed(0)
x = torch.randn(1, 3, 16, 60, 104, device=dev, generator=g, dtype=torch.bfloat16)
t = torch.full((1, 3), 937.5, device=dev)
ctx = model.context_kv(torch.randn(1, 64, cfg.text_dim, device=dev, generator=g, dtype=torch.bfloat16))
outs = {}
with torch.no_grad():
    for fused in (False, True):
        set_fused_elementwise(fused)
        mem = FullHistory(cfg.num_layers, 3)
        outs[fused] = model(x, t, ctx, mem, start_frame=0, commit=False).float()
rel = ((outs[True] - outs[False]).norm() / outs[False].norm()).item()
print(f"fused vs eager forward, bf16: relative difference {rel:.2e} (bf16 rounding is ~4e-3 per op)")
