"""The Wan2.1 VAE through diffusers' ``AutoencoderKLWan``, with streaming encode and decode.

Streaming reuses diffusers' own causal mechanism rather than re-implementing the VAE:
``AutoencoderKLWan._decode`` runs ``post_quant_conv`` (1x1x1, frame-wise) and then
``decoder(z[:, :, i:i+1], feat_cache=..., feat_idx=[0], first_chunk=(i == 0))`` one latent frame
at a time, the causal convolutions carrying their last frames in ``feat_cache``. We keep such a
cache list per stream and call the same modules block by block, so a streamed decode equals the
whole-video decode (tested). Encoding is the same: first pixel frame alone, then chunks of 4, with
``quant_conv`` (frame-wise) and the posterior mean, as ``_encode`` does.

Latents are normalised with the VAE config's ``latents_mean`` / ``latents_std``:
``(mu - mean) / std`` (the reference's ``scale = [mean, 1/std]``); pixels are [0, 1] outside and
[-1, 1] inside, decoded output clamped to [-1, 1] as the reference does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def tiny_vae_config() -> dict[str, Any]:
    """A small random AutoencoderKLWan for CPU tests (same structure: 8x spatial, 4x temporal)."""
    return {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1, "temperal_downsample": [False, True, True]}


def wan_vae_config() -> dict[str, Any]:
    """Wan2.1's VAE (diffusers defaults), for random-weight timing runs."""
    return {}


