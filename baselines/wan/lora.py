"""Merging a LoRA adapter into the Wan transformer's weights at load time.

LongLive ships its 1.3B model as a base checkpoint plus a LoRA that its inference script applies
with peft, unmerged (NVlabs/LongLive v1.0 ``inference.py``: ``configure_lora_for_model`` then
``peft.set_peft_model_state_dict``; ``utils/lora_utils.py``: every ``nn.Linear`` inside every
``CausalWanAttentionBlock``; ``configs/longlive_inference.yaml``: rank 256, alpha 256, dropout 0).
With dropout 0, peft's LoRA layer computes ``W x + b + (alpha / rank) * B (A x)``, which equals
the plain layer with ``W + (alpha / rank) * B @ A``. Merging once at load makes inference run at
the plain model's speed.

The targets are the 10 Linear layers of each transformer block: ``self_attn.{q,k,v,o}``,
``cross_attn.{q,k,v,o}``, ``ffn.0`` and ``ffn.2``. Keys are peft's
(``base_model.model.blocks.N.self_attn.q.lora_A.weight``; an adapter name such as
``lora_A.default.weight`` and wrapper prefixes are accepted). A key that names anything else, or
a target left without its pair, is an error naming it.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch
import torch.nn as nn

from magbench.errors import MagbenchError

TARGETS = tuple(f"{a}.{p}" for a in ("self_attn", "cross_attn") for p in ("q", "k", "v", "o")) + ("ffn.0", "ffn.2")
_KEY = re.compile(r"^(blocks\.\d+\.[\w.]+?)\.lora_(A|B)(?:\.[\w-]+)?\.weight$")
_WRAPPERS = ("base_model.model.", "_fsdp_wrapped_module.", "_orig_mod.", "module.", "model.")


class LoraError(MagbenchError):
    """A LoRA state dict that does not fit the model."""


def lora_targets(model: nn.Module) -> dict[str, nn.Linear]:
    """The Linear layers LongLive adapts: name -> module."""
    out: dict[str, nn.Linear] = {}
    for i, blk in enumerate(model.blocks):  # type: ignore[attr-defined]
        for t in TARGETS:
            mod = blk.get_submodule(t)
            if not isinstance(mod, nn.Linear):
                raise LoraError(f"LoRA target blocks.{i}.{t} is not a Linear layer")
            out[f"blocks.{i}.{t}"] = mod
    return out


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _WRAPPERS:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def read_lora(path: str) -> dict[str, torch.Tensor]:
    """The generator's LoRA state dict from a LongLive ``lora.pt`` (``generator_lora`` key, or the
    dict itself) or a .safetensors file. ``torch.load(weights_only=True)`` only."""
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise LoraError(f"{p}: no such LoRA file")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise LoraError(f"{p}: not loadable with torch.load(weights_only=True): {exc}") from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("generator_lora"), Mapping):
        obj = obj["generator_lora"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LoraError(f"{p}: expected a LoRA state dict (or one under 'generator_lora')")
    return dict(obj)


@torch.no_grad()
def merge_lora(model: nn.Module, state: Mapping[str, torch.Tensor], rank: int = 256, alpha: float = 256.0) -> int:
    """``W += (alpha / rank) * B @ A`` for every target layer, in float32 (then cast back).

    Returns the number of merged layers. Unknown keys, ranks other than ``rank`` and targets
    missing their A or B are errors naming the key; nothing is changed unless everything fits.
    """
    targets = lora_targets(model)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        m = _KEY.match(_strip(key))
        if m is None or m.group(1) not in targets:
            raise LoraError(f"LoRA key {key!r} is not a LoRA weight of a target layer ({', '.join(TARGETS)} of each block)")
        slot = pairs.setdefault(m.group(1), {})
        if m.group(2) in slot:
            raise LoraError(f"LoRA key {key!r}: a second lora_{m.group(2)} for {m.group(1)}")
        slot[m.group(2)] = value
    missing = [name for name in targets if set(pairs.get(name, {})) != {"A", "B"}]
    if missing:
        raise LoraError(f"LoRA: no lora_A/lora_B pair for {missing[:4]}{' ...' if len(missing) > 4 else ''} ({len(missing)} layers)")
    scale = float(alpha) / float(rank)
    updates: list[tuple[nn.Linear, torch.Tensor]] = []
    for name, layer in targets.items():
        a, b = pairs[name]["A"], pairs[name]["B"]
        out_f, in_f = layer.weight.shape
        if a.shape != (rank, in_f) or b.shape != (out_f, rank):
            raise LoraError(
                f"LoRA {name}: A {tuple(a.shape)} / B {tuple(b.shape)} do not fit a rank-{rank} adapter "
                f"of a {out_f}x{in_f} layer"
            )
        updates.append((layer, scale * (b.float() @ a.float())))
    for layer, delta in updates:
        w = layer.weight
        w.copy_((w.float() + delta.to(w.device)).to(w.dtype))
    return len(updates)
