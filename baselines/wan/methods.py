"""The Wan2.1-based methods: ``mag``, ``self-forcing``, ``full-history``.

All three are the same few-step causal generator (4 steps, blocks of 3 latent frames = 12 pixel
frames) and differ in what the KV memory keeps:

* ``mag``: MAG's generator + memory model; compressed memory of ``slots`` (21) frames, one per
  block, plus a ``sink_frames`` (2) sink (Xilluill/MAG ``configs/magbench_inference.yaml``:
  ``local_attn_size: 21``, ``sink_size: 2``, ``cache_mode: block_compress``);
  ``memory_model=False`` is the paper's ablation: the generator writes that memory itself;
* ``self-forcing``: the Self-Forcing DMD generator (EMA weights, as its README's ``--use_ema``)
  with its reference cache of 21 frames including the current block, no sink, rolled past 21
  frames by the reference code's own ``local_attn_size`` (see :class:`SelfForcing`);
* ``longlive``: LongLive-1.3B (base + merged LoRA) with its 12-frame cache including a 3-frame
  sink (see :class:`LongLive`);
* ``causvid``: CausVid's autoregressive generator, 3 raw steps, 21-frame rollouts carrying 3
  latents (see :class:`CausVid`);
* ``full-history``: the Self-Forcing generator attending every past frame (``max_frames`` caps it).

Common options (:class:`WanOptions`, each method's declaration extends it; typed and checked when
the method is constructed): ``config`` ("t2v-1.3b" or "tiny"), ``random_weights`` (no downloads: random
transformer, random VAE, pseudo prompt embeddings; for CPU tests and timing), ``resolution``
([H, W]; default 480x832, 32x48 for the tiny config), ``use_prompt`` (True: the caption
conditions the generator, as MAG-Bench's ``--use_prompt``), ``fuse_qkv`` (True), ``attention``
("auto": flash-attn-4 on Hopper/Blackwell when installed, else SDPA; "sdpa"; "flash"),
``fused_elementwise`` (True: RoPE/RMSNorm/modulation/residual groups through torch.compile on
CUDA), ``cuda_graphs`` (False: replay the denoising passes from CUDA graphs; exact), each
measured in benchmarks/RESULTS.md; ``checkpoint_path`` / ``generator_path`` / ``memory_path`` /
``vae_path`` (local overrides).

Each method builds its own parts (:meth:`_WanMethod.build_parts`: its models, memory policy and
sampler, each from one method hook); ``build.build_transformer`` is the entry point for scripts
and calls the same hook, so a benchmark runs exactly what ``magbench run`` runs.

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Literal, Optional

import torch

from magbench.errors import MagbenchError
from magbench.hub import HubArtifact
from magbench.method import Method, MethodNeeds, RecalledBlock, SampleInfo
from magbench.options import MethodOptions, option
from magbench.registry import register_method

from magbench.baselines.wan.checkpoint import (
    CAUSAL_FORCING, CAUSAL_FORCING_FRAMEWISE, CAUSVID, LONGLIVE, MAG, SELF_FORCING, WAN_DIFFUSERS,
)

if TYPE_CHECKING:  # pragma: no cover
    from magbench.baselines.wan.build import WanTransformer
    from magbench.baselines.wan.memory import KVMemory
    from magbench.baselines.wan.model import CausalWan, WanConfig
    from magbench.baselines.wan.sampler import BlockSampler
    from magbench.baselines.wan.vae import WanVAE

BLOCK_FRAMES = 3
PIXELS_PER_LATENT = 4


@dataclass(frozen=True)
class WanOptions(MethodOptions):
    """The options every Wan method takes (each method's declaration extends these)."""

    config: Literal["t2v-1.3b", "tiny"] = option("t2v-1.3b", help="transformer size: the 1.3B model or the CPU-test one")
    random_weights: bool = option(False, help="no downloads: random transformer and VAE, pseudo prompt embeddings")
    resolution: Optional[tuple[int, int]] = option(None, help="HxW generated (multiples of 16); default 480x832, tiny 32x48")
    use_prompt: bool = option(True, help="the caption conditions the generator (MAG-Bench's --use_prompt)")
    fuse_qkv: bool = option(True, help="q, k, v of self-attention as one matmul")
    attention: Literal["auto", "sdpa", "flash"] = option("auto", help="attention kernel")
    fused_elementwise: bool = option(True, help="RoPE/RMSNorm/modulation groups through torch.compile on CUDA")
    cuda_graphs: bool = option(False, help="replay the denoising passes from CUDA graphs")
    checkpoint_path: Optional[str] = option(None, path=True, help="the method's checkpoint file, instead of the download")
    # Not checked for existence here: MAG resolves them relative to its download's snapshot.
    generator_path: Optional[str] = option(None, help="the generator's checkpoint (MAG: folder, may be relative to the download)")
    memory_path: Optional[str] = option(None, help="MAG's memory model folder (may be relative to the download)")
    vae_path: Optional[str] = option(None, path=True, help="a local copy of Wan2.1-T2V-1.3B-Diffusers (vae/, text_encoder/, tokenizer/)")
    prompt_cache: Optional[str] = option(None, help="folder of cached prompt embeddings (created when absent)")
    weights_seed: int = option(0, help="seed of the random weights")


class _WanMethod(Method):
    """What every Wan method shares: the VAE stream around a block sampler over a KV memory.

    A method is its :attr:`Options` plus three hooks, each building one part from the typed
    options: :meth:`load_models` (generator, and MAG's memory model), :meth:`make_memory` (the KV
    policy) and :meth:`make_sampler`; :meth:`build_parts` puts them together, once, for
    :meth:`load` and for scripts (``build.build_transformer``).
    """

    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, SELF_FORCING))
    resolution: ClassVar[tuple[int, int] | None] = (480, 832)
    #: Latent frames per generated block (3: 12 pixel frames; the frame-wise models: 1).
    block_frames: ClassVar[int] = BLOCK_FRAMES
    Options = WanOptions
    opts: WanOptions
    text_to_video: ClassVar[bool] = True  # from the prompt alone, no memorize (task long-video)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # typed, range-checked, unknown options refused (Method)
        res = self.opts.resolution
        if res is None and self.opts.config == "tiny":
            res = (32, 48)
        if res is not None:
            h, w = res
            if h % 16 or w % 16 or h <= 0 or w <= 0:
                raise MagbenchError(f"{self.name or 'wan'}: resolution {h}x{w} must be positive multiples of 16 (VAE 8x, patch 2x)")
            self.resolution = (h, w)  # the harness reads the instance's resolution
        self.make_memory(1)  # the memory geometry's cross-option checks, before any work (no buffers)
        self._timing: dict[str, float] = {}

    # -- the parts, each built by one hook ----------------------------------------------------------
    def model_config(self) -> "WanConfig":
        from magbench.baselines.wan.model import WanConfig

        return WanConfig.named(self.opts.config)

    def random_model(self, seed: int) -> "CausalWan":
        from magbench.baselines.wan.model import CausalWan

        # Built on the meta device and materialised uninitialised: init_random overwrites every
        # parameter, so PyTorch's default initialisation (most of a 1.3B build's time) is skipped.
        with torch.device("meta"):
            model = CausalWan(self.model_config())
        return model.to_empty(device="cpu").init_random(seed).eval().requires_grad_(False)

    def load_models(self) -> "tuple[CausalWan, CausalWan | None]":
        """(generator, memory model or None) on the CPU in float32, with the method's weights
        (random ones with ``random_weights``): overridden per method."""
        raise NotImplementedError

    def make_memory(self, num_layers: int) -> "KVMemory":
        """The KV memory policy, from the options alone (no weights needed)."""
        raise NotImplementedError

    def make_sampler(
        self, generator: "CausalWan", memory: "KVMemory", memory_model: "CausalWan | None" = None,
        vae: "WanVAE | None" = None,
    ) -> "BlockSampler":
        """The block sampler (Self-Forcing's 4 warped steps); CausVid overrides it. ``vae``: the
        method's VAE where a sampler needs one (CausVid's anchor re-encoding); None when the
        transformer is built on its own."""
        from magbench.baselines.wan.sampler import BlockSampler

        return BlockSampler(generator, memory, memory_model=memory_model, block_frames=self.block_frames, cuda_graphs=self.opts.cuda_graphs)

    def _prep(self, model: "CausalWan") -> "CausalWan":
        from magbench.baselines.wan.model import CausalWan

        assert isinstance(model, CausalWan)
        model = model.to(device=self.device, dtype=self.dtype)
        if self.opts.fuse_qkv:
            model.fuse_qkv()
        return model

    def build_parts(
        self, models: "tuple[CausalWan, CausalWan | None] | None" = None, vae: "WanVAE | None" = None,
    ) -> "WanTransformer":
        """Generator (and memory model) with the method's weights on its device and dtype, its
        kernels and ``fuse_qkv``; its memory policy; its sampler. ``models``: (generator, memory
        model) already built with the same weight options, reused instead of loaded (their kernel
        options are set to this method's); ``vae``: handed to :meth:`make_sampler`."""
        from magbench.baselines.wan.build import WanTransformer

        if models is None:
            generator, memory_model = self.load_models()
            generator = self._prep(generator)
            memory_model = self._prep(memory_model) if memory_model is not None else None
        else:
            generator, memory_model = models
        for model in (generator, memory_model):
            if model is not None:
                model.set_kernels(attention=self.opts.attention, fused_elementwise=self.opts.fused_elementwise)
        memory = self.make_memory(generator.cfg.num_layers)
        sampler = self.make_sampler(generator, memory, memory_model, vae=vae)
        return WanTransformer(self, generator, memory_model, memory, sampler)

    def _uses_memory_model(self) -> bool:
        """Whether a second network (MAG's memory model) is loaded beside the generator."""
        return False

    def _local_checkpoint(self) -> bool:
        """Whether the options point at local copies of all the method's own weights."""
        o = self.opts
        return bool(o.checkpoint_path) or (bool(o.generator_path) and (bool(o.memory_path) or not self._uses_memory_model()))

    def weights_needed(self) -> list:
        """Local copies given as options replace the downloads: ``vae_path`` the Wan base,
        ``checkpoint_path`` or ``generator_path`` (plus ``memory_path`` where a memory model is
        loaded) the method's own checkpoint."""
        local = self._local_checkpoint()
        return [
            art for art in super().weights_needed()
            if not (art is WAN_DIFFUSERS and self.opts.vae_path) and not (art is not WAN_DIFFUSERS and local)
        ]

    def _load_vae(self, device: torch.device | str, dtype: torch.dtype) -> "tuple[WanVAE, Path | None]":
        """The VAE (random with ``random_weights``) and the Diffusers folder the text encoder reads."""
        from magbench.baselines.wan.vae import WanVAE, tiny_vae_config, wan_vae_config

        vae_dtype = dtype if torch.device(device).type == "cuda" else torch.float32
        if self.opts.random_weights:
            vae_cfg = tiny_vae_config() if self.opts.config == "tiny" else wan_vae_config()
            return WanVAE.random(vae_cfg, device, vae_dtype, seed=self.opts.weights_seed + 100), None
        root = Path(self.opts.vae_path).expanduser() if self.opts.vae_path else WAN_DIFFUSERS.require()
        return WanVAE.from_pretrained(root / "vae", device, vae_dtype), root

    def load(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().load(device, dtype)
        for art in self.weights_needed():  # before anything heavy: a one-line error naming the fix
            art.require()
        from magbench.baselines.wan.text import PromptEncoder

        # The VAE first: a sampler may need it (CausVid re-encodes its rollouts' anchors).
        self.vae, folder = self._load_vae(device, dtype)
        parts = self.build_parts(vae=self.vae)  # kernels (attention, fused_elementwise) held by the models
        self.generator, self.memory_model, self.memory, self.sampler = parts.generator, parts.memory_model, parts.memory, parts.sampler
        cfg = self.generator.cfg
        if self.vae.z_dim != cfg.in_dim:
            raise MagbenchError(f"VAE latent channels {self.vae.z_dim} != transformer input {cfg.in_dim}")
        if self.device.type == "cuda" and self.resolution:
            # Just-in-time compilation (flash-attn-4, the fused groups, the VAE's compiled norms)
            # here, not in a timed block.
            parts.warmup((cfg.in_dim, self.resolution[0] // 8, self.resolution[1] // 8))
            self.vae.warmup(*self.resolution)
        cache = Path(self.opts.prompt_cache).expanduser() if self.opts.prompt_cache else None
        self.text = PromptEncoder(folder, device, dtype, text_dim=cfg.text_dim, text_len=cfg.text_len, cache_dir=cache)

    # -- per sample -----------------------------------------------------------------------------
    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        if (sample.height, sample.width) != tuple(self.resolution or ()):
            raise MagbenchError(f"{self.name}: sample is {sample.height}x{sample.width}, the method generates {self.resolution}")
        prompt = sample.prompt if self.opts.use_prompt else ""
        embeds = self.text.embed_many([prompt, ""])
        h, w = sample.height // 8, sample.width // 8
        self.sampler.reset(embeds[0], empty_embeds=embeds[1], seed=sample.seed, latent_shape=(self.generator.cfg.in_dim, h, w))
        # Preallocate a replay sample's whole length; a text-to-video horizon (minutes) grows as it
        # fills instead: full history reserved for 5 minutes would ask for ~350 GB at once.
        if hasattr(self.memory, "reserve"):
            total = (sample.num_context + 3) // 4 + -(-sample.num_target // 4)
            self.memory.reserve(total + self.block_frames if sample.num_context else 0)
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
        self._memorised: list[torch.Tensor] = []  # clean context blocks: recall's latent reference only
        self._reconstruction_bytes: int | None = None  # set by reconstruct() (mag)

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
        bf = self.block_frames
        whole = self._pending.shape[1] // bf * bf
        for i in range(0, whole, bf):
            block = self._pending[:, i : i + bf]
            self.sampler.commit(block)
            self._dec.push(block)  # brings the decoder's causal cache to where the context ends
            self._memorised.append(block)
        self._pending = self._pending[:, whole:]

    @torch.no_grad()
    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        pending = 0 if self._pending is None else self._pending.shape[1]
        no_context = self.sampler.frame == 0 and self.sample is not None and self.sample.num_context == 0
        if (self.sampler.frame == 0 and not no_context) or pending or self._enc.pending_frames:
            n_ctx = self.sample.num_context if self.sample else "?"
            raise MagbenchError(
                f"{self.name}: the context ({n_ctx} frames) must be whole blocks of {self.block_frames} latent frames "
                "(12a-3 pixel frames) and at least 9 frames"
            )
        self._memorised = []  # recall's reference latents are not needed past the context
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
            while self._gt_pending.shape[1] >= self.block_frames:
                if not self._uncommitted:
                    raise MagbenchError(f"{self.name}: remember_ground_truth() got frames beyond the blocks generated so far")
                self.sampler.commit(self._gt_pending[:, : self.block_frames])
                self._gt_pending = self._gt_pending[:, self.block_frames :]
                self._uncommitted -= 1
        self._gt_frames += frames.shape[0]
        if self.sample is not None and self._gt_frames >= self.sample.num_target:
            self._uncommitted = 0  # the target's end: a partial last block is never read
        self._sync()
        self._gt_memory_s += time.perf_counter() - t0
        self._timing["ground_truth_memory_s"] = self._gt_memory_s

    def memory_bytes(self) -> int:
        return int(self.memory.memory_bytes()) if hasattr(self, "memory") else 0

    def host_memory_bytes(self) -> int:
        """Bytes of the memory held in host (CPU) memory, beside :meth:`memory_bytes` on the
        device: LongLive-RAG's evicted frames; 0 for memories that live on the device only."""
        host = getattr(getattr(self, "memory", None), "host_bytes", None)
        return int(host()) if callable(host) else 0

    def timings(self) -> dict[str, float]:
        return dict(self._timing)

    def derived(self) -> dict[str, Any]:
        # From the options alone (buffers are allocated lazily): known before load.
        return {"memory": self.make_memory(self.model_config().num_layers).describe()}

    def recall(self) -> Iterator[RecalledBlock]:
        """Task ``memory-recall``: each memorised block regenerated from the memory alone
        (:mod:`magbench.baselines.wan.recall`)."""
        from magbench.baselines.wan.recall import recall_memorised

        return recall_memorised(self)

    def close(self) -> None:
        for attr in ("generator", "memory_model", "memory", "sampler", "vae", "text"):
            if hasattr(self, attr):
                delattr(self, attr)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _self_forcing_generator(method: "SelfForcing | FullHistoryMethod") -> "CausalWan":
    """The method's Self-Forcing-format generator (``method.checkpoint``: artefact and file; EMA
    weights when ``ema``), or random weights."""
    from magbench.baselines.wan.checkpoint import load_wan

    o = method.opts
    if o.random_weights:
        return method.random_model(o.weights_seed)
    art, file = method.checkpoint
    path = o.checkpoint_path or o.generator_path
    path = Path(path).expanduser() if path else art.require() / file
    return load_wan(path, base=method.model_config(), ema=o.ema)


@dataclass(frozen=True)
class SelfForcingOptions(WanOptions):
    # >= a block (SlidingWindow checks it against the method's block).
    window_frames: int = option(18, ge=1, help="past latent frames kept besides the sink and the current block")
    sink_frames: int = option(0, ge=0, help="first latent frames of the video kept forever")
    ema: bool = option(True, help="the EMA weights (the README's --use_ema)")


@register_method("self-forcing")
class SelfForcing(_WanMethod):
    """Self-Forcing (Wan2.1-T2V-1.3B, DMD; EMA weights as its README's ``--use_ema``).

    Default memory: the released Self-Forcing cache, continued past its length by the code's own
    rolling window. The released config (guandeh17/Self-Forcing ``configs/self_forcing_dmd.yaml``,
    ``local_attn_size=-1``, ``sink_size=0``) holds 21 latent frames, the current block included,
    with no sink, and cannot go further (``pipeline/causal_inference.py`` allocates 32760 tokens
    and never evicts). With ``model_kwargs.local_attn_size=21`` the same code evicts the oldest
    frames instead (``wan/modules/causal_model.py``): identical for the first 21 frames, and the
    only way its own code generates a MAG-Bench continuation. In this policy's terms: 18 past
    frames + the current block, no sink (``window_frames=18``, ``sink_frames=0``; parity with the
    reference code: ``tests/test_wan_parity_self_forcing.py``).

    Other settings through options: ``window_frames`` (past frames kept besides the sink and the
    current block; the reference's ``local_attn_size - sink_size - 3``) and ``sink_frames``. MAG's
    rolling baseline cache (Xilluill/MAG ``cache_mode: original`` with its
    ``configs/magbench_inference.yaml``: ``local_attn_size: 21``, ``sink_size: 2``, i.e. 21 past
    frames + a 2-frame sink + the current block, 26 attended) is ``window_frames=21 sink_frames=2``
    (``benchmarks/bench_reference.py`` times the two side by side). This method's default before
    parity with the Self-Forcing reference was checked was ``window_frames=21 sink_frames=3``.
    """

    description = (
        "Self-Forcing causal Wan2.1 1.3B; its released 21-frame KV cache (current block included, "
        "no sink), rolled by its own local_attn_size=21 code past 21 frames."
    )
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, SELF_FORCING))
    #: (artefact, file in it) of the generator; the weights swaps below change only this.
    checkpoint: ClassVar[tuple[HubArtifact, str]] = (SELF_FORCING, "checkpoints/self_forcing_dmd.pt")
    Options = SelfForcingOptions
    opts: SelfForcingOptions

    def load_models(self) -> "tuple[CausalWan, CausalWan | None]":
        return _self_forcing_generator(self), None

    def make_memory(self, num_layers: int) -> "KVMemory":
        from magbench.baselines.wan.memory import SlidingWindow

        return SlidingWindow(num_layers, self.opts.window_frames, self.opts.sink_frames, self.block_frames)


@dataclass(frozen=True)
class CausalForcingOptions(SelfForcingOptions):
    ema: bool = option(False, help="the EMA weights (the README's chunk-wise command reads the 'generator' weights)")


@register_method("causal-forcing")
class CausalForcing(SelfForcing):
    """Causal Forcing, chunk-wise 4-step model (thu-ml/Causal-Forcing @ 1fc7bbc; weights
    ``zhuhz22/Causal-Forcing`` ``chunkwise/causal_forcing.pt``, ``generator`` key: its README's
    chunk-wise command runs without ``--use_ema``).

    A weights swap of :class:`SelfForcing`: the reference's inference code is Self-Forcing's
    (``pipeline/causal_inference.py``, ``wan/modules/causal_model.py``: keys cached after RoPE at
    absolute positions, ``configs/causal_forcing_dmd_chunkwise.yaml``: 3-frame blocks, steps
    [1000, 750, 500, 250] warped, shift 5, ``local_attn_size`` -1, no sink). The same 21-frame
    cache, continued past 21 frames by the code's own ``local_attn_size: 21`` window
    (``window_frames=18``, ``sink_frames=0``). Parity: ``tests/test_wan_parity_causal_forcing.py``.

    Context: the reference's own video-extension path (``initial_latent``: each context block
    through one t = 0 pass with the caption). Memory sources: generated and ground truth, as
    Self-Forcing. (Its README warns that the 5-second model is not a long-video baseline by
    itself; MAG-Bench's continuations run it past its training length, as every method here.)
    """

    description = (
        "Causal Forcing chunk-wise causal Wan2.1 1.3B (Self-Forcing's inference code and cache: 21 frames, "
        "current block included, no sink, rolled past 21 frames)."
    )
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, CAUSAL_FORCING))
    checkpoint: ClassVar[tuple[HubArtifact, str]] = (CAUSAL_FORCING, "chunkwise/causal_forcing.pt")
    Options = CausalForcingOptions
    opts: CausalForcingOptions


