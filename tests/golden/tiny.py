"""What a golden recording and its replay share: the tiny model, its weights, the file format.

Nothing here imports magbench or a reference repository: the recording scripts build the
reference's model from these weights, the parity tests build magbench's.

Weights are drawn from a seeded ``torch.Generator`` in sorted-name order (CPU ``randn`` is
stable across PyTorch versions; the golden stores a SHA-256 of the weights, so a change would
be reported as such). Attention must be sharp for positions to matter (near-uniform attention
hides a RoPE or window error at ~1e-6): the q/k RMSNorm weights of self-attention are
``QK_GAIN * (1 + 0.1 randn)``, giving attention logits of order ``QK_GAIN**2``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

# Wan2.1's structure at a CPU-test size (= magbench's WanConfig.tiny()).
TINY = dict(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=8, freq_dim=32, in_dim=16, out_dim=16)
LATENT_SHAPE = (16, 4, 6)  # C, h, w of a latent frame -> 2 x 3 = 6 tokens per frame (patch 1x2x2)
FRAME_TOKENS = 6
PROMPT_TOKENS = 5
QK_GAIN = 2.0
WEIGHT_SEED = 1234
DATA = Path(__file__).resolve().parents[1] / "data" / "golden"


def tiny_weights(shapes: Iterable[tuple[str, tuple[int, ...]]], seed: int = WEIGHT_SEED, qk_gain: float = QK_GAIN) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dim = TINY["dim"]
    out: dict[str, torch.Tensor] = {}
    for name, shape in sorted(shapes):
        r = torch.randn(shape, generator=g, dtype=torch.float32)
        if name.endswith("modulation"):
            w = r / math.sqrt(dim)
        elif ".self_attn.norm_" in name:
            w = qk_gain * (1.0 + 0.1 * r)
        elif "norm" in name and name.endswith("weight"):
            w = 1.0 + 0.1 * r
        elif name.endswith("bias"):
            w = 0.02 * r
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
            w = r / math.sqrt(fan_in)
        out[name] = w.contiguous()
    return out


def digest(state: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def save(path: Path, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(path), metadata={"meta": json.dumps(meta, sort_keys=True)})


def load(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return tensors, meta


# LongLive-RAG's retrieval encoder at a CPU-test size (magbench's RetrievalEncoderConfig.tiny();
# the reference's AEConfig fields; spatial size = a tiny latent frame). Widths 6 and 10 give
# GroupNorm one group (``_num_groups``): with per-channel groups on 2x3 and 1x2 feature maps every
# frame embeds to nearly the same vector and float noise would decide the retrieval.
TINY_AE = dict(in_channels=16, hidden_dims=[6, 10], latent_dim=32, spatial_h=LATENT_SHAPE[1], spatial_w=LATENT_SHAPE[2])
AE_SEED = 4321


def tiny_encoder_weights(shapes: Iterable[tuple[str, tuple[int, ...]]], seed: int = AE_SEED) -> dict[str, torch.Tensor]:
    """Seeded weights for a retrieval autoencoder, in sorted-name order: convolutions and linears
    ``randn / sqrt(fan_in)``, GroupNorm scales ``1 + 0.1 randn``, biases ``0.02 randn`` (no
    zero-initialised residual branch: every layer must matter)."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in sorted(shapes):
        r = torch.randn(shape, generator=g, dtype=torch.float32)
        if len(shape) > 1:
            w = r / math.sqrt(math.prod(shape[1:]))
        elif name.endswith("weight"):
            w = 1.0 + 0.1 * r
        else:
            w = 0.02 * r
        out[name] = w.contiguous()
    return out
