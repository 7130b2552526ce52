"""The Wan methods whose memory rotates keys when it reads them: ``rolling-forcing`` and
``infinity-rope``.

Both are the Wan2.1-T2V-1.3B causal generator of :mod:`.methods` (blocks of 3 latent frames, the
same VAE, text encoder, context ingestion, decoding and ``--memory-source ground-truth``), with a
memory of :mod:`.rope_memory` and, for Rolling Forcing, the rolling-window sampler of
:mod:`.rolling`. Their options are typed declarations (:class:`~.methods.WanOptions` and each
method's own fields).

Neither memory runs under CUDA graphs (``cuda_graphs=true`` is refused): a graph replays the
rotations it captured, and these memories rotate held keys to positions that change per pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import torch

from magbench.errors import MagbenchError
from magbench.method import MethodNeeds
from magbench.options import option
from magbench.registry import register_method

from magbench.baselines.wan.checkpoint import INFINITE_FORCING, ROLLING_FORCING, WAN_DIFFUSERS
from magbench.baselines.wan.methods import BLOCK_FRAMES, PIXELS_PER_LATENT, WanOptions, _WanMethod

# The references' loaders remove FSDP's wrapper name anywhere in a key (RollingForcing and
# infinity-rope inference.py: ``name.replace("_fsdp_wrapped_module.", "")``).
FSDP_FRAGMENT = ("_fsdp_wrapped_module.",)


# The options every Wan method takes are methods.WanOptions; these methods add their own.
WanCommonOptions = WanOptions


class _RotatingMemoryMethod(_WanMethod):
    """A Wan method on a memory of :mod:`.rope_memory`: typed options, CUDA graphs refused."""

    Options: Any = WanCommonOptions
    #: The Hub artefact holding the method's own checkpoint, and the file in it.
    checkpoint_artifact: Any = None
    checkpoint_file: str = ""

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        if options.get("cuda_graphs"):
            raise MagbenchError(
                f"{self.name or type(self).__name__}: cuda_graphs=true is not supported (its memory rotates held keys "
                "to new positions every pass, which a replayed graph would not); leave it false"
            )
        return options

    def load_models(self):
        from magbench.baselines.wan.checkpoint import load_wan

        s = self.opts
        if s.random_weights:
            return self.random_model(s.weights_seed), None
        local = s.checkpoint_path or s.generator_path
        path = Path(local).expanduser() if local else self.checkpoint_artifact.require() / self.checkpoint_file
        return load_wan(path, base=self.model_config(), ema=s.ema, drop=FSDP_FRAGMENT), None


@dataclass(frozen=True)
class RollingForcingOptions(WanCommonOptions):
    ema: bool = option(True, help="the EMA weights (generator_ema), as the README's --use_ema")
    attention_frames: int = option(21, ge=18, help="frames a pass attends at most (the reference's max_attention_size)")
    past_frames: int = option(18, ge=3, help="frames kept after the sink (the reference's 24-frame cache less sink and write slot)")


@register_method("rolling-forcing")
class RollingForcing(_RotatingMemoryMethod):
    """Rolling Forcing (TencentARC/RollingForcing @ a1477d09e85dc759a6a6728f55f77f59342ce388;
    checkpoint ``checkpoints/rolling_forcing_dmd.pt``, EMA weights as the README's ``--use_ema``).

    Sampler (:class:`~magbench.baselines.wan.rolling.RollingSampler`, as
    ``inference_rolling_forcing`` with ``configs/rolling_forcing_dmd.yaml``): 5 warped steps
    [1000, 952.4, 882.4, 769.2, 555.6]; a rolling window of 5 blocks at 5 noise levels denoised
    by one pass, each block entering as noise and leaving, finished, 5 windows later; the block
    leaving is yielded, then written to the memory by a clean pass at t = 0 with the caption. The
    first block arrives after 5 passes (the time to the first block counts them all).

    Memory (:class:`~magbench.baselines.wan.rope_memory.RelativeSinkCache`): the first block as an
    attention sink, its keys stored before RoPE and rotated, on each read, to sit just before the
    oldest attended frame; the 18 most recent frames after it at absolute positions. A window's
    pass attends the sink, the 1 most recent past block (more as the last windows shrink: at
    most 21 frames in all) and itself; a finished block's clean pass attends the last 21 frames
    of the cache (the sink at position 0 while it fits). Parity with the reference's pipeline,
    model and cache code: ``tests/test_wan_parity_rolling_forcing.py``.

    Context: the reference has no working context path (``inference_rolling_forcing`` reads
    ``current_start_frame`` before assigning it when given ``initial_latent``, and its windows
    start at frame 0 whatever it was given). Here the context latents go block by block through
    the clean pass a finished block gets (t = 0, caption, absolute positions 0 .. 3m-1), so the
    sink is the context's first block and the first window starts at latent frame 3m.
    ``--memory-source ground-truth``: each block leaving the window is written to the memory
    from its ground-truth frames' latents instead (``remember_ground_truth``), before the next
    window runs.

    Options: ``ema`` (True), ``attention_frames`` (21) and ``past_frames`` (18), multiples of
    the block; the common Wan options (``cuda_graphs`` refused).
    """

    description = (
        "Rolling Forcing (Wan2.1 1.3B): 5 blocks at 5 noise levels denoised together in a rolling window; "
        "sink = first block, rotated on read to sit before the recent frames; 21-frame attention."
    )
    needs = MethodNeeds(gpu=True, weights=(ROLLING_FORCING, WAN_DIFFUSERS))
    Options = RollingForcingOptions
    checkpoint_artifact = ROLLING_FORCING
    checkpoint_file = "checkpoints/rolling_forcing_dmd.pt"

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options = super().validate_options(options)
        for key in ("attention_frames", "past_frames"):
            if options[key] % BLOCK_FRAMES:
                raise MagbenchError(f"rolling-forcing: {key}={options[key]} must be a multiple of the block ({BLOCK_FRAMES})")
        return options

    def make_memory(self, num_layers: int):
        from magbench.baselines.wan.rolling import ROLLING_FORCING_SCHEDULE
        from magbench.baselines.wan.rope_memory import RelativeSinkCache

        window = len(ROLLING_FORCING_SCHEDULE.denoising_steps)
        return RelativeSinkCache(
            num_layers, past_frames=self.opts.past_frames, attention_frames=self.opts.attention_frames,
            max_pass_frames=window * BLOCK_FRAMES, block_frames=BLOCK_FRAMES,
        )

    def make_sampler(self, generator, memory, memory_model=None, vae=None):
        from magbench.baselines.wan.rolling import RollingSampler

        return RollingSampler(generator, memory, block_frames=BLOCK_FRAMES)

    @torch.no_grad()
    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        # The video's length decides when the windows stop taking in noise and shrink (the
        # reference's end of video): every generated block decodes to 12 frames after the context.
        self.sampler.plan(math.ceil(num_frames / (BLOCK_FRAMES * PIXELS_PER_LATENT)))
        yield from super().generate(num_frames)


@dataclass(frozen=True)
class InfinityRopeOptions(WanCommonOptions):
    ema: bool = option(True, help="the EMA weights (generator_ema), as the README's inference.sh --use_ema")
    window_frames: int = option(2, ge=1, help="past frames kept besides the sink and the block (local_attn_size - sink - 3)")
    sink_frames: int = option(1, ge=0, help="first frames of the video kept for ever (sink_size)")


@register_method("infinity-rope")
class InfinityRope(_RotatingMemoryMethod):
    """Infinity-RoPE (yesiltepe-hidir/infinity-rope @ 63d7b84f043a2536ccb62d5171ed54dfadc0a721):
    training-free, on the weights its README runs (``setup_env.sh`` fetches SOTAMak1r/Infinite-
    Forcing, ``inference.sh`` loads ``checkpoints/ema_model.pt`` with ``--use_ema``).

    Memory (:class:`~magbench.baselines.wan.rope_memory.BlockRelativeWindow`, as
    ``wan/modules/causal_model.py`` with ``configs/self_forcing_dmd.yaml``'s ``local_attn_size:
    6``, ``sink_size: 1``): the video's first frame and the 2 most recent past frames, keys
    stored before RoPE; every pass rotates what it attends to positions 0..5 in video order
    (block-relativistic RoPE: the sink at 0, the block last, its queries with it), so positions
    never grow with the video. Sampler as Self-Forcing's (4 warped steps [1000, 937.5, 833.3,
    625], a clean pass at t = 0 with the caption after each block). Parity with the reference's
    pipeline, model and cache code: ``tests/test_wan_parity_infinity_rope.py``.

    Context: the reference's own ``initial_latent`` path (``pipeline/causal_inference.py``):
    each context block once through the generator at t = 0 with the prompt, at the next
    position, then generation from latent frame 3m; so the sink is the context's first frame.
    The caption is one scene: the reference's multi-prompt syntax (``|`` scenes, ``[Ns]``
    durations, KV flush and RoPE cut at ``#`` scene cuts) is not used. ``--memory-source
    ground-truth``: each generated block's clean pass runs on its ground-truth frames' latents
    instead (``remember_ground_truth``).

    Options: ``ema`` (True), ``window_frames`` (2) and ``sink_frames`` (1) in this package's
    policy terms (``local_attn_size = sink + window + 3``); the common Wan options
    (``cuda_graphs`` refused).
    """

    description = (
        "Infinity-RoPE on Infinite-Forcing (Wan2.1 1.3B): 6-frame window incl. a 1-frame sink, every key "
        "rotated on read to its place in the window (positions never grow)."
    )
    needs = MethodNeeds(gpu=True, weights=(INFINITE_FORCING, WAN_DIFFUSERS))
    Options = InfinityRopeOptions
    checkpoint_artifact = INFINITE_FORCING
    checkpoint_file = "ema_model.pt"

    def make_memory(self, num_layers: int):
        from magbench.baselines.wan.rope_memory import BlockRelativeWindow

        return BlockRelativeWindow(
            num_layers, window_frames=self.opts.window_frames, sink_frames=self.opts.sink_frames,
            block_frames=BLOCK_FRAMES,
        )

