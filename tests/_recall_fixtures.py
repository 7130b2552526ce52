"""A network that recalls exactly what its memory holds, for testing the memory tasks' plumbing.

Random weights cannot recall anything (their output is a random function of what they attend
to), so a recall test on them would measure nothing about the memory. :class:`CopyNetwork` has
the interface of :class:`~magbench.baselines.wan.model.CausalWan` as the samplers and the KV
memories use it (``cfg``, ``patch_embedding.weight``, ``context_kv``, ``forward`` through
``memory.begin/attend/after_attention/end``) and one rule: a committed token's key is a one-hot
code of its absolute position (latent frame x patch), its value the token itself; a denoising
token's query is that code, sharpened, and its own key is zero. So a query finds the memorised
token at its own position when the memory holds it (attention weight 1 - O(e^-50)) and otherwise
gets an average of whatever the memory holds; the network then predicts the flow that makes x0
the retrieved latent. Through a Wan method's own memory and sampler, recall of a held block is
exact (its decoded frames are the VAE round trip's), of an evicted one far off.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from magbench.baselines.wan.model import WanConfig
from magbench.baselines.wan.sampler import FlowSchedule


class CopyNetwork(nn.Module):
    def __init__(self, cfg: WanConfig, schedule: FlowSchedule, max_frames: int = 64, frame_tokens: int = 6, sharpness: float = 50.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.schedule = schedule
        self.max_frames, self.frame_tokens, self.sharpness = max_frames, frame_tokens, sharpness
        self.patch_embedding = nn.Conv3d(cfg.in_dim, 1, kernel_size=cfg.patch_size, stride=cfg.patch_size)  # device/dtype only

    def context_kv(self, text: torch.Tensor) -> list:
        return [None] * self.cfg.num_layers

    def _codes(self, start: int, frames: int) -> torch.Tensor:
        dim = self.max_frames * self.frame_tokens
        pos = torch.arange(start * self.frame_tokens, (start + frames) * self.frame_tokens)
        valid = (pos >= 0) & (pos < dim)
        codes = torch.zeros(pos.numel(), dim)
        codes[valid] = F.one_hot(pos[valid], dim).float()
        return codes  # [L, dim]; a position outside the code (negative) matches nothing

    def forward(self, x, t, context_kv, memory, start_frame, commit, rope=None):
        b, f, c, h, w = x.shape
        ph, pw = self.cfg.patch_size[1:]
        gh, gw = h // ph, w // pw
        assert gh * gw == self.frame_tokens
        tokens = x.reshape(b, f, c, gh, ph, gw, pw).permute(0, 1, 3, 5, 2, 4, 6).reshape(b, f * gh * gw, -1)
        codes = self._codes(start_frame, f).to(x)[None].expand(b, -1, -1)
        dim = codes.shape[-1]
        v = F.pad(tokens, (0, dim - tokens.shape[-1]))[:, :, None]
        k = (codes if commit else torch.zeros_like(codes))[:, :, None]
        q = (self.sharpness * codes)[:, :, None]
        memory.begin(start_frame, f, gh * gw, commit)
        out = None
        for layer in range(memory.num_layers if hasattr(memory, "num_layers") else memory.memory.num_layers):
            keys, values = memory.attend(layer, k, v)
            o = F.scaled_dot_product_attention(q.transpose(1, 2), keys.transpose(1, 2), values.transpose(1, 2), scale=1.0)
            out = o.transpose(1, 2) if out is None else out
            memory.after_attention(layer)
        memory.end()
        got = out[:, :, 0, : tokens.shape[-1]].reshape(b, f, gh, gw, c, ph, pw).permute(0, 1, 4, 2, 5, 3, 6).reshape(x.shape)
        if commit:
            return torch.zeros_like(x)
        sigma = self.schedule.sigma(float(t.flatten()[0]))
        return (x - got) / sigma  # x0 = x - sigma * flow = the retrieved latents


def install_copier(method) -> CopyNetwork:
    """Put a :class:`CopyNetwork` in place of a loaded Wan method's generator (and memory model)."""
    net = CopyNetwork(method.generator.cfg, method.sampler.schedule)
    method.generator = method.sampler.generator = net
    if method.memory_model is not None:
        method.memory_model = method.sampler.memory_model = net
        method.sampler._mem_ctx = net.context_kv(None)
    method.sampler._gen_ctx = net.context_kv(None)
    return net
