"""The LoRA merge (LongLive's adapter folded into the weights) against peft's unmerged LoRA."""

from __future__ import annotations

import copy

import pytest
import torch

from magbench.baselines.wan.lora import TARGETS, LoraError, merge_lora, read_lora
from magbench.baselines.wan.memory import FullHistory
from magbench.baselines.wan.model import CausalWan, WanConfig


def _model() -> CausalWan:
    return CausalWan(WanConfig.tiny()).init_random(3).eval().requires_grad_(False)


def _peft_state(model: CausalWan, rank: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random LoRA in peft's saved format (what LongLive's trainer writes with
    ``get_peft_model_state_dict``: ``base_model.model.<layer>.lora_{A,B}.weight``)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, blk in enumerate(model.blocks):
        for t in TARGETS:
            lin = blk.get_submodule(t)
            out[f"base_model.model.blocks.{i}.{t}.lora_A.weight"] = 0.1 * torch.randn(rank, lin.in_features, generator=g)
            out[f"base_model.model.blocks.{i}.{t}.lora_B.weight"] = 0.1 * torch.randn(lin.out_features, rank, generator=g)
    return out


def _forward(model, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg if isinstance(model, CausalWan) else model.base_model.model.cfg
    x = torch.randn(1, 3, cfg.in_dim, 4, 6, generator=g)
    text = torch.randn(1, 5, cfg.text_dim, generator=g)
    inner = model if isinstance(model, CausalWan) else model.base_model.model
    ctx = inner.context_kv(text)
    return model(x, torch.full((1, 3), 500.0), ctx, FullHistory(cfg.num_layers), 0, commit=False)


@pytest.mark.parametrize("rank, alpha", [(256, 256.0), (8, 16.0)])
def test_merged_model_equals_peft_unmerged_lora_forward(rank, alpha):
    peft = pytest.importorskip("peft")
    base = _model()
    state = _peft_state(base, rank)
    targets = [f"blocks.{i}.{t}" for i in range(len(base.blocks)) for t in TARGETS]
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets)
    unmerged = peft.get_peft_model(copy.deepcopy(base), config)
    result = peft.set_peft_model_state_dict(unmerged, state)
    assert not result.unexpected_keys
    unmerged.eval()
    merged = copy.deepcopy(base)
    assert merge_lora(merged, state, rank=rank, alpha=alpha) == 10 * len(base.blocks)
    reference = _forward(unmerged)
    ours = _forward(merged)
    assert not torch.allclose(reference, _forward(base), atol=1e-3)  # the adapter changes the output
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)


def test_unexpected_and_missing_keys_are_errors_naming_them():
    base = _model()
    state = _peft_state(base, 4)
    bad = dict(state, **{"base_model.model.head.head.lora_A.weight": torch.zeros(4, 64)})
    with pytest.raises(LoraError, match="head.head.lora_A"):
        merge_lora(copy.deepcopy(base), bad, rank=4, alpha=4)
    missing = {k: v for k, v in state.items() if "blocks.1.ffn.2.lora_B" not in k}
    with pytest.raises(LoraError, match=r"blocks\.1\.ffn\.2"):
        merge_lora(copy.deepcopy(base), missing, rank=4, alpha=4)
    before = copy.deepcopy(base.state_dict())
    with pytest.raises(LoraError, match="rank-8"):
        merge_lora(base, state, rank=8, alpha=8)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # nothing half-merged


def test_longlive_lora_file_formats(tmp_path):
    base = _model()
    state = _peft_state(base, 4)
    torch.save({"generator_lora": state, "critic_lora": {}, "step": 7}, tmp_path / "lora.pt")
    assert read_lora(str(tmp_path / "lora.pt")).keys() == state.keys()
    torch.save(state, tmp_path / "bare.pt")
    assert read_lora(str(tmp_path / "bare.pt")).keys() == state.keys()
    adapter_named = {k.replace(".weight", ".default.weight"): v for k, v in state.items()}
    assert merge_lora(copy.deepcopy(base), adapter_named, rank=4, alpha=4) == 20
