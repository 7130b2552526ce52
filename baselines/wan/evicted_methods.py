"""Wan methods whose memory keeps using what its window evicts: ``reward-forcing`` (evicted
frames folded into an EMA sink) and ``longlive-rag`` (evicted frames kept in host memory and
retrieved back by a small encoder's similarity). Their memories: :mod:`.evicted_memory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magbench.method import MethodNeeds
from magbench.options import option
from magbench.registry import register_method

from magbench.baselines.wan.checkpoint import REWARD_FORCING, WAN_DIFFUSERS
from magbench.baselines.wan.methods import BLOCK_FRAMES, WanOptions, _WanMethod

if TYPE_CHECKING:  # pragma: no cover
    from magbench.baselines.wan.memory import KVMemory
    from magbench.baselines.wan.model import CausalWan


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
