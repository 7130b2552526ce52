"""Parity of magbench's ``reward-forcing`` with the Reward Forcing reference code.

The golden (``tests/data/golden/reward_forcing.safetensors``) was recorded by
``tests/golden/record_reward_forcing.py`` from JaydenLyh/Reward-Forcing @ 4317f5a (its own
pipeline with the ``initial_latent`` context path, scheduler, model and KV-cache code; tiny random
model, float32, CPU) with ``configs/reward_forcing.yaml``'s cache (``local_attn_size: 9``,
``sink_size: 3``): 2 context blocks, 5 generated blocks; the cache evicts 4 times, each time
folding the evicted block into the sink by the EMA. The same inputs go through magbench's model,
the memory the ``reward-forcing`` method builds with its defaults and its sampler: every
denoising output must match to 1e-5 relative, and so must the sink the reference holds when each
block runs (K before RoPE and V) and the whole cache at the end.

Negative controls: a plain sink instead of the EMA sink (at the default alpha and at alpha 0.5,
the ``strong.*`` recording), a window one block shorter, RoPE positions growing with the video
(RoPE at write) instead of the cache's slots.
"""

from __future__ import annotations

import pytest
import torch

from golden.replay import TOLERANCE, golden, method_memory, rel_error, run_blocks, tiny_model, worst_error
from golden.tiny import FRAME_TOKENS, LATENT_SHAPE

from magbench.baselines.wan.evicted_memory import EMASinkWindow
from magbench.baselines.wan.memory import EMASink, SlidingWindow
from magbench.baselines.wan.sampler import SELF_FORCING_SCHEDULE, BlockSampler

SINK = 3


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("reward_forcing")
    return t, meta, tiny_model(meta)


def _replay(recording, memory, prefix: str = ""):
    """Worst output error, worst sink error over the blocks, the memory after the run."""
    t, meta, model = recording
    sampler = BlockSampler(model, memory, schedule=SELF_FORCING_SCHEDULE)
    sampler.reset(t["prompt_embeds"], seed=0, latent_shape=LATENT_SHAPE)
    ref_sinks = (t[prefix + "sink_k"], t[prefix + "sink_v"])  # [blocks, layers, B, tokens, H, D]
    sink_err = [0.0]
    n_ctx = meta["context_blocks"]

    def check_sink(block: int) -> None:
        # The sink block `block` attends: after the reference's first pass of that block.
        if not isinstance(memory, EMASinkWindow) or block == 0:
            return
        for layer in range(2):
            k, v = memory.layer_kv(layer)
            s = SINK * FRAME_TOKENS
            sink_err[0] = max(sink_err[0], rel_error(k[:, :s], ref_sinks[0][block, layer]), rel_error(v[:, :s], ref_sinks[1][block, layer]))

    for b in range(n_ctx):
        check_sink(b)
        sampler.commit(t["context"][:, 3 * b : 3 * b + 3])
    out = run_blocks(sampler, {**t, "x0": t[prefix + "x0"]}, range(meta["generated_blocks"]), on_block=lambda b: check_sink(n_ctx + b))
    return worst_error(out, t[prefix + "x0"]), sink_err[0], memory


def test_golden_is_from_the_reference_and_evicts_into_the_sink(recording):
    t, meta, _ = recording
    assert meta["reference"] == "JaydenLyh/Reward-Forcing" and meta["commit"].startswith("4317f5a")
    assert meta["model_kwargs"] == {"timestep_shift": 5.0, "local_attn_size": 9, "sink_size": 3}
    assert meta["compression_alpha"] == 0.999
    blocks = meta["context_blocks"] + meta["generated_blocks"]
    assert 3 * blocks - 9 >= 2 * 3  # at least two evictions
    assert t["timesteps"].tolist() == SELF_FORCING_SCHEDULE.timesteps()
    # The recorded sinks change exactly when a block is evicted (from block 3 on).
    moved = [not torch.equal(t["sink_k"][b], t["sink_k"][b - 1]) for b in range(2, blocks)]
    assert moved == [False] + [True] * (blocks - 3)


def test_reward_forcing_default_memory_matches_reference_outputs_and_cache(recording):
    memory = method_memory("reward-forcing", 2)
    assert (memory.sink_frames, memory.window_frames, memory.sink_update.alpha) == (3, 3, 0.999)
    err, sink_err, memory = _replay(recording, memory)
    assert err <= TOLERANCE, err
    assert sink_err <= TOLERANCE, sink_err
    # End of the run: the reference's cache is [sink | block 5 | block 6]; it evicts block 5 only
    # when a next block comes, where this memory evicted it on committing block 6: the sink then
    # is the reference's next one, EMA(sink, block 5) by the reference's own formula.
    t = recording[0]
    ft = FRAME_TOKENS
    assert memory.kept_frames() == [0, 1, 2] + [18, 19, 20]
    for layer in range(2):
        k, v = memory.layer_kv(layer)
        for ours, ref in ((k, t["cache_k"][layer]), (v, t["cache_v"][layer])):
            assert rel_error(ours[:, 3 * ft : 6 * ft], ref[:, 6 * ft : 9 * ft]) <= TOLERANCE  # block 6
            a = 0.999
            assert rel_error(ours[:, : 3 * ft], a * ref[:, : 3 * ft] + (1 - a) * ref[:, 3 * ft : 6 * ft]) <= TOLERANCE


def test_strong_alpha_recording_matches_too(recording):
    memory = EMASinkWindow(2, 3, 3, sink_update=EMASink(recording[1]["strong_alpha"]))
    err, sink_err, _ = _replay(recording, memory, prefix="strong.")
    assert err <= TOLERANCE and sink_err <= TOLERANCE, (err, sink_err)


@pytest.mark.parametrize("prefix", ["", "strong."])
def test_plain_sink_instead_of_the_ema_sink_is_rejected(recording, prefix):
    err, sink_err, _ = _replay(recording, EMASinkWindow(2, 3, 3, sink_update=EMASink(1.0)), prefix=prefix)
    assert err > 100 * TOLERANCE, err  # measured: 2.6e-3 at alpha 0.999, 0.2 at alpha 0.5
    assert sink_err > 100 * TOLERANCE, sink_err


@pytest.mark.parametrize(
    "memory",
    [
        EMASinkWindow(2, 0, 3),  # window one block shorter
        SlidingWindow(2, 3, 3),  # RoPE at write: positions grow with the video, plain sink
    ],
    ids=["window-one-block-shorter", "rope-at-write"],
)
def test_negative_controls_are_rejected(recording, memory):
    err, _, _ = _replay(recording, memory)
    assert err > 100 * TOLERANCE, err
