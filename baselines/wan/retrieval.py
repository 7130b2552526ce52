"""LongLive-RAG's retrieval encoder: a small convolutional network that embeds one latent frame
([C, h, w] of the Wan VAE) as a unit vector, whose cosine similarities choose what is retrieved.

As the encoder half of the reference's ``LatentAE`` (qixinhu11/LongLive-RAG @ 973884a,
``ae/model.py``, ``Encoder`` + ``LatentAE.encode``; the decoder only trains it and is not built):
per hidden width a stride-2 3x3 conv, GroupNorm, SiLU and a pre-norm residual block (GroupNorm,
SiLU, conv, GroupNorm, SiLU, conv, plus the input); then GroupNorm, SiLU, a global average pool,
a linear projection and an L2 normalisation. GroupNorm takes 32 groups where the width allows,
else 16, 8, 4 or 1 (``_num_groups``). Parameter names are the reference's ``encoder.*``, so its
checkpoint (``checkpoints/ae_latent_mem.pt``: ``{"model": state dict, "config": {...}}``) loads as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from magbench.errors import MagbenchError


@dataclass(frozen=True)
class RetrievalEncoderConfig:
    """``AEConfig``'s model fields (``ae/config.py``; the released encoder: 16 -> [64, 128, 256] -> 1024)."""

    in_channels: int = 16
    hidden_dims: tuple[int, ...] = (64, 128, 256)
    latent_dim: int = 1024

    @classmethod
    def tiny(cls) -> "RetrievalEncoderConfig":
        return cls(in_channels=16, hidden_dims=(6, 10), latent_dim=32)

    @classmethod
    def from_checkpoint(cls, cfg: dict[str, Any]) -> "RetrievalEncoderConfig":
        try:
            return cls(int(cfg["in_channels"]), tuple(int(x) for x in cfg["hidden_dims"]), int(cfg["latent_dim"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise MagbenchError(f"retrieval encoder: the checkpoint's config lacks the model fields ({exc})") from exc


def _groups(channels: int) -> int:
    for g in (32, 16, 8, 4, 1):
        if channels % g == 0:
            return g
    return 1


class _Residual(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.GroupNorm(_groups(dim), dim), nn.SiLU(), nn.Conv2d(dim, dim, 3, padding=1),
            nn.GroupNorm(_groups(dim), dim), nn.SiLU(), nn.Conv2d(dim, dim, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class RetrievalEncoder(nn.Module):
    """``encode(frames [N, C, h, w]) -> [N, latent_dim]`` unit vectors (any h, w: the pool is global)."""

    def __init__(self, cfg: RetrievalEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        ch = cfg.in_channels
        for width in cfg.hidden_dims:
            layers += [nn.Conv2d(ch, width, 3, stride=2, padding=1), nn.GroupNorm(_groups(width), width), nn.SiLU(), _Residual(width)]
            ch = width
        self.conv_stack = nn.Sequential(*layers)
        self.final_norm = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU())
        self.fc = nn.Linear(ch, cfg.latent_dim)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        p = self.fc.weight
        h = self.final_norm(self.conv_stack(frames.to(p.device, p.dtype)))
        return F.normalize(self.fc(h.mean(dim=(-2, -1))), dim=-1)

    def init_random(self, seed: int = 0) -> "RetrievalEncoder":
        """Seeded random weights (tests and ``random_weights``), residual branches not zeroed (the
        reference zeroes them at init, which would make them vanish from a test)."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                r = torch.randn(p.shape, generator=g)
                if p.ndim > 1:
                    p.copy_(r / p[0].numel() ** 0.5)
                elif name.endswith("weight"):  # GroupNorm scale
                    p.copy_(1.0 + 0.1 * r)
                else:
                    p.copy_(0.02 * r)
        return self.eval().requires_grad_(False)


def load_retrieval_encoder(path: str | Path) -> RetrievalEncoder:
    """The encoder of a LongLive-RAG ``LatentAE`` checkpoint (``torch.load(weights_only=True)``)."""
    p = Path(path)
    try:
        ckpt = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise MagbenchError(f"{p}: not a loadable retrieval-encoder checkpoint (torch.load(weights_only=True): {exc})") from exc
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise MagbenchError(f"{p}: expected a LatentAE checkpoint with 'model' and 'config' keys")
    model = RetrievalEncoder(RetrievalEncoderConfig.from_checkpoint(ckpt["config"]))
    state = {k[len("encoder."):]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MagbenchError(f"{p}: encoder weights do not fit (missing {missing[:4]}, unexpected {unexpected[:4]})")
    return model.eval().requires_grad_(False)
