"""The Wan2.1-based methods: ``mag``, ``self-forcing``, ``full-history``.

All three are the same few-step causal generator (4 steps, blocks of 3 latent frames = 12 pixel
frames) and differ in what the KV memory keeps:

* ``mag``: MAG's generator + memory model; compressed memory of ``slots`` (21) frames, one per
  block, plus a ``sink_frames`` (2) sink (Xilluill/MAG ``configs/magbench_inference.yaml``:
  ``local_attn_size: 21``, ``sink_size: 2``, ``cache_mode: block_compress``);
  ``memory_model=False`` is the paper's ablation: the generator writes that memory itself;
* ``self-forcing``: the Self-Forcing DMD generator (EMA weights, as its README's ``--use_ema``)
  with a rolling window of ``window_frames`` (21: Self-Forcing is trained on 21-frame
  attention; MAG's rolling baseline config uses ``local_attn_size: 21``) past latent frames and a
  ``sink_frames`` (3: LongLive's frame sink, one block) attention sink;
* ``full-history``: the Self-Forcing generator attending every past frame (``max_frames`` caps it).

Common options: ``config`` ("t2v-1.3b" or "tiny"), ``random_weights`` (no downloads: random
transformer, random VAE, pseudo prompt embeddings; for CPU tests and timing), ``resolution``
([H, W]; default 480x832, 32x48 for the tiny config), ``use_prompt`` (True: the caption
conditions the generator, as MAG-Bench's ``--use_prompt``), ``fuse_qkv`` (True), ``attention``
("auto", "sdpa", "flash"), ``compile`` (False: torch.compile the transformer blocks),
``fused_elementwise`` (True: RoPE/RMSNorm/modulation/residual groups through torch.compile on
CUDA, 0.83x the block time of eager for mag and self-forcing on an H100), ``cuda_graphs`` (False:
replay the denoising passes from CUDA graphs; exact, but only ~1% faster: see
benchmarks/RESULTS.md),
``checkpoint_path`` / ``generator_path`` / ``memory_path`` / ``vae_path`` (local overrides).

The protocol hands over 12a-3 context frames: 3a latent frames, whole blocks. They are VAE-encoded
as a stream and fed block by block through the clean cache-update pass (as MAG's
``inference_w_initial_video``); the VAE decoder runs over them too, so that its causal cache is in
the state a whole-video decode would have, and each generated block then decodes to exactly 12
pixel frames (4 per latent frame; only the video's very first latent frame gives 1).

With ``--memory-source ground-truth`` a generated block is not committed: the harness hands over
its ground-truth frames and :meth:`_WanMethod.remember_ground_truth` commits their latents.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch

from magbench.errors import MagbenchError
from magbench.method import Method, MethodNeeds, SampleInfo
from magbench.registry import register_method

from magbench.baselines.wan.checkpoint import MAG, SELF_FORCING, WAN_DIFFUSERS

BLOCK_FRAMES = 3
PIXELS_PER_LATENT = 4
COMMON_OPTIONS = {
    "config": "t2v-1.3b",
    "random_weights": False,
    "resolution": None,
    "use_prompt": True,
    "fuse_qkv": True,
    "attention": "auto",
    "compile": False,
    "fused_elementwise": True,
    "cuda_graphs": False,
    "checkpoint_path": None,
    "generator_path": None,
    "memory_path": None,
    "vae_path": None,
    "prompt_cache": None,
    "weights_seed": 0,
}


class _WanMethod(Method):
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, SELF_FORCING))
    resolution: ClassVar[tuple[int, int] | None] = (480, 832)
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        allowed = {**COMMON_OPTIONS, **self.defaults}
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; known: {sorted(allowed)}")
        super().__init__(**options)
        self.opts = {**allowed, **options}
        res = self.opts["resolution"]
        if res is None and self.opts["config"] == "tiny":
            res = (32, 48)
        if res is not None:
            h, w = (int(x) for x in res)
            if h % 16 or w % 16:
                raise MagbenchError(f"{self.name or 'wan'}: resolution {h}x{w} must be multiples of 16 (VAE 8x, patch 2x)")
            self.resolution = (h, w)  # the harness reads the instance's resolution
        self._timing: dict[str, float] = {}

    # -- building blocks ------------------------------------------------------------------------
    def _model_config(self):
        from magbench.baselines.wan.model import WanConfig

        return WanConfig.named(self.opts["config"])

    def _random_model(self, seed: int):
        from magbench.baselines.wan.model import CausalWan

        return CausalWan(self._model_config()).init_random(seed).eval().requires_grad_(False)

    def _load_generator(self):
        """The generator (and memory model for MAG): overridden per method."""
        raise NotImplementedError

    def _make_memory(self, num_layers: int):
        raise NotImplementedError

    def _prep(self, model):
        from magbench.baselines.wan.model import CausalWan

        assert isinstance(model, CausalWan)
        model = model.to(device=self.device, dtype=self.dtype)
        if self.opts["fuse_qkv"]:
            model.fuse_qkv()
        if self.opts["compile"]:
            for blk in model.blocks:
                blk.compile(dynamic=False)
        return model

    def load(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().load(device, dtype)
        random = bool(self.opts["random_weights"])
        if not random:
            # Before anything heavy: a missing download is a one-line error naming the fix.
            for art in self.needs.weights:
                if art is WAN_DIFFUSERS and self.opts["vae_path"]:
                    continue
                if art is not WAN_DIFFUSERS and (self.opts["checkpoint_path"] or (self.opts["generator_path"] and self.opts["memory_path"])):
                    continue
                art.require()
        from magbench.baselines.wan.model import set_attention_backend, set_fused_elementwise
        from magbench.baselines.wan.sampler import BlockSampler
        from magbench.baselines.wan.text import PromptEncoder
        from magbench.baselines.wan.vae import WanVAE, tiny_vae_config, wan_vae_config

        set_attention_backend(self.opts["attention"])
        set_fused_elementwise(bool(self.opts["fused_elementwise"]))
        generator, memory_model = self._load_generator()
        self.generator = self._prep(generator)
        self.memory_model = self._prep(memory_model) if memory_model is not None else None
        cfg = self.generator.cfg
        self.memory = self._make_memory(cfg.num_layers)
        self.sampler = BlockSampler(
            self.generator, self.memory, memory_model=self.memory_model, block_frames=BLOCK_FRAMES,
            cuda_graphs=bool(self.opts["cuda_graphs"]),
        )
        vae_dtype = dtype if torch.device(device).type == "cuda" else torch.float32
        if random:
            vae_cfg = tiny_vae_config() if self.opts["config"] == "tiny" else wan_vae_config()
            self.vae = WanVAE.random(vae_cfg, device, vae_dtype, seed=int(self.opts["weights_seed"]) + 100)
            folder = None
        else:
            root = Path(self.opts["vae_path"]).expanduser() if self.opts["vae_path"] else WAN_DIFFUSERS.require()
            self.vae = WanVAE.from_pretrained(root / "vae", device, vae_dtype)
            folder = root
        if self.vae.z_dim != cfg.in_dim:
            raise MagbenchError(f"VAE latent channels {self.vae.z_dim} != transformer input {cfg.in_dim}")
        cache = Path(self.opts["prompt_cache"]).expanduser() if self.opts["prompt_cache"] else None
        self.text = PromptEncoder(folder, device, dtype, text_dim=cfg.text_dim, text_len=cfg.text_len, cache_dir=cache)

    # -- per sample -----------------------------------------------------------------------------
    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        if (sample.height, sample.width) != tuple(self.resolution or ()):
            raise MagbenchError(f"{self.name}: sample is {sample.height}x{sample.width}, the method generates {self.resolution}")
        prompt = sample.prompt if self.opts["use_prompt"] else ""
        embeds = self.text.embed_many([prompt, ""])
        h, w = sample.height // 8, sample.width // 8
        self.sampler.reset(embeds[0], empty_embeds=embeds[1], seed=sample.seed, latent_shape=(self.generator.cfg.in_dim, h, w))
        if hasattr(self.memory, "reserve"):
            total = (sample.num_context + 3) // 4 + -(-sample.num_target // 4)
            self.memory.reserve(total + BLOCK_FRAMES)
        self._enc = self.vae.encoder_stream()
        self._dec = self.vae.decoder_stream()
        self._pending: torch.Tensor | None = None  # context latents not yet a whole block
        self._timing = {}
        # --memory-source ground-truth: generated blocks are not committed; remember_ground_truth
        # commits the ground truth's latents of the same span instead.
        self._from_ground_truth = sample.memory_source == "ground-truth"
        self._uncommitted = 0  # generated blocks whose ground truth has not been committed yet
        self._gt_pending: torch.Tensor | None = None  # ground-truth latents not yet a whole block
        self._gt_memory_s = 0.0
        self._gt_frames = 0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def memorize(self, frames: torch.Tensor) -> None:
        lat = self._enc.push(frames)
        if lat is None:
            return
        lat = lat.to(self.device, self.dtype)
        self._pending = lat if self._pending is None else torch.cat([self._pending, lat], dim=1)
        whole = self._pending.shape[1] // BLOCK_FRAMES * BLOCK_FRAMES
        for i in range(0, whole, BLOCK_FRAMES):
            block = self._pending[:, i : i + BLOCK_FRAMES]
            self.sampler.commit(block)
            self._dec.push(block)  # brings the decoder's causal cache to where the context ends
        self._pending = self._pending[:, whole:]

    @torch.no_grad()
    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        pending = 0 if self._pending is None else self._pending.shape[1]
        if self.sampler.frame == 0 or pending or self._enc.pending_frames:
            n_ctx = self.sample.num_context if self.sample else "?"
            raise MagbenchError(
                f"{self.name}: the context ({n_ctx} frames) must be 12a-3 pixel frames (whole 3-latent blocks) "
                "and at least 9 frames"
            )
        produced, decode_s, transformer_s = 0, 0.0, 0.0
        while produced < num_frames:
            if self._uncommitted:
                raise MagbenchError(
                    f"{self.name}: with --memory-source ground-truth, remember_ground_truth() must get the frames "
                    "of each block before the next one is generated"
                )
            t0 = time.perf_counter()
            if self._from_ground_truth:
                latents = self.sampler.next_block(commit=False)
                self._uncommitted += 1
            else:
                latents = self.sampler.next_block()
            self._sync()
            t1 = time.perf_counter()
            pixels = self._dec.push(latents)
            self._sync()
            t2 = time.perf_counter()
            transformer_s += t1 - t0
            decode_s += t2 - t1
            self._timing = {"decode_s": decode_s, "transformer_s": transformer_s}
            if self._from_ground_truth:
                self._timing["ground_truth_memory_s"] = self._gt_memory_s
            take = min(pixels.shape[0], num_frames - produced)
            produced += take
            yield pixels[:take].to(self.dtype if self.dtype.is_floating_point else torch.float32)

    @torch.no_grad()
    def remember_ground_truth(self, frames: torch.Tensor) -> None:
        """Write the memory of the block just generated from its ground-truth frames.

        As the reference's ``gt_latent`` branch (Xilluill/MAG ``inference_w_initial_video`` and
        ``..._only_generator``): the cache-update pass (t = 0; MAG's memory model with the empty
        prompt, or the generator with the caption) runs on the ground truth's latents of the
        block's span instead of on the generated ones; the decoder still decodes the generated
        latents. The reference VAE-encodes context and target in one call and splits the latents;
        the streaming encoder, continuing from the context, gives the same latents (the Wan VAE
        encoder is causal). A final span shorter than a block (a target that is not whole blocks)
        leaves its last latents uncommitted: no block follows that would read them.
        """
        if not self._from_ground_truth:
            raise MagbenchError(f"{self.name}: remember_ground_truth() belongs to --memory-source ground-truth; this sample's is generated")
        t0 = time.perf_counter()
        lat = self._enc.push(frames)
        if lat is not None:
            lat = lat.to(self.device, self.dtype)
            self._gt_pending = lat if self._gt_pending is None else torch.cat([self._gt_pending, lat], dim=1)
            while self._gt_pending.shape[1] >= BLOCK_FRAMES:
                if not self._uncommitted:
                    raise MagbenchError(f"{self.name}: remember_ground_truth() got frames beyond the blocks generated so far")
                self.sampler.commit(self._gt_pending[:, :BLOCK_FRAMES])
                self._gt_pending = self._gt_pending[:, BLOCK_FRAMES:]
                self._uncommitted -= 1
        self._gt_frames += frames.shape[0]
        if self.sample is not None and self._gt_frames >= self.sample.num_target:
            self._uncommitted = 0  # the target's end: a partial last block is never read
        self._sync()
        self._gt_memory_s += time.perf_counter() - t0
        self._timing["ground_truth_memory_s"] = self._gt_memory_s

    def memory_bytes(self) -> int:
        return int(self.memory.memory_bytes()) if hasattr(self, "memory") else 0

    def timings(self) -> dict[str, float]:
        return dict(self._timing)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        cfg["memory"] = self.memory.describe() if hasattr(self, "memory") else None
        return cfg

    def close(self) -> None:
        for attr in ("generator", "memory_model", "memory", "sampler", "vae", "text"):
            if hasattr(self, attr):
                delattr(self, attr)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _self_forcing_generator(method: _WanMethod):
    from magbench.baselines.wan.checkpoint import load_wan

    if method.opts["random_weights"]:
        return method._random_model(int(method.opts["weights_seed"]))
    path = method.opts["checkpoint_path"] or method.opts["generator_path"]
    path = Path(path).expanduser() if path else SELF_FORCING.require() / "checkpoints" / "self_forcing_dmd.pt"
    return load_wan(path, base=method._model_config(), ema=bool(method.opts.get("ema", True)))


@register_method("self-forcing")
class SelfForcing(_WanMethod):
    """Self-Forcing (Wan2.1-T2V-1.3B, DMD) with a rolling KV window and an attention sink."""

    description = "Self-Forcing causal Wan2.1 1.3B, rolling KV window (21 frames) + 3-frame sink."
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, SELF_FORCING))
    defaults = {"window_frames": 21, "sink_frames": 3, "ema": True}

    def _load_generator(self):
        return _self_forcing_generator(self), None

    def _make_memory(self, num_layers: int):
        from magbench.baselines.wan.memory import SlidingWindow

        return SlidingWindow(num_layers, int(self.opts["window_frames"]), int(self.opts["sink_frames"]), BLOCK_FRAMES)


@register_method("full-history")
class FullHistoryMethod(_WanMethod):
    """The Self-Forcing generator attending to every past frame (the memory upper bound)."""

    description = "Self-Forcing causal Wan2.1 1.3B attending the full history (KV grows with the video)."
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, SELF_FORCING))
    defaults = {"max_frames": None, "ema": True}

    def _load_generator(self):
        return _self_forcing_generator(self), None

    def _make_memory(self, num_layers: int):
        from magbench.baselines.wan.memory import FullHistory

        cap = self.opts["max_frames"]
        return FullHistory(num_layers, BLOCK_FRAMES, max_frames=None if cap is None else int(cap))


@register_method("mag")
class MagMethod(_WanMethod):
    """MAG: a memory model compresses each block into one frame of KV; the generator attends to it."""

    description = "MAG (Memorize-and-Generate): compressed KV memory, 21 slots + 2-frame sink."
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, MAG))
    # memory_model=False is the paper's ablation (the reference's
    # inference_w_initial_video_only_generator, used without --use_memory_model): the generator
    # itself, with the caption, runs the context and cache-update passes into the same compressed
    # memory; the memory model is not loaded.
    defaults = {"slots": 21, "sink_frames": 2, "memory_model": True}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(self.opts["memory_model"], bool):
            raise MagbenchError(f"mag: memory_model={self.opts['memory_model']!r} must be true or false")

    def _load_generator(self):
        from magbench.baselines.wan.checkpoint import load_wan, resolve_mag_folders

        use_memory_model = self.opts["memory_model"]
        if self.opts["random_weights"]:
            seed = int(self.opts["weights_seed"])
            return self._random_model(seed), (self._random_model(seed + 1) if use_memory_model else None)
        gen, mem = self.opts["generator_path"], self.opts["memory_path"]
        root = Path(".") if (gen and (mem or not use_memory_model)) else MAG.require()
        g, m = resolve_mag_folders(root, gen, mem, need_memory=use_memory_model)
        base = self._model_config()
        return load_wan(g, base=base), (load_wan(m, base=base) if use_memory_model else None)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        # Which network writes the memory, and with which prompt: the ablation's whole difference.
        cfg["cache_writer"] = "memory model, empty prompt" if self.opts["memory_model"] else "generator, generation prompt"
        return cfg

    def _make_memory(self, num_layers: int):
        from magbench.baselines.wan.memory import CompressedMemory

        return CompressedMemory(num_layers, slots=int(self.opts["slots"]), sink_frames=int(self.opts["sink_frames"]), block_frames=BLOCK_FRAMES)
