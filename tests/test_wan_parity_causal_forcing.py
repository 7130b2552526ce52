"""Parity of magbench's ``causal-forcing`` and ``causal-forcing-framewise`` with the Causal Forcing
reference code.

The golden (``tests/data/golden/causal_forcing.safetensors``) was recorded by
``tests/golden/record_causal_forcing.py`` from thu-ml/Causal-Forcing @ 1fc7bbc (its own pipeline
with the ``initial_latent`` context path, scheduler, model and KV-cache code; tiny random model,
float32, CPU), chunk-wise (3-frame blocks: 4 context + 6 generated) and frame-wise (1-frame
blocks, ``framewise.*``: 12 context + 12 generated), each with the code's own 21-frame window:
the cache rolls 3 times in each. The same inputs go through magbench's model and the memory and
sampler each method builds with its defaults: every denoising output must match to 1e-5
relative, and so must the cache's contents at the end (K after RoPE and V of every held frame).

Negative controls: a window one block shorter, a 3-frame sink, and (frame-wise) the chunk-wise
method's 3-frame blocks.
"""

from __future__ import annotations

import pytest
import torch

from golden.replay import TOLERANCE, golden, rel_error, run_blocks, tiny_model, worst_error
from golden.tiny import FRAME_TOKENS, LATENT_SHAPE

from magbench.baselines.wan.memory import SlidingWindow
from magbench.baselines.wan.sampler import SELF_FORCING_SCHEDULE, BlockSampler
from magbench.registry import METHODS

import magbench.baselines.wan  # noqa: F401  (registers the methods)

RUNS = {"causal-forcing": ("", 3), "causal-forcing-framewise": ("framewise.", 1)}


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("causal_forcing")
    return t, meta, tiny_model(meta)


def _run(recording, prefix: str, memory, block: int):
    t, meta, model = recording
    r = {k[len(prefix):]: v for k, v in t.items() if k.startswith(prefix)} if prefix else dict(t)
    r["prompt_embeds"] = t["prompt_embeds"]
    sampler = BlockSampler(model, memory, schedule=SELF_FORCING_SCHEDULE, block_frames=block)
    sampler.reset(r["prompt_embeds"], seed=0, latent_shape=LATENT_SHAPE)
    sampler.feed(r["context"])
    n = r["noise"].shape[1] // block
    return worst_error(run_blocks(sampler, r, range(n), block_frames=block), r["x0"]), r


def test_golden_is_from_the_reference_and_rolls_both_windows(recording):
    t, meta, _ = recording
    assert meta["reference"] == "thu-ml/Causal-Forcing" and meta["commit"].startswith("1fc7bbc")
    assert meta["model_kwargs"] == {"timestep_shift": 5.0, "local_attn_size": 21, "sink_size": 0}
    for run in meta["runs"].values():
        assert run["context_frames"] + run["generated_frames"] - 21 >= 2 * run["num_frame_per_block"]
    assert t["timesteps"].tolist() == t["framewise.timesteps"].tolist() == SELF_FORCING_SCHEDULE.timesteps()


@pytest.mark.parametrize("name", RUNS)
def test_method_default_memory_and_sampler_match_reference_outputs_and_cache(recording, name):
    prefix, block = RUNS[name]
    method = METHODS.get(name)(config="tiny", random_weights=True)
    memory = method.make_memory(2)
    sampler = method.make_sampler(recording[2], memory)  # the method's own sampler: its block size
    assert method.block_frames == block == sampler.block_frames
    assert (memory.window_frames, memory.sink_frames) == ((18, 0) if block == 3 else (20, 0))
    err, r = _run(recording, prefix, memory, block)
    assert err <= TOLERANCE, err
    # The reference's final cache holds frames total-21 .. total-1 in order (after RoPE); this
    # memory the last window_frames of them, in its ring.
    total = r["context"].shape[1] + r["noise"].shape[1]
    first = total - 21
    assert memory.kept_frames() == list(range(total - memory.window_frames, total))
    ft = FRAME_TOKENS
    worst = 0.0
    for layer in range(2):
        k, v = memory.layer_kv(layer)
        for slot, frame in memory._where.items():
            i = frame - first
            for ours, ref in ((k, r["cache_k"][layer]), (v, r["cache_v"][layer])):
                worst = max(worst, rel_error(ours[:, slot * ft : (slot + 1) * ft], ref[:, i * ft : (i + 1) * ft]))
    assert worst <= TOLERANCE, worst


def test_chunk_wise_is_a_weights_swap_of_self_forcing():
    cf, sf = METHODS.get("causal-forcing")(), METHODS.get("self-forcing")()
    assert cf.config()["memory"] == sf.config()["memory"] and type(cf.make_sampler) is type(sf.make_sampler)
    assert (cf.opts.ema, sf.opts.ema) == (False, True)
    assert [w.name for w in cf.needs.weights] == ["wan2.1-t2v-1.3b-diffusers", "causal-forcing"]
    assert [w.name for w in METHODS.get("causal-forcing-framewise").needs.weights][1:] == ["causal-forcing-framewise"]


@pytest.mark.parametrize(
    "prefix, block, memory",
    [
        ("", 3, SlidingWindow(2, 15, 0, 3)),  # window one block shorter
        ("", 3, SlidingWindow(2, 15, 3, 3)),  # a 3-frame sink in the same 21 frames
        ("framewise.", 1, SlidingWindow(2, 17, 0, 1)),  # window one (chunk-wise) block shorter
        ("framewise.", 1, SlidingWindow(2, 17, 3, 1)),  # a 3-frame sink
    ],
    ids=["window-15", "sink-3", "framewise-window-17", "framewise-sink-3"],
)
def test_negative_controls_are_rejected(recording, prefix, block, memory):
    err, _ = _run(recording, prefix, memory, block)
    assert err > 100 * TOLERANCE, err


def test_framewise_golden_rejects_three_frame_blocks(recording):
    t = recording[0]
    r = {k[len("framewise."):]: v for k, v in t.items() if k.startswith("framewise.")}
    sampler = BlockSampler(recording[2], SlidingWindow(2, 18, 0, 3), schedule=SELF_FORCING_SCHEDULE, block_frames=3)
    sampler.reset(t["prompt_embeds"], seed=0, latent_shape=LATENT_SHAPE)
    sampler.feed(r["context"])
    x0 = sampler.denoise(r["noise"][:, :3], step_noise=[torch.cat([r["step_noise"][j, i] for j in range(3)], dim=1) for i in range(3)])
    assert rel_error(x0[:, :1], r["x0"][0, -1]) > 100 * TOLERANCE
