"""The VAE's warm-up (JIT compilation before timing) leaves the streams it is warmed for unchanged."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from magbench.baselines.wan.vae import WanVAE, tiny_vae_config  # noqa: E402


def test_warmup_does_not_change_what_a_stream_decodes():
    vae = WanVAE.random(tiny_vae_config(), "cpu", torch.float32, seed=3)
    lat = torch.randn(1, 4, 16, 4, 6, generator=torch.Generator().manual_seed(0))
    before = vae.decoder_stream().push(lat)
    vae.warmup(32, 48)
    torch.testing.assert_close(vae.decoder_stream().push(lat), before, rtol=0, atol=0)