@dataclass(frozen=True)
class CausalForcingFramewiseOptions(SelfForcingOptions):
    window_frames: int = option(20, ge=1, help="past latent frames kept besides the sink and the current frame")
    ema: bool = option(True, help="the EMA weights (the README's frame-wise command has --use_ema)")


@register_method("causal-forcing-framewise")
class CausalForcingFramewise(SelfForcing):
    """Causal Forcing, frame-wise 4-step model (thu-ml/Causal-Forcing @ 1fc7bbc; weights
    ``zhuhz22/Causal-Forcing`` ``framewise/causal_forcing.pt``, ``generator_ema``: its README's
    frame-wise command has ``--use_ema``).

    :class:`CausalForcing` with blocks of one latent frame (4 pixel frames;
    ``configs/causal_forcing_dmd_framewise.yaml``: ``num_frame_per_block: 1``, the same steps):
    that is all it needs. The 21-frame cache, current frame included: ``window_frames=20``.
    The Causal Forcing++ 1- and 2-step frame-wise models denoise the first chunk with another step
    list (``denoising_step_list_first_chunk``) and are not offered. Parity:
    ``tests/test_wan_parity_causal_forcing.py``.
    """

    description = (
        "Causal Forcing frame-wise causal Wan2.1 1.3B (1-frame blocks; Self-Forcing's 21-frame cache, "
        "no sink, rolled past 21 frames)."
    )
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, CAUSAL_FORCING_FRAMEWISE))
    checkpoint: ClassVar[tuple[HubArtifact, str]] = (CAUSAL_FORCING_FRAMEWISE, "framewise/causal_forcing.pt")
    block_frames: ClassVar[int] = 1
    Options = CausalForcingFramewiseOptions
    opts: CausalForcingFramewiseOptions


