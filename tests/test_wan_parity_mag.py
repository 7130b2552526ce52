"""Parity of magbench's ``mag`` with the MAG reference code (Xilluill/MAG).

The golden (``tests/data/golden/mag.safetensors``) was recorded by ``tests/golden/record_mag.py``
from Xilluill/MAG @ 08008c6 (its own ``memory_generation_pipeline``, scheduler, generator and
memory model, and the ``block_compress`` KV cache of ``wan/modules/causal_model.py``; two tiny
random models, float32, CPU) with ``configs/magbench_inference.yaml``'s cache: a ring of
``local_attn_size: 21`` slots holding one frame (the last) per block, a ``sink_size: 2`` sink of
the first block, 4 warped steps. ``inference_w_initial_video``: 20 context blocks through the
memory model's cache-update pass (t = 0, empty prompt), then 6 generated blocks; the ring is full
after block 20 and blocks 21..25 overwrite slots 0..4, so the last generated blocks read a ring
with up to 4 slots overwritten. Also recorded: its ``gt_latent`` branch (``--use_gt``, 3 blocks)
and ``inference_w_initial_video_only_generator`` with the same cache (the ablation without a
memory model, 3 blocks).

The same inputs go through the parts ``build.build_transformer`` builds for the ``mag`` method
(magbench's model with the generator's and the memory model's seeded weights, the
``CompressedMemory`` and ``BlockSampler`` the method makes from its default options); every
denoising output must match to 1e-5 relative. Negative controls (each must move the outputs by
at least 1e-3 relative): a sink of 0 or 3 frames, 20 slots, the generator (with the prompt) in
place of the memory model for the cache-update passes, the memory model with the generation
prompt instead of the empty one, unwarped timesteps, another frame of each block kept.
"""

from __future__ import annotations

import pytest
import torch

from golden.replay import TOLERANCE, golden, run_blocks, tiny_model, worst_error
from golden.tiny import LATENT_SHAPE

from magbench.baselines.wan.build import build_transformer
from magbench.baselines.wan.memory import CompressedMemory
from magbench.baselines.wan.sampler import SELF_FORCING_SCHEDULE, BlockSampler, FlowSchedule

REJECT = 1e-3  # a negative control must move some denoising output by at least this (relative)


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("mag")
    generator = tiny_model(meta)
    memory_model = tiny_model(meta, seed=meta["memory_weights_seed"], sha_key="memory_weights_sha256")
    # One thread: the tiny model's ops are far too small to share, and on a busy machine the
    # intra-op pool's threads waiting for a core made a 0.08 s replay take 4 s (measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield t, meta, generator, memory_model
    torch.set_num_threads(threads)


def _mag(recording, memory_model: bool = True, **options):
    """The method's own parts (build.build_transformer), around the golden's tiny models."""
    _, _, generator, mem = recording
    return build_transformer(
        "mag", "cpu", torch.float32, models=(generator, mem if memory_model else None),
        config="tiny", random_weights=True, memory_model=memory_model, **options,
    )


def _replay(recording, sampler, variant: str = "", empty_embeds=None):
    """Context, then the variant's generated blocks; the worst relative error of any step's x0."""
    t, meta, _, _ = recording
    prefix = f"{variant}." if variant else ""
    blocks = meta[f"{variant}_blocks" if variant else "generated_blocks"]
    empty = t["empty_embeds"] if empty_embeds is None else empty_embeds
    sampler.reset(t["prompt_embeds"], empty_embeds=empty, seed=0, latent_shape=LATENT_SHAPE)
    sampler.feed(t["context"])
    memory_input = None
    if variant == "gt":
        memory_input = lambda b, x0: t["gt.latents"][:, 3 * b : 3 * b + 3]  # noqa: E731
    return worst_error(run_blocks(sampler, t, range(blocks), memory_input=memory_input), t[f"{prefix}x0"])


