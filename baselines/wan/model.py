"""A causal Wan2.1 text-to-video transformer that attends through a pluggable KV memory.

Parameter names and shapes follow Wan's original ``WanModel`` (``wan/modules/model.py`` of
Wan2.1, reused unchanged by Self-Forcing and MAG), so their checkpoints load without renaming:
``patch_embedding``, ``text_embedding.{0,2}``, ``time_embedding.{0,2}``, ``time_projection.1``,
``blocks.N.{self_attn,cross_attn}.{q,k,v,o,norm_q,norm_k}``, ``blocks.N.norm3``,
``blocks.N.ffn.{0,2}``, ``blocks.N.modulation``, ``head.head``, ``head.modulation``.

Verified against the reference (Xilluill/MAG ``wan/modules/model.py`` and ``causal_model.py``):

* time: ``sinusoidal_embedding_1d`` is [cos | sin] of ``t * 10000^(-i/half)`` (float64), then
  ``time_embedding`` (Linear, SiLU, Linear) gives ``e``; ``time_projection`` (SiLU, Linear) gives
  the 6-way modulation ``e0`` per latent frame (causal models get a timestep per frame);
* block: ``mod = modulation + e0`` split as (shift, scale, gate) for self-attention and
  (shift, scale, gate) for the FFN; ``x += gate * attn(norm1(x) * (1 + scale) + shift)``;
  ``x += cross_attn(norm3(x), context)`` (norm3 is an affine LayerNorm, ``cross_attn_norm=True``
  in Wan's T2V config; no gate); ``x += gate * ffn(norm2(x) * (1 + scale) + shift)``;
  norm1/norm2/head.norm are LayerNorms without affine parameters, eps 1e-6;
* q/k RMSNorm is taken over the whole model width (before the split into heads), in float32;
* 3D RoPE: head_dim 128 gives 64 complex frequencies split (22, 21, 21) over
  (frame, height, width), each part with its own base ``10000^(-2i/d_part)``, rotating
  consecutive channel pairs; the frame index is absolute (``start_frame + f``), so cached keys
  carry their position (keys are cached after RoPE); a memory that positions frames relative to
  its window gives the block's index itself (``KVMemory.rope_frame``) and, with
  ``rotates_keys``, gets the keys before RoPE too and rotates what it holds when read
  (:mod:`.rope_memory`);
* cross-attention: text context padded with zeros to ``text_len`` (512) before
  ``text_embedding``, every one of the 512 positions attended (``context_lens=None``);
* head: ``(head.modulation + e)`` split as (shift, scale), ``head(norm(x) * (1 + scale) + shift)``;
  unpatchify orders the output channels as (pt, ph, pw, c).

Differences that do not change the function: RoPE is applied in float32 with precomputed
cos/sin tables (the reference uses complex float64 and casts back to bf16); cross-attention K/V
of a prompt are computed once and reused (the reference caches them too); q, k, v projections
may run as one fused matmul (:meth:`CausalWan.fuse_qkv`); with ``fused_elementwise`` on CUDA the
elementwise work between matmuls runs as a few compiled groups and the FFN's GELU in its matmul's
epilogue (same function, bf16 rounding in another order).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from magbench.baselines.wan.attention import AttentionKernel

if TYPE_CHECKING:  # pragma: no cover
    from magbench.baselines.wan.memory import KVMemory


@dataclass(frozen=True)
class WanConfig:
    """Wan2.1 transformer hyper-parameters. Defaults: Wan2.1-T2V-1.3B."""

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512
    text_dim: int = 4096
    freq_dim: int = 256
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @classmethod
    def t2v_1_3b(cls) -> "WanConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "WanConfig":
        """For CPU tests: same structure, random weights, seconds per video."""
        return cls(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=8, freq_dim=32)

    @classmethod
    def named(cls, name: str) -> "WanConfig":
        table = {"t2v-1.3b": cls.t2v_1_3b, "wan2.1-t2v-1.3b": cls.t2v_1_3b, "tiny": cls.tiny}
        if name not in table:
            from magbench.errors import MagbenchError

            raise MagbenchError(f"unknown Wan config {name!r}; known: {', '.join(sorted(table))}")
        return table[name]()

    @classmethod
    def from_json(cls, cfg: dict[str, Any], base: "WanConfig | None" = None) -> "WanConfig":
        """Read a Wan/diffusers ``config.json`` (unknown keys such as ``_class_name`` or MAG's
        ``local_attn_size`` are ignored: they do not change the parameters)."""
        known = {f.name for f in fields(cls)}
        values = asdict(base or cls())
        for k, v in cfg.items():
            if k in known:
                values[k] = tuple(v) if k == "patch_size" else v
        if cfg.get("model_type", "t2v") != "t2v":
            from magbench.errors import MagbenchError

            raise MagbenchError(f"only Wan text-to-video checkpoints are supported, got model_type={cfg['model_type']!r}")
        return cls(**values)

    def param_count(self) -> int:
        """Parameters of the transformer (for FLOP estimates)."""
        d, f, t = self.dim, self.ffn_dim, self.text_dim
        p = math.prod(self.patch_size)
        n = self.in_dim * p * d + d
        n += t * d + d + d * d + d  # text_embedding
        n += self.freq_dim * d + d + d * d + d + d * 6 * d + 6 * d  # time_embedding, projection
        per_block = 8 * (d * d + d) + 4 * d + 2 * d + (d * f + f) + (f * d + d) + 6 * d
        n += self.num_layers * per_block
        n += d * self.out_dim * p + self.out_dim * p + 2 * d
        return n


# -- embeddings -----------------------------------------------------------------------------------
def sinusoidal_embedding(dim: int, t: torch.Tensor) -> torch.Tensor:
    half = dim // 2
    pos = t.to(torch.float64).flatten()
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    arg = torch.outer(pos, freqs)
    return torch.cat([torch.cos(arg), torch.sin(arg)], dim=1)


# -- fused elementwise work -------------------------------------------------------------------------
# Between the matmuls a block runs ~40 small memory-bound ops (RoPE and RMSNorm in float32,
# LayerNorm + modulation, gated residuals), most of its kernel launches. With
# ``fused_elementwise`` (the model's argument) each group below runs on CUDA as one
# torch.compile'd graph (static shapes, no graph breaks: the KV memory stays outside); on the
# CPU, and with ``fused_elementwise=False``, the same functions run eagerly.
_COMPILED: dict[str, Callable] = {}  # one compiled graph per function, shared by every model


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return xf.type_as(x) * weight


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, L, H, D]; rotates consecutive channel pairs (Wan's view_as_complex layout)."""
    xf = x.float().unflatten(-1, (-1, 2))
    x0, x1 = xf[..., 0], xf[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).type_as(x)