@dataclass(frozen=True)
class FullHistoryOptions(WanOptions):
    max_frames: Optional[int] = option(None, ge=1, help="latent frames at most (none: unbounded)")
    ema: bool = option(True, help="the Self-Forcing EMA weights")


@register_method("full-history")
class FullHistoryMethod(_WanMethod):
    """The Self-Forcing generator attending to every past frame (the memory upper bound)."""

    description = "Self-Forcing causal Wan2.1 1.3B attending the full history (KV grows with the video)."
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, SELF_FORCING))
    checkpoint: ClassVar[tuple[HubArtifact, str]] = (SELF_FORCING, "checkpoints/self_forcing_dmd.pt")
    Options = FullHistoryOptions
    opts: FullHistoryOptions

    def load_models(self) -> "tuple[CausalWan, CausalWan | None]":
        return _self_forcing_generator(self), None

    def make_memory(self, num_layers: int) -> "KVMemory":
        from magbench.baselines.wan.memory import FullHistory

        return FullHistory(num_layers, self.block_frames, max_frames=self.opts.max_frames)


@dataclass(frozen=True)
class MagOptions(WanOptions):
    slots: int = option(21, ge=1, help="compressed memory slots (one frame per block, a ring)")
    sink_frames: int = option(2, ge=0, le=BLOCK_FRAMES, help="frames of the first block kept whole")
    # memory_model=False is the paper's ablation (the reference's
    # inference_w_initial_video_only_generator, used without --use_memory_model): the generator
    # itself, with the caption, runs the context and cache-update passes into the same compressed
    # memory; the memory model is not loaded.
    memory_model: bool = option(True, help="MAG's memory model writes the memory (false: the generator does)")