def test_golden_is_from_the_reference_and_rolls_the_ring(recording):
    t, meta, _, _ = recording
    assert meta["reference"] == "Xilluill/MAG" and meta["commit"] == "08008c604c872b8a86123e3c4d13e4dda5806e08"
    cfg = meta["config"]
    assert (cfg["cache_mode"], cfg["local_attn_size"], cfg["sink_size"], cfg["num_frame_per_block"]) == ("block_compress", 21, 2, 3)
    blocks = meta["context_blocks"] + meta["generated_blocks"]
    assert blocks - 21 >= 2 + 1  # at least two slots overwritten before a generated block reads the ring
    assert meta["weights_sha256"] != meta["memory_weights_sha256"]  # two networks, not one
    assert t["timesteps"].tolist() == SELF_FORCING_SCHEDULE.timesteps()
    # every cache-update pass (context and generated) was the memory model's, at t = 0, block by block
    calls = t["calls"]
    updates = calls[calls[:, 2] == 1]
    assert updates[:, 1].eq(1).all() and updates[:, 3].eq(0).all()
    assert updates[:, 0].tolist() == [3.0 * b for b in range(blocks)]
    assert torch.equal(t["output"], torch.cat(list(t["x0"][:, -1]), dim=1))


def test_mag_default_parts_match_reference(recording):
    parts = _mag(recording)
    memory = parts.memory
    assert isinstance(memory, CompressedMemory) and (memory.slots, memory.sink_frames, memory.keep_index) == (21, 2, 2)
    assert parts.sampler.memory_model is parts.memory_model is not None
    err = _replay(recording, parts.sampler)
    assert err <= TOLERANCE, err
    # 26 blocks committed: the sink (frames 0, 1) and the last frame of blocks 5..25
    assert memory.sink_frame_ids() == [0, 1]
    assert memory.slot_frame_ids() == [3 * b + 2 for b in range(26 - 21, 26)]


def test_ground_truth_memory_source_matches_reference_gt_latent(recording):
    """The reference's ``gt_latent`` branch: the memory model's cache-update pass runs on the
    ground truth's latents of the block's span; magbench's ``next_block(commit=False)`` +
    ``commit(ground truth)`` (what ``--memory-source ground-truth`` does)."""
    err = _replay(recording, _mag(recording).sampler, "gt")
    assert err <= TOLERANCE, err


def test_generator_only_ablation_matches_reference_only_generator(recording):
    parts = _mag(recording, memory_model=False)
    assert parts.memory_model is None and parts.sampler.memory_model is None
    err = _replay(recording, parts.sampler, "only_generator")
    assert err <= TOLERANCE, err


def _control(recording, name: str):
    t, _, generator, memory_model = recording
    if name == "sink-0":
        return _mag(recording, sink_frames=0).sampler, None
    if name == "sink-3":
        return _mag(recording, sink_frames=3).sampler, None
    if name == "slots-20":
        return _mag(recording, slots=20).sampler, None
    if name == "generator-writes-memory":
        return _mag(recording, memory_model=False).sampler, None
    if name == "memory-model-with-prompt":
        return _mag(recording).sampler, t["prompt_embeds"]
    memory = CompressedMemory(2, slots=21, sink_frames=2, keep_index=1 if name == "keep-frame-1" else None)
    schedule = FlowSchedule(warp=False) if name == "unwarped" else SELF_FORCING_SCHEDULE
    return BlockSampler(generator, memory, memory_model=memory_model, schedule=schedule), None


CONTROLS = ["sink-0", "sink-3", "slots-20", "generator-writes-memory", "memory-model-with-prompt", "unwarped", "keep-frame-1"]


@pytest.mark.parametrize("name", CONTROLS)
def test_negative_controls_are_rejected(recording, name):
    sampler, empty = _control(recording, name)
    err = _replay(recording, sampler, empty_embeds=empty)
    assert err >= REJECT, f"{name}: {err}"