def rotate(x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """RoPE of ``x`` [B, L, H, D] with (cos, sin) tables of :class:`Rope3D` (the same rotation
    the model applies to q and k)."""
    return _rope(x, *tables)


def qk_norm_rope(
    q: torch.Tensor, k: torch.Tensor, wq: torch.Tensor | None, wk: torch.Tensor | None, eps: float,
    heads: int, cos: torch.Tensor, sin: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [B, L, C] -> RMSNorm over C (when weights are given), split into heads, RoPE."""
    if wq is not None:
        q, k = _rms(q, wq, eps), _rms(k, wk, eps)
    q, k = q.unflatten(-1, (heads, -1)), k.unflatten(-1, (heads, -1))
    return _rope(q, cos, sin), _rope(k, cos, sin)


def qk_norm_rope_keep(
    q: torch.Tensor, k: torch.Tensor, wq: torch.Tensor | None, wk: torch.Tensor | None, eps: float,
    heads: int, cos: torch.Tensor, sin: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`qk_norm_rope`, also returning k before RoPE (for memories that rotate keys when read)."""
    if wq is not None:
        q, k = _rms(q, wq, eps), _rms(k, wk, eps)
    q, k = q.unflatten(-1, (heads, -1)), k.unflatten(-1, (heads, -1))
    return _rope(q, cos, sin), _rope(k, cos, sin), k


def norm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float, n_frames: int) -> torch.Tensor:
    """LayerNorm without affine, then per-frame ``h * (1 + scale) + shift``."""
    h = F.layer_norm(x, x.shape[-1:], eps=eps).type_as(x).unflatten(1, (n_frames, -1))
    return (h * (1 + scale.unsqueeze(2)) + shift.unsqueeze(2)).flatten(1, 2)


def gated_residual(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor, n_frames: int) -> torch.Tensor:
    return x + (y.unflatten(1, (n_frames, -1)) * gate.unsqueeze(2)).flatten(1, 2)


def residual_layer_norm(
    x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
    n_frames: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gated residual after self-attention, then norm3 (affine LayerNorm) of its result, in one
    pass: (x', norm3(x'))."""
    x = gated_residual(x, y, gate, n_frames)
    return x, F.layer_norm(x, x.shape[-1:], weight, bias, eps).type_as(x)


def add_norm_modulate(
    x: torch.Tensor, y: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float, n_frames: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cross-attention residual, then the FFN's norm and modulation, in one pass: (x', h)."""
    x = x + y
    return x, norm_modulate(x, shift, scale, eps, n_frames)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return _rms(x, weight, eps)


def linear_gelu(x: torch.Tensor, linear: nn.Linear, fused: bool) -> torch.Tensor:
    """``gelu_tanh(linear(x))``; fused on CUDA: the GELU in the matmul's epilogue (cuBLASLt), not a
    separate pass over the FFN's widest activation."""
    if fused and x.is_cuda and linear.bias is not None:
        out = torch._addmm_activation(linear.bias, x.flatten(0, -2), linear.weight.t(), use_gelu=True)
        return out.unflatten(0, x.shape[:-1])
    return F.gelu(linear(x), approximate="tanh")


def elementwise(fn: Callable, fused: bool, x: torch.Tensor) -> Callable:
    """``fn`` itself, or its compiled graph when ``fused`` and ``x`` is on CUDA."""
    if not (fused and x.is_cuda):
        return fn
    compiled = _COMPILED.get(fn.__name__)
    if compiled is None:
        compiled = _COMPILED[fn.__name__] = torch.compile(fn, fullgraph=True, dynamic=False)
    return compiled


class Rope3D:
    """Wan's 3D rotary embedding, as cos/sin tables indexed by (frame, row, column)."""

    def __init__(self, head_dim: int) -> None:
        d = head_dim
        self.parts = (d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6))  # (44, 42, 42) for d=128
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def _angles(positions: torch.Tensor, dim: int) -> torch.Tensor:
        inv = 1.0 / torch.pow(10000.0, torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        return torch.outer(positions.to(torch.float64), inv)  # [n, dim/2]

    def tables(self, start_frame: int, f: int, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for ``f`` frames at positions ``start_frame, start_frame + 1, ...``."""
        key = (start_frame, f, h, w, device)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        return self._build(key, torch.arange(start_frame, start_frame + f), h, w, device)

    def frame_tables(self, frames: "list[int] | tuple[int, ...]", h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Tables for frames at the given positions, one per frame in order (a memory that rotates
        keys when read gives each held frame the position it decides)."""
        frames = tuple(int(f) for f in frames)
        key = ("frames", frames, h, w, device)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        return self._build(key, torch.tensor(frames, dtype=torch.long), h, w, device)

    def _build(self, key: tuple, positions: torch.Tensor, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        f = positions.numel()
        af = self._angles(positions, self.parts[0])
        ah = self._angles(torch.arange(h), self.parts[1])
        aw = self._angles(torch.arange(w), self.parts[2])
        ang = torch.cat(
            [
                af[:, None, None, :].expand(f, h, w, -1),
                ah[None, :, None, :].expand(f, h, w, -1),
                aw[None, None, :, :].expand(f, h, w, -1),
            ],
            dim=-1,
        ).reshape(f * h * w, 1, -1)  # [L, 1, D/2]
        out = (torch.cos(ang).float().to(device), torch.sin(ang).float().to(device))
        if len(self._cache) > 64:  # positions grow with the video; keep the cache bounded
            self._cache.clear()
        self._cache[key] = out
        return out


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _rms(x, self.weight, self.eps)


class LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).type_as(x)


# -- layers ---------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    def __init__(self, cfg: WanConfig, layer: int, attention: AttentionKernel, fused_elementwise: bool) -> None:
        super().__init__()
        d = cfg.dim
        self.layer = layer
        self.attention = attention
        self.fused_elementwise = fused_elementwise
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.norm_q = RMSNorm(d, cfg.eps) if cfg.qk_norm else nn.Identity()
        self.norm_k = RMSNorm(d, cfg.eps) if cfg.qk_norm else nn.Identity()
        self._qkv: tuple[torch.Tensor, torch.Tensor] | None = None

    def project(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], keep_raw: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """q and k normalised and rotated, v: each [B, L, H, D]; with ``keep_raw`` also k before
        RoPE (a fourth tensor), for memories that store keys unrotated."""
        if self._qkv is not None:
            q, k, v = F.linear(x, *self._qkv).chunk(3, dim=-1)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)
        norm = isinstance(self.norm_q, RMSNorm)
        wq, wk = (self.norm_q.weight, self.norm_k.weight) if norm else (None, None)
        eps = self.norm_q.eps if norm else 0.0
        # v of the fused projection is a strided view (every third chunk): made contiguous here, the
        # memory's copy into its cache is a plain vectorised one instead of a strided gather.
        v = v.unflatten(-1, (self.num_heads, self.head_dim)).contiguous()
        if keep_raw:
            q, k, raw = elementwise(qk_norm_rope_keep, self.fused_elementwise, x)(q, k, wq, wk, eps, self.num_heads, *rope)
            return q, k, v, raw
        q, k = elementwise(qk_norm_rope, self.fused_elementwise, x)(q, k, wq, wk, eps, self.num_heads, *rope)
        return q, k, v

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], memory: "KVMemory") -> torch.Tensor:
        if memory.rotates_keys:
            q, k, v, raw = self.project(x, rope, keep_raw=True)
            keys, values = memory.attend(self.layer, k, v, raw)
        else:
            q, k, v = self.project(x, rope)
            keys, values = memory.attend(self.layer, k, v)
        out = self.attention(q, keys, values)
        memory.after_attention(self.layer)
        return self.o(out.flatten(2))