@register_method("mag")
class MagMethod(_WanMethod):
    """MAG: a memory model compresses each block into one frame of KV; the generator attends to it.

    As Xilluill/MAG's ``inference_w_initial_video`` with ``configs/magbench_inference.yaml``
    (``cache_mode: block_compress``, 21 slots, 2-frame sink): each block's last frame goes to ring
    slot ``block % 21``, the first block's first 2 frames to the sink. Parity with the reference
    code, its ``--use_gt`` branch and the generator-only ablation: ``tests/test_wan_parity_mag.py``.
    """

    description = "MAG (Memorize-and-Generate): compressed KV memory, 21 slots + 2-frame sink."
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, MAG))
    Options = MagOptions
    opts: MagOptions

    def _uses_memory_model(self) -> bool:
        return self.opts.memory_model

    def load_models(self) -> "tuple[CausalWan, CausalWan | None]":
        from magbench.baselines.wan.checkpoint import load_wan, resolve_mag_folders

        o = self.opts
        if o.random_weights:
            return self.random_model(o.weights_seed), (self.random_model(o.weights_seed + 1) if o.memory_model else None)
        gen, mem = o.generator_path, o.memory_path
        root = Path(".") if (gen and (mem or not o.memory_model)) else MAG.require()
        g, m = resolve_mag_folders(root, gen, mem, need_memory=o.memory_model)
        base = self.model_config()
        return load_wan(g, base=base), (load_wan(m, base=base) if o.memory_model else None)

    def config(self) -> dict[str, Any]:
        cfg = super().config()
        # Which network writes the memory, and with which prompt: the ablation's whole difference.
        cfg["cache_writer"] = "memory model, empty prompt" if self.opts.memory_model else "generator, generation prompt"
        return cfg

    def make_memory(self, num_layers: int) -> "KVMemory":
        from magbench.baselines.wan.memory import CompressedMemory

        return CompressedMemory(num_layers, slots=self.opts.slots, sink_frames=self.opts.sink_frames, block_frames=BLOCK_FRAMES)

    def reconstruct(self, frames: torch.Tensor) -> Iterator[RecalledBlock]:
        """Task ``memory-reconstruction``: MAG's own memory-model test, ``inference_compress.py``
        (:mod:`magbench.baselines.wan.reconstruction`)."""
        from magbench.baselines.wan.reconstruction import reconstruct_for

        return reconstruct_for(self, frames)

    def memory_bytes(self) -> int:
        # After reconstruct(): the compressed memory that test rebuilds the clip from.
        held = getattr(self, "_reconstruction_bytes", None)
        return super().memory_bytes() if held is None else held


