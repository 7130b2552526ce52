#!/usr/bin/env python
"""GPU check: blocks generated with the denoising passes replayed from CUDA graphs (method option
``cuda_graphs``) against the same blocks run eagerly (480x832, bf16, random weights, same seeds),
for mag and self-forcing with their memory full. Fails unless they are bit-identical and the
graphs were actually replayed."""

from __future__ import annotations

import torch

from magbench.baselines.wan.build import build_transformer


def main() -> None:
    dev, dtype = torch.device("cuda"), torch.bfloat16
    h, w = 60, 104
    gen = mem = None  # random models built once, shared by the runs (same weights options)
    for policy in ("mag", "self-forcing"):
        outs, counts = {}, None
        for graphs in (False, True):
            reuse = None if gen is None else (gen, mem if policy == "mag" else None)
            wan = build_transformer(policy, dev, dtype, models=reuse, random_weights=True, cuda_graphs=graphs)
            gen, mem = wan.generator, wan.memory_model or mem
            cfg, s = wan.generator.cfg, wan.sampler
            g = torch.Generator(device=dev).manual_seed(0)
            text = torch.randn(1, 64, cfg.text_dim, device=dev, generator=g).to(dtype)
            s.reset(text, empty_embeds=text[:, :1], seed=0, latent_shape=(cfg.in_dim, h, w))
            with torch.no_grad():
                for _ in range(22):
                    s.commit(torch.randn(1, 3, cfg.in_dim, h, w, device=dev, generator=g).to(dtype))
                outs[graphs] = torch.cat([s.next_block() for _ in range(3)], dim=1).float()
            if graphs:
                counts = s.graph_counts  # eager / captured / replayed passes, for the report
            del s, wan
        a, b = outs[False], outs[True]
        diff = (a - b).abs().max().item()
        print(f"{policy}: graphed vs eager, 3 blocks: max |diff| {diff:.3e}; passes {counts}")
        assert diff == 0.0, f"{policy}: CUDA-graph replay differs from eager by {diff:.3e}"
        assert counts and counts["replayed"] > 0, f"{policy}: no pass was replayed from a graph"


if __name__ == "__main__":
    main()
