"""Driving a tiny Wan method by hand as the harness would (shared by the memory-source tests of
the original methods and the rope-memory methods): tiny config, random weights, float32, CPU."""

from __future__ import annotations

import torch

from magbench.method import SampleInfo
from magbench.registry import METHODS

import magbench.baselines.wan  # noqa: F401  (registers the methods)

H, W = 16, 32
N_CTX, N_TGT = 21, 24  # 2 context blocks (6 latent frames), 2 generated blocks


def tiny_method(name: str, tmp_path, **opts):
    m = METHODS.get(name)(config="tiny", random_weights=True, resolution=[H, W], prompt_cache=str(tmp_path), **opts)
    m.name = name
    m.load("cpu", torch.float32)
    return m


def sample(source: str = "generated", n_tgt: int = N_TGT) -> SampleInfo:
    return SampleInfo("s0", "a red car drives along the coast", 5, H, W, 16.0, N_CTX, n_tgt, memory_source=source)


def frames(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, H, W, generator=torch.Generator().manual_seed(seed))


def spy_commits(m) -> list[torch.Tensor]:
    """Every block the sampler's cache-update pass receives, in order."""
    seen: list[torch.Tensor] = []
    real = m.sampler.commit

    def commit(clean):
        seen.append(clean.detach().clone())
        return real(clean)

    m.sampler.commit = commit
    return seen


def run_like_harness(m, ctx: torch.Tensor, target: torch.Tensor, source: str) -> torch.Tensor:
    """What the harness does: memorize, then each block, then (ground truth) its span."""
    m.reset(sample(source, target.shape[0]))
    m.memorize(ctx)
    out, produced = [], 0
    for block in m.generate(target.shape[0]):
        out.append(block)
        if source == "ground-truth":
            m.remember_ground_truth(target[produced : produced + block.shape[0]])
        produced += block.shape[0]
    return torch.cat(out)