class CrossAttention(nn.Module):
    def __init__(self, cfg: WanConfig, attention: AttentionKernel, fused_elementwise: bool = True) -> None:
        super().__init__()
        d = cfg.dim
        self.attention = attention
        self.fused_elementwise = fused_elementwise
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.norm_q = RMSNorm(d, cfg.eps) if cfg.qk_norm else nn.Identity()
        self.norm_k = RMSNorm(d, cfg.eps) if cfg.qk_norm else nn.Identity()

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (context.shape[0], -1, self.num_heads, self.head_dim)
        return self.norm_k(self.k(context)).view(shape), self.v(context).view(shape)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        q = self.q(x)
        if isinstance(self.norm_q, RMSNorm):
            q = elementwise(rms_norm, self.fused_elementwise, x)(q, self.norm_q.weight, self.norm_q.eps)
        q = q.view(x.shape[0], -1, self.num_heads, self.head_dim)
        return self.o(self.attention(q, *kv).flatten(2))


class Block(nn.Module):
    def __init__(self, cfg: WanConfig, layer: int, attention: AttentionKernel, fused_elementwise: bool) -> None:
        super().__init__()
        d = cfg.dim
        self.eps = cfg.eps  # norm1/norm2 of Wan: LayerNorms without weights, inside norm_modulate
        self.fused_elementwise = fused_elementwise
        self.self_attn = SelfAttention(cfg, layer, attention, fused_elementwise)
        self.norm3 = LayerNorm(d, eps=cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(cfg, attention, fused_elementwise)
        # Wan's parameter names (ffn.0, ffn.2); forward applies them through linear_gelu.
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, d))
        self.modulation = nn.Parameter(torch.randn(1, 6, d) / d**0.5)

    def forward(
        self,
        x: torch.Tensor,
        e0: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        context_kv: tuple[torch.Tensor, torch.Tensor],
        memory: "KVMemory",
    ) -> torch.Tensor:
        # x: [B, F*T, C]; e0: [B, F, 6, C] (one timestep per latent frame)
        b, n_frames = e0.shape[:2]
        mod = (self.modulation.unsqueeze(1) + e0).unbind(2)  # 6 x [B, F, C]
        fused = self.fused_elementwise
        modulate, residual = elementwise(norm_modulate, fused, x), elementwise(gated_residual, fused, x)
        eps = self.eps

        y = self.self_attn(modulate(x, mod[0], mod[1], eps, n_frames), rope, memory)
        if isinstance(self.norm3, LayerNorm):
            n3 = self.norm3
            x, h = elementwise(residual_layer_norm, fused, x)(x, y, mod[2], n3.weight, n3.bias, n3.eps, n_frames)
        else:
            x = h = residual(x, y, mod[2], n_frames)
        y = self.cross_attn(h, context_kv)
        x, h = elementwise(add_norm_modulate, fused, x)(x, y, mod[3], mod[4], eps, n_frames)
        y = self.ffn[2](linear_gelu(h, self.ffn[0], fused))
        return residual(x, y, mod[5], n_frames)


