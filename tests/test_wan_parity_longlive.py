"""Parity of magbench's ``longlive`` with the LongLive v1.0 reference code.

The golden (``tests/data/golden/longlive.safetensors``) was recorded by
``tests/golden/record_longlive.py`` from NVlabs/LongLive @ e52d9ef (branch v1.0, the 1.3B model;
its own pipeline, scheduler, model and KV-cache code; tiny random model, float32, CPU) with
``configs/longlive_inference.yaml``'s cache (``local_attn_size: 12``, ``sink_size: 3``): 2 context
blocks through one t=0 pass each (baselines.md 5.2), then 5 generated blocks; the cache rolls 3
times. The same inputs go through magbench's model, the memory policy the ``longlive`` method
builds with its default options, and its sampler; every denoising output must match to 1e-5
relative. Negative controls: a window one frame shorter, no sink, unwarped timesteps.
"""

from __future__ import annotations

import pytest

from golden.replay import TOLERANCE, golden, method_memory, run_blocks, tiny_model, worst_error
from golden.tiny import LATENT_SHAPE

from magbench.baselines.wan.memory import SlidingWindow
from magbench.baselines.wan.sampler import SELF_FORCING_SCHEDULE, BlockSampler, FlowSchedule


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("longlive")
    return t, meta, tiny_model(meta)


def _replay(recording, memory, schedule=SELF_FORCING_SCHEDULE):
    t, meta, model = recording
    sampler = BlockSampler(model, memory, schedule=schedule)
    sampler.reset(t["prompt_embeds"], seed=0, latent_shape=LATENT_SHAPE)
    sampler.feed(t["context"])
    return worst_error(run_blocks(sampler, t, range(meta["generated_blocks"])), t["x0"])


def test_golden_is_from_the_reference_v1_and_rolls_the_window(recording):
    t, meta, _ = recording
    assert meta["reference"] == "NVlabs/LongLive" and meta["commit"].startswith("e52d9ef")
    assert meta["model_kwargs"] == {"local_attn_size": 12, "timestep_shift": 5.0, "sink_size": 3}
    assert 3 * (meta["context_blocks"] + meta["generated_blocks"]) - 12 >= 2 * 3
    assert t["timesteps"].tolist() == SELF_FORCING_SCHEDULE.timesteps()


def test_longlive_default_memory_matches_reference(recording):
    memory = method_memory("longlive", 2)
    assert (memory.sink_frames, memory.window_frames) == (3, 6)
    assert _replay(recording, memory) <= TOLERANCE
    assert memory.kept_frames() == [0, 1, 2] + list(range(21 - 6, 21))  # sink (first block) + 6 recent


def test_reference_parameters_map_onto_the_policy():
    memory = SlidingWindow.from_reference(2, local_attn_size=12, sink_size=3)
    assert (memory.sink_frames, memory.window_frames) == (3, 6)


@pytest.mark.parametrize(
    "memory, schedule",
    [
        (SlidingWindow(2, 5, 3), SELF_FORCING_SCHEDULE),  # window one frame shorter
        (SlidingWindow(2, 9, 0), SELF_FORCING_SCHEDULE),  # no sink (same 12 frames)
        (SlidingWindow(2, 6, 3), FlowSchedule(warp=False)),  # unwarped timesteps
    ],
    ids=["window-5", "no-sink", "unwarped"],
)
def test_negative_controls_are_rejected(recording, memory, schedule):
    assert _replay(recording, memory, schedule) > 100 * TOLERANCE