@dataclass(frozen=True)
class LongLiveOptions(WanOptions):
    window_frames: int = option(6, ge=BLOCK_FRAMES, help="past latent frames kept besides the sink and the current block")
    sink_frames: int = option(3, ge=0, help="first latent frames of the video kept forever")
    lora_path: Optional[str] = option(None, path=True, help="the LoRA file, instead of the download's models/lora.pt")
    lora_rank: int = option(256, ge=1, help="LoRA rank")
    # An integer, as the reference config writes it (and as run manifests recorded it).
    lora_alpha: int = option(256, gt=0, help="LoRA alpha (scale alpha / rank)")


@register_method("longlive")
class LongLive(_WanMethod):
    """LongLive-1.3B (NVlabs/LongLive branch ``v1.0``): Wan2.1-T2V-1.3B base checkpoint + LoRA
    (rank 256, alpha 256, all Linear layers of every block), merged into the weights at load.

    KV policy as ``configs/longlive_inference.yaml`` (``local_attn_size: 12``, ``sink_size: 3``):
    a 12-latent-frame cache that includes a 3-frame sink (the first block, never evicted) and the
    current block, so a block attends to sink + 6 previous frames + itself; the oldest non-sink
    frames are evicted; RoPE positions absolute and growing (the default ``causal_model.py``, not
    the later "infinity" variant); a clean cache-update pass at t = 0 with the same prompt.
    Sampler as Self-Forcing's (4 warped steps). Parity: ``tests/test_wan_parity_longlive.py``.

    Context: LongLive's pipeline has no context path. As the equivalent of baselines.md 5.2 (the
    loop of Self-Forcing's ``initial_latent`` and MAG's generator-only path), the context latents
    go block by block through the same cache-update pass (t = 0, caption prompt, absolute
    positions), so the sink is the context's first block and generation continues at position 3m.

    Options: ``window_frames`` (6) and ``sink_frames`` (3) in this package's policy terms
    (``local_attn_size = sink + window + 3``); ``checkpoint_path`` / ``lora_path`` (local files
    instead of the hub download), ``lora_rank`` / ``lora_alpha`` (256 / 256).
    """

    description = (
        "LongLive-1.3B (Wan2.1 + merged LoRA): 12-frame KV cache incl. a 3-frame sink (first block), "
        "oldest frames evicted, absolute RoPE."
    )
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, LONGLIVE))
    Options = LongLiveOptions
    opts: LongLiveOptions

    def _local_checkpoint(self) -> bool:
        # The base checkpoint alone still leaves the LoRA to download (and the other way round).
        o = self.opts
        return bool(o.checkpoint_path or o.generator_path) and bool(o.lora_path)

    def load_models(self) -> "tuple[CausalWan, CausalWan | None]":
        from magbench.baselines.wan.checkpoint import load_wan
        from magbench.baselines.wan.lora import merge_lora, read_lora

        o = self.opts
        if o.random_weights:
            return self.random_model(o.weights_seed), None
        base = o.checkpoint_path or o.generator_path
        root = LONGLIVE.require() if not (base and o.lora_path) else None
        base_path = Path(base).expanduser() if base else root / "models" / "longlive_base.pt"  # type: ignore[operator]
        lora_path = Path(o.lora_path).expanduser() if o.lora_path else root / "models" / "lora.pt"  # type: ignore[operator]
        # use_ema: false in the inference config -> the "generator" weights.
        model = load_wan(base_path, base=self.model_config(), ema=False)
        merge_lora(model, read_lora(str(lora_path)), rank=o.lora_rank, alpha=float(o.lora_alpha))
        return model, None

    def make_memory(self, num_layers: int) -> "KVMemory":
        from magbench.baselines.wan.memory import SlidingWindow

        return SlidingWindow(num_layers, self.opts.window_frames, self.opts.sink_frames, BLOCK_FRAMES)


