"""The attention kernel of the Wan transformer: PyTorch SDPA, or flash-attn-4 on Hopper/Blackwell.

Each attention module of :class:`~magbench.baselines.wan.model.CausalWan` holds an
:class:`AttentionKernel` (the model's ``attention`` argument), so two models in one process can
use different backends. Backends:

* ``"sdpa"``: ``torch.nn.functional.scaled_dot_product_attention`` (cuDNN / flash / efficient
  kernels on CUDA, the math kernel on the CPU);
* ``"flash"``: flash-attn-4 (``pip install 'magbench[flash]'``: the FlashAttention project's CuTe
  DSL kernels, ``flash_attn.cute.flash_attn_func``), compiled just in time on first use for each
  head size and dtype; an error where it is not installed or the tensors are not CUDA half
  precision;
* ``"auto"`` (default): flash-attn-4 for CUDA half-precision tensors on compute capability 9.x
  (Hopper) or 10.x (Blackwell) when it imports and at least ``FLASH_MIN_KEYS`` keys are attended
  (self-attention over the memory); SDPA otherwise: on the CPU, and for cross-attention's 512
  text tokens, where SDPA measured faster (benchmarks/RESULTS.md).

flash-attn-4 is imported on the first CUDA call that may use it, never at package import.
Tensors are [B, L, H, D]: the layout both flash-attn and the KV memory use, so the memory's
cache views (``buf[:, start:end]``) reach the kernel without a copy.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F

from magbench.errors import MagbenchError

BACKENDS = ("auto", "sdpa", "flash")
FLASH_CAPABILITIES = (9, 10)  # Hopper (sm90), Blackwell data-centre (sm100/sm103): FA4's own paths
FLASH_MIN_KEYS = 2048  # below this "auto" keeps SDPA (measured: FA4 at half SDPA's speed on 512 keys)


@lru_cache(maxsize=1)
def flash_attn_4() -> Callable[..., tuple[torch.Tensor, torch.Tensor]] | None:
    """flash-attn-4's ``flash_attn_func`` where the package imports, else None."""
    try:
        from flash_attn.cute import flash_attn_func  # type: ignore[import-not-found]
    except Exception:  # not installed, or its CUDA libraries do not load here
        return None
    return flash_attn_func


@lru_cache(maxsize=8)
def _capability_major(index: int) -> int:
    return torch.cuda.get_device_capability(index)[0]


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # [B, L, H, D] viewed as [B, H, L, D]: the layout SDPA's flash/efficient kernels read natively.
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)


class AttentionKernel:
    """``kernel(q, k, v)`` on [B, L, H, D] tensors, unmasked (the KV memory exposes exactly the
    keys a block attends to), through the backend chosen at construction."""

    def __init__(self, backend: str = "auto") -> None:
        if backend not in BACKENDS:
            raise MagbenchError(f"attention backend {backend!r}: use one of {', '.join(BACKENDS)}")
        self.backend = backend

    def uses_flash(self, q: torch.Tensor, keys: int | None = None) -> bool:
        """Whether a call on tensors like ``q`` with ``keys`` keys (default: many) runs flash-attn-4
        (raises for an impossible "flash")."""
        if self.backend == "sdpa":
            return False
        half = q.dtype in (torch.float16, torch.bfloat16)
        if self.backend == "flash":
            if not (q.is_cuda and half):
                raise MagbenchError(f"attention backend 'flash' needs CUDA fp16/bf16 tensors, got {q.dtype} on {q.device}")
            if flash_attn_4() is None:
                raise MagbenchError("attention backend 'flash' asked for but flash-attn-4 is not installed: pip install 'magbench[flash]'")
            return True
        if not (q.is_cuda and half) or (keys is not None and keys < FLASH_MIN_KEYS):
            return False
        if _capability_major(q.device.index or 0) not in FLASH_CAPABILITIES:
            return False
        return flash_attn_4() is not None

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.uses_flash(q, k.shape[1]):
            fn = flash_attn_4()
            assert fn is not None
            return fn(q, k, v)[0]
        return sdpa(q, k, v)

    def describe(self, like: torch.Tensor, keys: int | None = None) -> str:
        """The kernel a call on tensors like ``like`` with ``keys`` keys runs: "flash-attn-4" or "sdpa"."""
        return "flash-attn-4" if self.uses_flash(like, keys) else "sdpa"

    def __repr__(self) -> str:
        return f"AttentionKernel({self.backend!r})"
