"""The Wan attention kernel's backend choice (CPU side; the GPU equality check is
benchmarks/check_flash.py)."""

from __future__ import annotations

import math
import sys

import pytest
import torch

from magbench.baselines.wan import attention as attn
from magbench.errors import MagbenchError


def _qkv(dtype=torch.float32, lq=7, lk=11):
    g = torch.Generator().manual_seed(0)
    return tuple(torch.randn(2, n, 3, 16, generator=g).to(dtype) for n in (lq, lk, lk))


def test_sdpa_path_equals_softmax_attention_in_float64():
    q, k, v = _qkv(torch.float64)
    scores = torch.einsum("blhd,bmhd->bhlm", q, k) / math.sqrt(q.shape[-1])
    ref = torch.einsum("bhlm,bmhd->blhd", scores.softmax(-1), v)
    torch.testing.assert_close(attn.AttentionKernel("sdpa")(q, k, v), ref, rtol=1e-10, atol=1e-10)


def test_auto_uses_sdpa_on_the_cpu_without_looking_for_flash_attn(monkeypatch):
    def boom():
        raise AssertionError("flash-attn-4 looked up for a CPU tensor")

    monkeypatch.setattr(attn, "flash_attn_4", boom)
    q, k, v = _qkv(torch.bfloat16)
    kernel = attn.AttentionKernel("auto")
    assert not kernel.uses_flash(q)
    assert kernel.describe(q) == "sdpa"
    assert kernel(q, k, v).shape == q.shape


def test_importing_the_model_does_not_import_flash_attn():
    import magbench.baselines.wan.methods  # noqa: F401
    import magbench.baselines.wan.model  # noqa: F401

    assert "flash_attn" not in sys.modules and "flash_attn.cute" not in sys.modules


def test_flash_on_the_cpu_or_without_the_package_is_a_one_line_error(monkeypatch):
    q, _, _ = _qkv(torch.bfloat16)
    with pytest.raises(MagbenchError, match="needs CUDA"):
        attn.AttentionKernel("flash").uses_flash(q)
    monkeypatch.setattr(attn, "flash_attn_4", lambda: None)
    fake_cuda = type("T", (), {"is_cuda": True, "dtype": torch.bfloat16, "device": torch.device("cuda", 0)})()
    with pytest.raises(MagbenchError, match=r"pip install 'magbench\[flash\]'"):
        attn.AttentionKernel("flash").uses_flash(fake_cuda)


def test_auto_picks_flash_only_on_hopper_or_blackwell_when_it_imports_and_for_long_keys(monkeypatch):
    fake = type("T", (), {"is_cuda": True, "dtype": torch.bfloat16, "device": torch.device("cuda", 0)})()
    kernel = attn.AttentionKernel("auto")
    monkeypatch.setattr(attn, "flash_attn_4", lambda: (lambda q, k, v: (q, None)))
    for major, want in ((8, False), (9, True), (10, True), (12, False)):
        monkeypatch.setattr(attn, "_capability_major", lambda index, m=major: m)
        assert kernel.uses_flash(fake) is want, major
    assert not kernel.uses_flash(fake, keys=512)  # cross-attention's text tokens stay on SDPA
    assert attn.AttentionKernel("flash").uses_flash(fake, keys=512)  # unless flash is asked for
    monkeypatch.setattr(attn, "flash_attn_4", lambda: None)
    assert not kernel.uses_flash(fake)
    fake.dtype = torch.float32
    monkeypatch.setattr(attn, "flash_attn_4", lambda: (lambda q, k, v: (q, None)))
    assert not kernel.uses_flash(fake)


def test_unknown_backend_is_refused():
    with pytest.raises(MagbenchError, match="auto, sdpa, flash"):
        attn.AttentionKernel("xformers")
