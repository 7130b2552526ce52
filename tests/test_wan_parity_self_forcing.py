"""Parity of magbench's ``self-forcing`` with the Self-Forcing reference code.

The golden (``tests/data/golden/self_forcing.safetensors``) was recorded by
``tests/golden/record_self_forcing.py`` from guandeh17/Self-Forcing @ 33593df (its own pipeline,
scheduler, model and KV-cache code; tiny random model, float32, CPU): 4 context blocks through
its ``initial_latent`` path, then 6 generated blocks with a 21-frame cache (``local_attn_size=21``,
no sink) that rolls 3 times. Here the same inputs go through magbench's model, the memory policy
the ``self-forcing`` method builds with its default options, and its sampler; every denoising
output must match to 1e-5 relative. Negative controls: a window one frame shorter, a 3-frame sink,
and unwarped timesteps must each be rejected.
"""

from __future__ import annotations

import pytest
import torch

from golden.replay import TOLERANCE, golden, method_memory, run_blocks, tiny_model, worst_error
from golden.tiny import LATENT_SHAPE

from magbench.baselines.wan.memory import SlidingWindow
from magbench.baselines.wan.sampler import SELF_FORCING_SCHEDULE, BlockSampler, FlowSchedule


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("self_forcing")
    return t, meta, tiny_model(meta)


def _replay(recording, memory, schedule=SELF_FORCING_SCHEDULE):
    t, meta, model = recording
    sampler = BlockSampler(model, memory, schedule=schedule)
    sampler.reset(t["prompt_embeds"], seed=0, latent_shape=LATENT_SHAPE)
    sampler.feed(t["context"])
    return worst_error(run_blocks(sampler, t, range(meta["generated_blocks"])), t["x0"]), sampler


def test_golden_is_from_the_reference_and_rolls_the_window(recording):
    t, meta, _ = recording
    assert meta["reference"] == "guandeh17/Self-Forcing" and meta["commit"].startswith("33593df")
    assert meta["model_kwargs"]["local_attn_size"] == 21 and meta["model_kwargs"]["sink_size"] == 0
    frames = 3 * (meta["context_blocks"] + meta["generated_blocks"])
    assert frames - 21 >= 2 * 3  # the cache evicts at least twice
    assert t["timesteps"].tolist() == SELF_FORCING_SCHEDULE.timesteps()


def test_self_forcing_default_memory_matches_reference(recording):
    memory = method_memory("self-forcing", 2)
    err, sampler = _replay(recording, memory)
    assert err <= TOLERANCE, err
    assert memory.kept_frames() == list(range(30 - 18, 30))  # 18 past frames + the current block = 21


@pytest.mark.parametrize(
    "memory, schedule",
    [
        (SlidingWindow(2, 17, 0), SELF_FORCING_SCHEDULE),  # window one frame shorter
        (SlidingWindow(2, 15, 3), SELF_FORCING_SCHEDULE),  # a 3-frame sink in the same 21 frames
        (SlidingWindow(2, 18, 0), FlowSchedule(warp=False)),  # unwarped timesteps
    ],
    ids=["window-17", "sink-3", "unwarped"],
)
def test_negative_controls_are_rejected(recording, memory, schedule):
    err, _ = _replay(recording, memory, schedule)
    assert err > 100 * TOLERANCE, err
