"""Wan methods whose memory keeps using what its window evicts: ``reward-forcing`` (evicted
frames folded into an EMA sink) and ``longlive-rag`` (evicted frames kept in host memory and
retrieved back by a small encoder's similarity). Their memories: :mod:`.evicted_memory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional

from magbench.errors import MagbenchError
from magbench.method import MethodNeeds
from magbench.options import option
from magbench.registry import register_method

from magbench.baselines.wan.checkpoint import LONGLIVE_RAG, REWARD_FORCING, WAN_DIFFUSERS
from magbench.baselines.wan.methods import BLOCK_FRAMES, WanOptions, _WanMethod

if TYPE_CHECKING:  # pragma: no cover
    from magbench.baselines.wan.memory import KVMemory
    from magbench.baselines.wan.model import CausalWan
    from magbench.baselines.wan.retrieval import RetrievalEncoder
    from magbench.baselines.wan.sampler import BlockSampler
    from magbench.baselines.wan.vae import WanVAE


def _no_cuda_graphs(name: str, options: dict[str, Any]) -> dict[str, Any]:
    # A CUDA graph replays the memory's tensor work as captured; these memories decide per block
    # in Python what is attended (LongLive-RAG: which host frames come back), and no GPU check
    # of graph replay against eager runs exists for them.
    if options.get("cuda_graphs"):
        raise MagbenchError(f"{name}: cuda_graphs=true is not supported by its memory; leave it false")
    return options


@dataclass(frozen=True)
class RewardForcingOptions(WanOptions):
    window_frames: int = option(3, ge=0, help="past latent frames kept besides the sink and the current block")
    sink_frames: int = option(3, ge=1, help="the video's first latent frames, the sink that absorbs evicted frames")
    sink_ema: float = option(0.999, ge=0.0, le=1.0, help="EMA weight of the sink when it absorbs an evicted block")


@register_method("reward-forcing")
class RewardForcing(_WanMethod):
    """Reward Forcing (JaydenLyh/Reward-Forcing @ 4317f5a; weights
    ``JaydenLu666/Reward-Forcing-T2V-1.3B`` ``rewardforcing.pt``, Wan2.1-T2V-1.3B distilled by
    rewarded DMD).

    KV policy as ``configs/reward_forcing.yaml`` (``local_attn_size: 9``, ``sink_size: 3``) and
    ``wan/modules/causal_model.py``: a 9-frame cache (3-frame sink + 3 past frames + the current
    block), keys stored before RoPE and rotated to their cache slots when read (positions never
    grow); a block that overflows it evicts the oldest past frames, which the sink absorbs by an
    EMA, ``sink = 0.999 sink + 0.001 evicted`` (the reference's ``compression_alpha``; see
    :class:`~magbench.baselines.wan.evicted_memory.EMASinkWindow`). Sampler as Self-Forcing's
    (4 warped steps, shift 5), a clean cache-update pass at t = 0 with the caption
    (``context_noise: 0``). Parity: ``tests/test_wan_parity_reward_forcing.py``.

    Context: the reference's own video-extension path (``CausalInferencePipeline.inference``
    with ``initial_latent``): each context block through one t = 0 pass with the caption, so the
    sink is the context's first block and it starts absorbing evicted context frames at once.
    Memory sources: generated (the cache-update pass on the generated latents) and ground truth
    (on the ground truth's latents of the same span).

    Options: ``window_frames`` (3), ``sink_frames`` (3) (``local_attn_size = sink + window +
    3``), ``sink_ema`` (0.999; 1 keeps a plain sink).
    """

    description = (
        "Reward Forcing causal Wan2.1 1.3B: 9-frame KV cache (3-frame sink + 3 past + block), keys rotated "
        "to their cache slot when read; evicted frames folded into the sink by an EMA (0.999)."
    )
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, REWARD_FORCING))
    Options = RewardForcingOptions
    opts: RewardForcingOptions

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return _no_cuda_graphs("reward-forcing", options)

    def load_models(self) -> "tuple[CausalWan, CausalWan | None]":
        from magbench.baselines.wan.checkpoint import load_wan

        o = self.opts
        if o.random_weights:
            return self.random_model(o.weights_seed), None
        path = o.checkpoint_path or o.generator_path
        path = Path(path).expanduser() if path else REWARD_FORCING.require() / "rewardforcing.pt"
        # inference.py loads the file itself as the wrapper's state dict (no generator/EMA keys).
        return load_wan(path, base=self.model_config(), ema=False), None

    def make_memory(self, num_layers: int) -> "KVMemory":
        from magbench.baselines.wan.evicted_memory import EMASinkWindow
        from magbench.baselines.wan.memory import EMASink

        o = self.opts
        return EMASinkWindow(num_layers, o.window_frames, o.sink_frames, BLOCK_FRAMES, EMASink(o.sink_ema))


@dataclass(frozen=True)
class LongLiveRagOptions(WanOptions):
    cache_frames: int = option(12, ge=2 * BLOCK_FRAMES, help="device cache in latent frames, sink and block included (local_attn_size)")
    sink_frames: int = option(1, ge=1, help="the video's first latent frames, always attended")
    memory_frames: int = option(6, ge=0, help="frames retrieved from host memory per block (K)")
    recent_exclude: int = option(5, ge=0, help="most recently evicted frames not retrievable yet (R)")
    descriptor: Literal["encoder", "avg-pool"] = option("encoder", help="what embeds a latent frame for retrieval")
    encoder_path: Optional[str] = option(None, path=True, help="the retrieval autoencoder checkpoint, instead of the download's")


class _MeanPool:
    """The reference's fallback descriptor (``avg_pool``): a latent frame's spatial mean."""

    def encode(self, frames):
        return frames.mean(dim=(-2, -1))


@register_method("longlive-rag")
class LongLiveRag(_WanMethod):
    """LongLive-RAG (qixinhu11/LongLive-RAG @ 973884a) on the backbone its README pairs with the
    retrieval encoder for its main result (``bash inference.sh causal_forcing latentmem``:
    ``configs/causal_forcing_latentmem.yaml``; weights ``qixinhu11/LongLive-RAG``
    ``checkpoints/causal_forcing.pt``, ``generator`` key, and the retrieval autoencoder
    ``checkpoints/ae_latent_mem.pt``, of which the encoder is used).

    KV policy (``wan/modules/causal_model_latentmem.py``; ``local_attn_size: 12``, ``sink_size:
    1``, ``memory_size: 6``, ``recent_exclude: 5``; see
    :class:`~magbench.baselines.wan.evicted_memory.HostRetrievalWindow`): a 12-frame device cache
    (keys before RoPE, rotated to their slots when read); the frames it evicts kept in host (CPU)
    memory; a block attends the 1-frame sink, up to 6 frames retrieved from host memory (each at
    position 0) and the last 5 frames of the cache, itself included. Retrieval: each committed
    latent frame is embedded by the retrieval encoder (:mod:`.retrieval`); before a block, the last
    frame's embedding picks the 6 most cosine-similar evicted frames, the 5 most recently evicted
    excluded. Sampler as Self-Forcing's (4 warped steps, shift 5), cache-update pass at t = 0 with
    the caption (``context_noise: 0``). Parity: ``tests/test_wan_parity_longlive_rag.py``.

    Timing: the encoder runs in each block's commit, host transfers (device to host on eviction,
    host to device on retrieval) in its passes: both inside the timed block. ``memory_bytes`` is
    the device cache; the host store is :meth:`host_memory_bytes` (the record's
    ``memory.host_bytes_end``, and per block in the long-video task).

    Context: LongLive-RAG's pipeline has no context path; as LongLive's (baselines.md 5.2), the
    context latents go block by block through the cache-update pass (t = 0, caption, slots of
    the cache), embedded and evicted to host memory like generated blocks, so the generation
    retrieves from the context. Memory sources: generated, and ground truth (the ground truth's
    latents committed, embedded and, when evicted, kept in host memory instead).

    Options: ``cache_frames`` (12), ``sink_frames`` (1), ``memory_frames`` (6, K),
    ``recent_exclude`` (5, R), ``descriptor`` ("encoder"; "avg-pool": the reference's fallback),
    ``checkpoint_path`` / ``encoder_path`` (local files instead of the download).
    """

    description = (
        "LongLive-RAG on Causal Forcing (Wan2.1 1.3B): 12-frame KV cache, evicted frames in host memory, "
        "6 retrieved by a small encoder's similarity, attended beside a 1-frame sink and the last 5 frames."
    )
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS, LONGLIVE_RAG))
    Options = LongLiveRagOptions
    opts: LongLiveRagOptions

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return _no_cuda_graphs("longlive-rag", options)

    def _local_checkpoint(self) -> bool:
        o = self.opts
        return bool(o.checkpoint_path or o.generator_path) and (bool(o.encoder_path) or o.descriptor == "avg-pool")

    def load_models(self) -> "tuple[CausalWan, CausalWan | None]":
        from magbench.baselines.wan.checkpoint import load_wan

        o = self.opts
        if o.random_weights:
            return self.random_model(o.weights_seed), None
        path = o.checkpoint_path or o.generator_path
        path = Path(path).expanduser() if path else LONGLIVE_RAG.require() / "checkpoints" / "causal_forcing.pt"
        return load_wan(path, base=self.model_config(), ema=False), None  # use_ema: false

    def load_encoder(self) -> "RetrievalEncoder | _MeanPool":
        """The retrieval encoder on the method's device and dtype (random with ``random_weights``)."""
        from magbench.baselines.wan.retrieval import RetrievalEncoder, RetrievalEncoderConfig, load_retrieval_encoder

        o = self.opts
        if o.descriptor == "avg-pool":
            return _MeanPool()
        if o.random_weights:
            cfg = RetrievalEncoderConfig.tiny() if o.config == "tiny" else RetrievalEncoderConfig()
            enc = RetrievalEncoder(cfg).init_random(o.weights_seed + 200)
        else:
            path = Path(o.encoder_path).expanduser() if o.encoder_path else LONGLIVE_RAG.require() / "checkpoints" / "ae_latent_mem.pt"
            enc = load_retrieval_encoder(path)
        return enc.to(device=self.device, dtype=self.dtype)

    def make_memory(self, num_layers: int) -> "KVMemory":
        from magbench.baselines.wan.evicted_memory import HostRetrievalWindow

        o = self.opts
        local = o.cache_frames - o.sink_frames - o.memory_frames
        if local < BLOCK_FRAMES:  # refused in these options' names, before the policy's own check
            raise MagbenchError(
                f"{self.name}: cache_frames={o.cache_frames} - sink_frames={o.sink_frames} - memory_frames={o.memory_frames} "
                f"= {local} local frames; they must hold a block ({BLOCK_FRAMES}): raise cache_frames or lower memory_frames"
            )
        return HostRetrievalWindow.from_reference(
            num_layers, local_attn_size=o.cache_frames, sink_size=o.sink_frames, memory_size=o.memory_frames,
            recent_exclude=o.recent_exclude, block_frames=BLOCK_FRAMES,
        )

    def make_sampler(self, generator, memory, memory_model=None, vae: "WanVAE | None" = None) -> "BlockSampler":  # type: ignore[override]
        from magbench.baselines.wan.sampler import RetrievalSampler

        return RetrievalSampler(
            generator, memory, self.load_encoder(), block_frames=BLOCK_FRAMES, cuda_graphs=self.opts.cuda_graphs,
        )

    def sample_extras(self) -> dict[str, Any]:
        if not hasattr(self, "memory"):
            return {}
        return {"retrieved_blocks": len(self.memory.selections)}
