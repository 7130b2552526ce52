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


@pytest.mark.parametrize("channels_last", [False, True])
def test_batched_decode_stream_equals_diffusers_whole_video_decode(channels_last):
    # Any split of the latents into pushes, one latent frame or several, first push included.
    batched = WanVAE.random(
        tiny_vae_config(), "cpu", torch.float32, seed=1, channels_last=channels_last, batched_decode=True
    )
    per_frame = WanVAE.random(tiny_vae_config(), "cpu", torch.float32, seed=1, batched_decode=False)
    lat = torch.randn(1, 8, 16, 4, 6, generator=torch.Generator().manual_seed(0))
    whole = per_frame.decode(lat)  # diffusers' AutoencoderKLWan.decode: one latent frame at a time
    for splits in ([3, 3, 2], [1, 1, 4, 2], [8]):
        dec, parts, at = batched.decoder_stream(), [], 0
        assert dec.batched
        for n in splits:
            parts.append(dec.push(lat[:, at : at + n]))
            at += n
        assert [p.shape[0] for p in parts][0] == 1 + 4 * (splits[0] - 1)
        torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-5, atol=1e-5)


def test_batched_decode_in_bfloat16_is_as_close_to_float32_as_the_per_frame_decode():
    lat = torch.randn(1, 6, 16, 4, 6, generator=torch.Generator().manual_seed(2))
    ref = WanVAE.random(tiny_vae_config(), "cpu", torch.float32, seed=4).decode(lat)
    errs = {}
    for batched in (False, True):
        vae = WanVAE.random(tiny_vae_config(), "cpu", torch.bfloat16, seed=4, batched_decode=batched)
        dec = vae.decoder_stream()
        out = torch.cat([dec.push(lat[:, :3]), dec.push(lat[:, 3:])])
        errs[batched] = (out - ref).abs().max().item()
    # bf16 rounding of a different but equivalent op order: the same size of error, not more.
    assert 0 < errs[True] <= 1.5 * errs[False] + 1e-3, errs
