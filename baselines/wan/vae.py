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

    def __init__(
        self, vae: Any, channels_last: bool | None = None, fused_norms: bool | None = None, batched_decode: bool = False
    ) -> None:
        """``channels_last``: conv weights in channels_last_3d, so cuDNN runs its NDHWC kernels;
        ``fused_norms``: each RMS norm as one torch.compile'd kernel. Both measured faster than
        the default at the same error against float32 (benchmarks/RESULTS.md). Default: on CUDA
        only (on the CPU channels-last was slower and compiling is not worth it).
        ``batched_decode``: a stream decodes all latent frames of a push in one pass through the
        decoder (:class:`DecoderStream`) instead of diffusers' one pass per latent frame. Off by
        default: exact, but measured slower on the GPU (benchmarks/RESULTS.md, "The VAE decode")."""
        self.vae = vae.eval().requires_grad_(False)
        self.batched_decode = batched_decode
        self.channels_last = bool(channels_last if channels_last is not None else next(vae.parameters()).is_cuda)
        cfg = vae.config
        p = next(vae.parameters())
        if self.channels_last:
            for mod in vae.modules():
                if isinstance(mod, torch.nn.Conv3d):
                    mod.weight.data = mod.weight.data.contiguous(memory_format=torch.channels_last_3d)
        self.fused_norms = bool(fused_norms if fused_norms is not None else p.is_cuda)
        # RMS norm + SiLU in one pass (the batched decode's residual blocks); compiled with the norms.
        # Static shapes: one kernel per stage and frame count (symbolic-shape reductions were slower).
        self.norm_silu = torch.compile(_norm_silu, dynamic=False) if self.fused_norms else _norm_silu
        if self.fused_norms:
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
        fused_norms: bool | None = None, batched_decode: bool = False,
    ) -> "WanVAE":
        from diffusers import AutoencoderKLWan

        vae = AutoencoderKLWan.from_pretrained(str(folder), torch_dtype=dtype)
        return cls(vae.to(device), channels_last, fused_norms, batched_decode)

    @classmethod
    def random(
        cls, config: dict[str, Any], device: torch.device | str, dtype: torch.dtype, seed: int = 0,
        channels_last: bool | None = None, fused_norms: bool | None = None, batched_decode: bool = False,
    ) -> "WanVAE":
        from diffusers import AutoencoderKLWan

        torch.manual_seed(seed)
        vae = AutoencoderKLWan(**config)
        return cls(vae.to(device=device, dtype=dtype), channels_last, fused_norms, batched_decode)

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
        block = lat.repeat(1, 2, 1, 1, 1)[:, :3]
        dec = self.decoder_stream()
        # Every push a sample makes: a first block (its first frame alone, then 2), whole blocks,
        # and a partial last block of 1 or 2 frames.
        for part in (block, block, block[:, :1], block[:, :2]):
            dec.push(part)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def encoder_stream(self) -> "EncoderStream":
        return EncoderStream(self)

    def decoder_stream(self) -> "DecoderStream":
        return DecoderStream(self)


