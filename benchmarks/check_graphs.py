"""On the GPU: blocks generated with the denoising passes replayed from CUDA graphs against the
same blocks run eagerly (480x832, bf16, random weights, same seeds), for mag and self-forcing
with their memory full; prints the differences and the pass counts."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_wan  # noqa: E402

sys.argv = sys.argv[:1]
args = bench_wan.parse()
cfg = bench_wan.WanConfig.t2v_1_3b()
dev, dtype = torch.device("cuda"), torch.bfloat16
models = {"generator": bench_wan.build_model(cfg, dev, dtype, 0, args), "memory": bench_wan.build_model(cfg, dev, dtype, 1, args)}
h, w = 60, 104
for policy in ("mag", "self-forcing"):
    outs, counts = {}, None
    for graphs in (False, True):
        mem = bench_wan.make_memory(policy, cfg, args)
        s = bench_wan.BlockSampler(models["generator"], mem, memory_model=models["memory"] if policy == "mag" else None, cuda_graphs=graphs)
        g = torch.Generator(device=dev).manual_seed(0)
        text = torch.randn(1, 64, cfg.text_dim, device=dev, generator=g).to(dtype)
        s.reset(text, empty_embeds=text[:, :1], seed=0, latent_shape=(cfg.in_dim, h, w))
        with torch.no_grad():
            for _ in range(22):
                s.commit(torch.randn(1, 3, cfg.in_dim, h, w, device=dev, generator=g).to(dtype))
            outs[graphs] = torch.cat([s.next_block() for _ in range(3)], dim=1).float()
        if graphs:
            counts = dict(s._graphed.counts)
        del s, mem
    a, b = outs[False], outs[True]
    rel = ((a - b).norm() / a.norm()).item()
    print(f"{policy}: graphed vs eager, 3 blocks: max |diff| {(a - b).abs().max().item():.3e}, relative {rel:.2e}; passes {counts}")