class WanVAE:
    """Wraps a diffusers ``AutoencoderKLWan``; ``frames`` are [T, 3, H, W] in [0, 1]."""

    def __init__(self, vae: Any, channels_last: bool | None = None, fused_norms: bool | None = None) -> None:
        """``channels_last``: conv weights in channels_last_3d, so cuDNN runs its NDHWC kernels;
        ``fused_norms``: each RMS norm as one torch.compile'd kernel. Both measured faster than
        the default at the same error against float32 (benchmarks/RESULTS.md). Default: on CUDA
        only (on the CPU channels-last was slower and compiling is not worth it)."""
        self.vae = vae.eval().requires_grad_(False)
        cfg = vae.config
        p = next(vae.parameters())
        if channels_last if channels_last is not None else p.is_cuda:
            for mod in vae.modules():
                if isinstance(mod, torch.nn.Conv3d):
                    mod.weight.data = mod.weight.data.contiguous(memory_format=torch.channels_last_3d)
        if fused_norms if fused_norms is not None else p.is_cuda:
            from diffusers.models.autoencoders.autoencoder_kl_wan import WanRMS_norm

            # Each norm compiled as a module (one fused kernel in place of ~6 full-resolution
            # passes: float copy, normalise, divide, cast, two multiplies). Their shared code
            # object sees ~3 channel counts x 2 ranks x 2 layouts x first-chunk shapes, more
            # than the default 8 recompiles: raise the limit (only ever upwards).
            dynamo = torch._dynamo.config
            if getattr(dynamo, "recompile_limit", 64) < 64:
                dynamo.recompile_limit = 64
            for mod in vae.modules():
                if isinstance(mod, WanRMS_norm):
                    mod.compile()
        self.mean = torch.tensor(cfg.latents_mean, dtype=torch.float32, device=p.device).view(1, 1, -1, 1, 1)
        self.std = torch.tensor(cfg.latents_std, dtype=torch.float32, device=p.device).view(1, 1, -1, 1, 1)
        self.z_dim = cfg.z_dim

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: torch.device | str, dtype: torch.dtype, channels_last: bool | None = None,
        fused_norms: bool | None = None,
    ) -> "WanVAE":
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype)
        return cls(vae.to(device), channels_last, fused_norms)

    @classmethod
    def random(
        cls, config: dict[str, Any], device: torch.device | str, dtype: torch.dtype, seed: int = 0,
        channels_last: bool | None = None, fused_norms: bool | None = None,
    ) -> "WanVAE":
        from diffusers import AutoencoderKLWan

        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**config)
        return cls(vae.to(device=device, dtype=dtype), channels_last, fused_norms)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def _conv_count(self, part: str) -> int:
        counts = getattr(self.vae, "_cached_conv_counts", None)
        if counts is not None:
            return counts[part]
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        return sum(isinstance(m, WanCausalConv3d) for m in getattr(self.vae, part).modules())

    # -- latents --------------------------------------------------------------------------------
    def normalize(self, mu: torch.Tensor) -> torch.Tensor:
        """[B, C, F, h, w] posterior mean -> [B, F, C, h, w] normalised latents."""
        mu = mu.permute(0, 2, 1, 3, 4).float()
        return (mu - self.mean) / self.std

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        """[B, F, C, h, w] normalised -> [B, C, F, h, w] VAE latents in the VAE's dtype."""
        z = latents.float() * self.std + self.mean
        return z.permute(0, 2, 1, 3, 4).to(self.dtype)

    @staticmethod
    def _to_vae_pixels(frames: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return (frames.to(dtype) * 2 - 1).permute(1, 0, 2, 3).unsqueeze(0)  # [1, 3, T, H, W]

    @staticmethod
    def _from_vae_pixels(x: torch.Tensor) -> torch.Tensor:
        x = x.float().clamp(-1, 1)[0].permute(1, 0, 2, 3)  # [T, 3, H, W]
        return (x * 0.5 + 0.5).clamp(0, 1)

    # -- whole-video (reference) ----------------------------------------------------------------
    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """[T, 3, H, W] in [0, 1], T = 1 + 4k -> [1, 1 + k, C, h, w] normalised latents."""
        x = self._to_vae_pixels(frames.to(self.device), self.dtype)
        mu = self.vae.encode(x).latent_dist.mean
        return self.normalize(mu)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[1, F, C, h, w] -> [1 + 4(F-1), 3, H, W] in [0, 1] (diffusers' own decode)."""
        return self._from_vae_pixels(self.vae.decode(self.denormalize(latents.to(self.device))).sample)

    @torch.no_grad()
    def warmup(self, height: int, width: int) -> None:
        """Stream a throwaway clip through a fresh encoder and decoder at the real resolution, so
        that the compiled norms' just-in-time compilation (first chunk and later chunks have
        different shapes) happens here rather than in the first timed sample."""
        frames = torch.full((5, 3, height, width), 0.5, device=self.device)
        lat = self.encoder_stream().push(frames)  # the first frame alone, then a chunk of 4
        assert lat is not None
        dec = self.decoder_stream()
        dec.push(lat[:, :1])
        dec.push(lat.repeat(1, 2, 1, 1, 1)[:, :3])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def encoder_stream(self) -> "EncoderStream":
        return EncoderStream(self)

    def decoder_stream(self) -> "DecoderStream":
        return DecoderStream(self)


class DecoderStream:
    """Decodes latent frames as they come; the first frame gives 1 pixel frame, the others 4."""

    def __init__(self, vae: WanVAE) -> None:
        self.vae = vae
        self._cache: list[Any] = [None] * vae._conv_count("decoder")
        self.frames_in = 0

    @torch.no_grad()
    def push(self, latents: torch.Tensor) -> torch.Tensor:
        """[1, F, C, h, w] normalised latents -> [T, 3, H, W] pixel frames in [0, 1]."""
        m = self.vae.vae
        x = m.post_quant_conv(self.vae.denormalize(latents.to(self.vae.device)))
        outs = []
        for i in range(x.shape[2]):
            idx = [0]
            outs.append(m.decoder(x[:, :, i : i + 1], feat_cache=self._cache, feat_idx=idx, first_chunk=self.frames_in == 0))
            self.frames_in += 1
        out = torch.cat(outs, dim=2)
        if getattr(m.config, "patch_size", None) is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

            out = unpatchify(out, patch_size=m.config.patch_size)
        return WanVAE._from_vae_pixels(out)


class EncoderStream:
    """Encodes pixel frames as they come: frame 0 alone, then every 4 frames one latent frame."""

    def __init__(self, vae: WanVAE) -> None:
        self.vae = vae
        self._cache: list[Any] = [None] * vae._conv_count("encoder")
        self._pending: torch.Tensor | None = None
        self.latents_out = 0

    @property
    def pending_frames(self) -> int:
        return 0 if self._pending is None else self._pending.shape[2]

    @torch.no_grad()
    def push(self, frames: torch.Tensor) -> torch.Tensor | None:
        """[T, 3, H, W] in [0, 1] -> [1, F, C, h, w] latents for every complete chunk, or None."""
        m = self.vae.vae
        x = WanVAE._to_vae_pixels(frames.to(self.vae.device), self.vae.dtype)
        if getattr(m.config, "patch_size", None) is not None:
            raise NotImplementedError("patchified (Wan2.2) VAEs are not supported")
        self._pending = x if self._pending is None else torch.cat([self._pending, x], dim=2)
        outs = []
        while True:
            need = 1 if self.latents_out == 0 else 4
            if self._pending.shape[2] < need:
                break
            chunk, self._pending = self._pending[:, :, :need], self._pending[:, :, need:]
            outs.append(m.encoder(chunk, feat_cache=self._cache, feat_idx=[0]))
            self.latents_out += 1
        if not outs:
            return None
        enc = m.quant_conv(torch.cat(outs, dim=2))
        mu = enc[:, : self.vae.z_dim]
        return self.vae.normalize(mu)