class _PixelRing:
    """The most recent pixel frames by absolute index (CausVid re-encodes one when a rollout starts)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.count = 0
        self._frames: dict[int, torch.Tensor] = {}

    def push(self, frames: torch.Tensor, start: int | None = None) -> None:
        start = self.count if start is None else start
        for j in range(frames.shape[0]):
            self._frames[start + j] = frames[j]
        self.count = max(self.count, start + frames.shape[0])
        for k in [k for k in self._frames if k < self.count - self.keep]:
            del self._frames[k]

    def get(self, index: int) -> torch.Tensor:
        if index not in self._frames:
            raise MagbenchError(f"causvid: pixel frame {index} is no longer held (the ring keeps {self.keep})")
        return self._frames[index]


@dataclass(frozen=True)
class CausVidOptions(WanOptions):
    rollout_frames: int = option(21, ge=2 * BLOCK_FRAMES, help="latent frames of a rollout (its cache)")
    carry_frames: int = option(3, ge=BLOCK_FRAMES, help="latents carried into the next rollout")
    context_frames: int = option(3, ge=BLOCK_FRAMES, help="context latents the first rollout starts from (3 or 18)")
    reencode_anchor: bool = option(True, help="a rollout's first carried latent re-encoded from its pixel frame")


@register_method("causvid")
class CausVid(_WanMethod):
    """CausVid (tianweiy/CausVid, Wan2.1 autoregressive checkpoint; ``generator`` weights).

    Sampler as ``configs/wan_causal_dmd.yaml``: 3 steps at the raw timesteps [1000, 757, 522],
    flow-matching shift 8 (its wrapper's scheduler), sigma of the nearest grid point. KV policy as
    ``minimal_inference/longvideo_autoregressive_inference.py``: rollouts of 21 latent frames with
    no eviction inside a rollout; a new rollout restarts positions at 0 from 3 carried latents,
    the first of which is replaced by the VAE encoding of its last decoded pixel frame alone
    (``video[-9]``). Parity: ``tests/test_wan_parity_causvid.py``.

    Context (baselines.md 5.2, "faithful" variant, the default): the first rollout starts from
    the context's last ``context_frames`` = 3 latents as ``start_latents``, the first replaced by
    the encoding of its last pixel frame (a ground-truth frame here, where CausVid's script uses
    its own decoded frame), exactly as the script carries 3 latents between rollouts. The other
    variant, "max-context", is ``context_frames=18``: the most ``start_latents`` a 21-frame
    rollout can take while leaving room for a block.

    Options: ``rollout_frames`` (21), ``carry_frames`` (3), ``context_frames`` (3 or 18),
    ``reencode_anchor`` (True; False carries the latents as they are).
    """

    description = (
        "CausVid causal Wan2.1 1.3B: 3 raw steps (1000/757/522, shift 8); 21-frame rollouts, "
        "each restarted at position 0 from 3 carried latents; context: its last 3 latents."
    )
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, CAUSVID))
    Options = CausVidOptions
    opts: CausVidOptions

    def load_models(self) -> "tuple[CausalWan, CausalWan | None]":
        from magbench.baselines.wan.checkpoint import load_wan

        o = self.opts
        if o.random_weights:
            return self.random_model(o.weights_seed), None
        path = o.checkpoint_path or o.generator_path
        path = Path(path).expanduser() if path else CAUSVID.require() / "autoregressive_checkpoint" / "model.pt"
        return load_wan(path, base=self.model_config(), ema=False), None

    def make_memory(self, num_layers: int) -> "KVMemory":
        from magbench.baselines.wan.memory import RolloutMemory

        o = self.opts
        return RolloutMemory(
            num_layers, BLOCK_FRAMES, rollout_frames=o.rollout_frames, carry_frames=o.carry_frames,
            context_frames=o.context_frames,
        )

    def make_sampler(self, generator, memory, memory_model=None, vae=None):  # type: ignore[override]
        """CausVid's sampler (3 raw steps) driving the rollouts. The anchor re-encoding needs the
        VAE: without one (a transformer built on its own, for scripts) the carried latents are
        used as they are."""
        from magbench.baselines.wan.sampler import CAUSVID_SCHEDULE, RolloutSampler

        reencode = self.opts.reencode_anchor and vae is not None
        return RolloutSampler(
            generator, memory, schedule=CAUSVID_SCHEDULE, block_frames=BLOCK_FRAMES,
            anchor=self._anchor if reencode else None, cuda_graphs=self.opts.cuda_graphs,
        )

    def _anchor(self, latent_index: int) -> torch.Tensor:
        """The VAE encoding of latent ``latent_index``'s last pixel frame alone (pixel 4l)."""
        frame = self._pixels.get(PIXELS_PER_LATENT * latent_index)
        return self.vae.encode(frame[None]).to(self.device, self.dtype)

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        carried = max(self.opts.carry_frames, self.opts.context_frames)
        self._pixels = _PixelRing(PIXELS_PER_LATENT * (carried + BLOCK_FRAMES) + 1)
        self._last_span = (0, 0)  # pixel index and length of the block generate() last yielded

    @torch.no_grad()
    def memorize(self, frames: torch.Tensor) -> None:
        self._pixels.push(frames.to(self.device))
        super().memorize(frames)

    @torch.no_grad()
    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        for pixels in super().generate(num_frames):
            self._last_span = (self._pixels.count, pixels.shape[0])
            self._pixels.push(pixels.to(self.device))
            yield pixels

    if "remember_ground_truth" in _WanMethod.__dict__:  # the Wan methods' --memory-source ground-truth

        def remember_ground_truth(self, frames: torch.Tensor) -> None:
            # The next rollout re-encodes a frame of what the memory was written from.
            self._pixels.push(frames.to(self.device), start=self._last_span[0])
            super().remember_ground_truth(frames)