class Head(nn.Module):
    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        self.norm = LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        # e: [B, F, C]
        n_frames = e.shape[1]
        shift, scale = (self.modulation.unsqueeze(1) + e.unsqueeze(2)).unbind(2)
        h = self.norm(x).unflatten(1, (n_frames, -1))
        return self.head(h * (1 + scale.unsqueeze(2)) + shift.unsqueeze(2)).flatten(1, 2)


class CausalWan(nn.Module):
    """Wan2.1 T2V transformer run one block of latent frames at a time through a KV memory.

    ``forward(x, t, context_kv, memory, start_frame, commit)``: ``x`` [B, F, C, h, w] latents,
    ``t`` [B, F] timesteps, ``context_kv`` from :meth:`context_kv`, ``start_frame`` the absolute
    latent index of ``x[:, 0]`` (RoPE position), ``commit`` whether ``memory`` keeps this block
    (the clean cache-update pass) or only reads it (denoising passes). Returns the flow
    prediction, same shape as ``x``.

    ``attention``: "auto" (flash-attn-4 on Hopper/Blackwell when installed, else SDPA), "sdpa" or
    "flash" (see :mod:`.attention`); ``fused_elementwise``: the RoPE/RMSNorm/modulation/residual
    groups as torch.compile'd graphs on CUDA (eager on the CPU either way). Both are held by the
    modules (no process-wide state); :meth:`set_kernels` changes them on a built model, e.g. one
    loaded from a checkpoint.
    """

    def __init__(self, cfg: WanConfig, attention: str = "auto", fused_elementwise: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        kernel = AttentionKernel(attention)
        self.patch_embedding = nn.Conv3d(cfg.in_dim, d, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, d), nn.SiLU(), nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(Block(cfg, i, kernel, bool(fused_elementwise)) for i in range(cfg.num_layers))
        self.head = Head(cfg)
        self.rope = Rope3D(cfg.head_dim)

    # -- kernels ----------------------------------------------------------------------------------
    @property
    def attention(self) -> AttentionKernel:
        return self.blocks[0].self_attn.attention

    @property
    def fused_elementwise(self) -> bool:
        return self.blocks[0].fused_elementwise

    def set_kernels(self, attention: str | None = None, fused_elementwise: bool | None = None) -> "CausalWan":
        """Change the attention backend and/or the fused elementwise groups of every layer."""
        kernel = AttentionKernel(attention) if attention is not None else None
        for blk in self.blocks:
            if kernel is not None:
                blk.self_attn.attention = blk.cross_attn.attention = kernel
            if fused_elementwise is not None:
                blk.fused_elementwise = blk.self_attn.fused_elementwise = blk.cross_attn.fused_elementwise = bool(fused_elementwise)
        return self

    @torch.no_grad()
    def warmup(self, latent_shape: tuple[int, int, int], block_frames: int = 3, batch: int = 1) -> None:
        """One throwaway denoising pass at the real shapes (``latent_shape`` = (C, h, w) of a latent
        frame), on a scratch memory: just-in-time compilation (flash-attn-4's kernels, the fused
        groups' graphs) happens here instead of in the first timed block. Changes no state."""
        from magbench.baselines.wan.memory import FullHistory

        p = self.patch_embedding.weight
        x = torch.full((batch, block_frames, *latent_shape), 0.5, device=p.device, dtype=p.dtype)
        t = torch.full((batch, block_frames), 500.0, device=p.device)
        text = torch.full((batch, 1, self.cfg.text_dim), 0.5, device=p.device, dtype=p.dtype)
        self(x, t, self.context_kv(text), FullHistory(self.cfg.num_layers, block_frames), 0, commit=False)

    # -- weights ----------------------------------------------------------------------------------
    def init_random(self, seed: int = 0, std: float = 0.02) -> "CausalWan":
        """Random weights with a non-zero head (Wan's own init zeroes ``head.head``, which would
        make every prediction zero and every test trivially pass)."""
        dev = self.patch_embedding.weight.device
        g = torch.Generator(device=dev).manual_seed(seed)

        def randn(shape: torch.Size) -> torch.Tensor:
            return torch.randn(shape, generator=g, device=dev)

        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("modulation"):
                    p.copy_(randn(p.shape) / self.cfg.dim**0.5)
                elif "norm" in name and name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * randn(p.shape))
                elif name.endswith("bias"):
                    p.copy_(0.02 * randn(p.shape))
                else:
                    fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                    p.copy_(randn(p.shape) / math.sqrt(fan_in))
        return self

    def fuse_qkv(self) -> None:
        """Run q, k, v of self-attention as one matmul. Call after the weights are final (loaded,
        moved, cast): the fused copy does not follow later changes to q/k/v."""
        for blk in self.blocks:
            sa = blk.self_attn
            w = torch.cat([sa.q.weight, sa.k.weight, sa.v.weight]).detach()
            b = torch.cat([sa.q.bias, sa.k.bias, sa.v.bias]).detach()
            sa._qkv = (w, b)

    def unfuse_qkv(self) -> None:
        for blk in self.blocks:
            blk.self_attn._qkv = None

    # -- conditioning -----------------------------------------------------------------------------
    @torch.no_grad()
    def context_kv(self, text: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-layer cross-attention K/V of a prompt. ``text``: [B, L<=text_len, text_dim]
        (unpadded UMT5 states); zero-padded to ``text_len`` as the reference does."""
        b, n, c = text.shape
        if n > self.cfg.text_len:
            raise ValueError(f"prompt embedding has {n} tokens; the model takes at most {self.cfg.text_len}")
        param = self.text_embedding[0].weight
        padded = text.new_zeros(b, self.cfg.text_len, c)
        padded[:, :n] = text
        ctx = self.text_embedding(padded.to(param.device, param.dtype))
        return [blk.cross_attn.context_kv(ctx) for blk in self.blocks]

    def time_embed(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """t [B, F] -> (e [B, F, C], e0 [B, F, 6, C])."""
        param = self.time_embedding[0].weight
        e = self.time_embedding(sinusoidal_embedding(self.cfg.freq_dim, t).to(param.dtype))
        e0 = self.time_projection(e).unflatten(1, (6, self.cfg.dim))
        return e.unflatten(0, t.shape), e0.unflatten(0, t.shape)

    # -- forward ----------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        context_kv: list[tuple[torch.Tensor, torch.Tensor]],
        memory: "KVMemory",
        start_frame: int,
        commit: bool,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``rope``: the block's (cos, sin) tables, if the caller holds them already (a CUDA
        graph replays from fixed buffers, so it passes its own; see :mod:`.graphs`)."""
        b, n_frames, c, hh, ww = x.shape
        pt, ph, pw = self.cfg.patch_size
        if pt != 1:
            raise NotImplementedError("temporal patching is not used by Wan2.1")
        param = self.patch_embedding.weight
        tokens = self.patch_embedding(x.permute(0, 2, 1, 3, 4).to(param.dtype))  # [B, C, F, h', w']
        gh, gw = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)  # [B, F*h'*w', C]
        e, e0 = self.time_embed(t)
        if rope is None:
            # The block's RoPE frame index: ``start_frame`` itself, except for memories that
            # position relative to their window (KVMemory.rope_frame).
            rope = self.rope.tables(memory.rope_frame(start_frame, n_frames), n_frames, gh, gw, x.device)
        if memory.rotates_keys:
            memory.use_rope(self.rope, (gh, gw))
        memory.begin(start_frame, n_frames, gh * gw, commit)
        for blk, kv in zip(self.blocks, context_kv):
            tokens = blk(tokens, e0, rope, kv, memory)
        memory.end()
        out = self.head(tokens, e)  # [B, L, pt*ph*pw*c_out]
        out = out.view(b, n_frames, gh, gw, ph, pw, self.cfg.out_dim)
        out = out.permute(0, 1, 6, 2, 4, 3, 5).reshape(b, n_frames, self.cfg.out_dim, gh * ph, gw * pw)
        return out