class DecoderStream:
    """Decodes latent frames as they come; the first frame gives 1 pixel frame, the others 4.

    Batched (``WanVAE(batched_decode=True)``): every latent frame of a push goes through
    the decoder in one pass. The decoder is causal in time, so this equals diffusers' one pass per
    latent frame: each causal convolution keeps the last ``2`` frames of its input (zeros before
    the video) and convolves them with the new frames; the temporal upsampler leaves the video's
    first latent frame undoubled and starts its own convolution at the second, as diffusers'
    ``"Rep"`` cache entry does, so the first latent frame of a stream is decoded alone. Tested equal
    to diffusers' whole-video decode in float32. What it saves: per block one pass instead of three,
    no per-frame cache clones and concatenations, spatial padding done by the convolution instead of
    an ``F.pad`` copy, one memory layout throughout (channels-last when the weights are), and the RMS
    norm fused with the SiLU after it. Wan2.2's residual decoder falls back to the per-frame path.
    """

    def __init__(self, vae: WanVAE) -> None:
        self.vae = vae
        self._cache: list[Any] = [None] * vae._conv_count("decoder")
        self._tails: dict[int, torch.Tensor] = {}
        self.frames_in = 0
        m = vae.vae
        self.batched = vae.batched_decode and getattr(m.config, "patch_size", None) is None and not getattr(
            m.config, "is_residual", False
        )

    @torch.no_grad()
    def push(self, latents: torch.Tensor) -> torch.Tensor:
        """[1, F, C, h, w] normalised latents -> [T, 3, H, W] pixel frames in [0, 1]."""
        m = self.vae.vae
        x = m.post_quant_conv(self.vae.denormalize(latents.to(self.vae.device)))
        if self.batched:
            if self.vae.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            outs = []
            if self.frames_in == 0 and x.shape[2]:
                outs.append(self._decode(x[:, :, :1], first=True))
                x = x[:, :, 1:]
                self.frames_in = 1
            if x.shape[2]:
                outs.append(self._decode(x, first=False))
                self.frames_in += x.shape[2]
            return WanVAE._from_vae_pixels(torch.cat(outs, dim=2) if len(outs) > 1 else outs[0])
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

    # -- the batched pass ----------------------------------------------------------------------
    def _decode(self, x: torch.Tensor, first: bool) -> torch.Tensor:
        d = self.vae.vae.decoder
        x = self._causal_conv(d.conv_in, x)
        x = self._residual(d.mid_block.resnets[0], x)
        for attn, res in zip(d.mid_block.attentions, d.mid_block.resnets[1:]):
            if attn is not None:
                x = self._layout(attn(x))
            x = self._residual(res, x)
        for up in d.up_blocks:
            for res in up.resnets:
                x = self._residual(res, x)
            if up.upsamplers is not None:
                x = self._resample(up.upsamplers[0], x, first)
        x = self.vae.norm_silu(x, d.norm_out.gamma, d.norm_out.scale)
        return self._causal_conv(d.conv_out, x)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last_3d) if self.vae.channels_last else x.contiguous()

    def _causal_conv(self, conv: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        """``conv`` (a ``WanCausalConv3d``) over the stream so far: its last input frames, then ``x``."""
        pw, _, ph, _, pt, _ = conv._padding
        if pt:
            tail = self._tails.get(id(conv))
            if tail is None:  # before the video: zeros, as diffusers' causal padding
                tail = torch.zeros_like(x[:, :, :1]).expand(-1, -1, pt, -1, -1)
            x = torch.cat([tail, x], dim=2)
            self._tails[id(conv)] = x[:, :, -pt:].clone()
        return torch.nn.functional.conv3d(x, conv.weight, conv.bias, conv.stride, (0, ph, pw), conv.dilation, conv.groups)

    def _residual(self, block: Any, x: torch.Tensor) -> torch.Tensor:
        sc = block.conv_shortcut
        h = x if isinstance(sc, torch.nn.Identity) else self._causal_conv(sc, x)
        x = self._causal_conv(block.conv1, self.vae.norm_silu(x, block.norm1.gamma, block.norm1.scale))
        x = self._causal_conv(block.conv2, self.vae.norm_silu(x, block.norm2.gamma, block.norm2.scale))
        return x + h

    def _resample(self, up: Any, x: torch.Tensor, first: bool) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if up.mode == "upsample3d" and not first:
            y = self._causal_conv(up.time_conv, x)  # [b, 2c, t, h, w]: each frame becomes two
            x = torch.empty((b, c, 2 * t, h, w), dtype=y.dtype, device=y.device)
            x = self._layout(x)
            x[:, :, 0::2], x[:, :, 1::2] = y[:, :c], y[:, c:]
            t = 2 * t
        # Frame-wise 2D upsampling (nearest-exact, in float as diffusers) and convolution.
        x = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        x = up.resample(x)
        return self._layout(x.view(b, t, x.shape[1], x.shape[2], x.shape[3]).permute(0, 2, 1, 3, 4))


def _norm_silu(x: torch.Tensor, gamma: torch.Tensor, scale: float) -> torch.Tensor:
    """diffusers' ``WanRMS_norm`` (channel-first, no bias, normalised in float32) then SiLU."""
    y = torch.nn.functional.normalize(x.float(), dim=1).to(x.dtype) * scale * gamma
    return torch.nn.functional.silu(y)


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
