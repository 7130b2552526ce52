"""Parity of the memory-reconstruction pass with MAG's own block-compression test.

The golden (``tests/data/golden/mag_reconstruction.safetensors``) was recorded by
``tests/golden/record_mag_reconstruction.py`` from Xilluill/MAG @ 08008c6: its
``MemoryModelPipeline.inference_block_compress_multi_step`` with ``block_mask_type='history_compress'``
(as ``inference_compress.py`` calls it; ``configs/bc_inference.yaml``), ``CausalWanModel._forward_train``
and the mask of ``generate_all_history_block_compress_mask`` run by flex-attention, on the tiny
memory model (seeded weights, sharp q/k norms), float32, CPU. Two videos through one pipeline:
A (7 blocks, caption A), then B (2 blocks, caption B), which the reference conditions on caption A.

The same inputs (clean latents, the reference's noise draws, the prompt embedding) go through
``baselines/wan/reconstruction.py`` over magbench's model; every step's x0 must match to 1e-5
relative. Negative controls (each must move some x0 by at least 1e-3 relative): a plain causal
mask, the full K/V of the visible blocks instead of their last frame, the middle frame kept
instead of the last, a noisy block blind to its own compressed frame, the noisy copy's RoPE
continuing after the clean frames, unwarped timesteps, and video B with its own caption.
"""

from __future__ import annotations

import pytest
import torch

from golden.replay import TOLERANCE, golden, rel_error, tiny_model

from magbench.baselines.wan.attention import AttentionKernel, sdpa
from magbench.baselines.wan.reconstruction import (
    FrameMaskedAttention, HistoryCompressMask, reconstruct_latents, token_mask,
)
from magbench.baselines.wan.sampler import SELF_FORCING_SCHEDULE, FlowSchedule

REJECT = 1e-3


@pytest.fixture(scope="module")
def recording():
    t, meta = golden("mag_reconstruction")
    model = tiny_model(meta, seed=meta["memory_weights_seed"], sha_key="memory_weights_sha256")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: a shared pool only waits for cores (see test_wan_parity_mag)
    yield t, meta, model
    torch.set_num_threads(threads)


def _replay(recording, video: str = "a", prompt: str | None = None, **kwargs) -> float:
    """The worst relative error over every denoising step's x0 of ``video``."""
    t, _, model = recording
    prompt = prompt or "prompt_a"  # the reference conditions both videos on caption A
    rec: list[torch.Tensor] = []
    out = reconstruct_latents(
        model, t[f"{video}.clean"], model.context_kv(t[prompt]), noise=list(t[f"{video}.noise"]), record=rec, **kwargs,
    )
    ref = t[f"{video}.x0"]
    assert len(rec) == ref.shape[0] and torch.equal(out, rec[-1])
    return max(rel_error(x0, ref[i]) for i, x0 in enumerate(rec))


def test_golden_is_the_reference_compression_test(recording):
    t, meta, _ = recording
    assert meta["reference"] == "Xilluill/MAG" and meta["commit"] == "08008c604c872b8a86123e3c4d13e4dda5806e08"
    assert meta["function"] == "MemoryModelPipeline.inference_block_compress_multi_step"
    assert meta["block_mask_type"] == "history_compress"
    assert meta["config"]["denoising_step_list"] == [1000, 750, 500, 250] and meta["config"]["warp_denoising_step"]
    assert t["timesteps"].tolist() == SELF_FORCING_SCHEDULE.timesteps()
    # the reference kept the first video's caption embedding for the second video
    assert meta["prompt_used"] == {"a": "caption a", "b": "caption a"}


@pytest.mark.parametrize("video", ["a", "b"])
def test_mask_is_the_reference_history_compress_mask(recording, video):
    t, meta, _ = recording
    frames = 3 * meta["blocks"][video]
    assert torch.equal(HistoryCompressMask(frames).frames(), t[f"{video}.mask"].bool())


def test_reconstruction_matches_reference(recording):
    err = _replay(recording, "a")
    assert err <= TOLERANCE, err


def test_second_video_matches_reference_with_the_first_caption(recording):
    """``reference_caption_reuse``: the reference's second video, conditioned on caption A."""
    err = _replay(recording, "b", prompt="prompt_a")
    assert err <= TOLERANCE, err


def test_frame_masked_attention_equals_dense_masked_sdpa():
    """The gathered-keys kernel against a plain SDPA with the whole token mask (independent)."""
    g = torch.Generator().manual_seed(0)
    ft, frames = 5, 9
    q, k, v = (torch.randn(2, 2 * frames * ft, 3, 8, generator=g, dtype=torch.float64) for _ in range(3))
    for mask in (HistoryCompressMask(frames), HistoryCompressMask(frames, compressed=False), HistoryCompressMask(frames, causal=True)):
        fm = mask.frames()
        ours = FrameMaskedAttention(fm, ft, AttentionKernel("sdpa"))(q, k, v)
        dense = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=token_mask(fm, ft),
        ).transpose(1, 2)
        assert torch.allclose(ours, dense, atol=1e-12), mask
    # unmasked (every frame sees every frame) is plain attention
    full = torch.ones(2 * frames, 2 * frames, dtype=torch.bool)
    assert torch.allclose(FrameMaskedAttention(full, ft, AttentionKernel("sdpa"))(q, k, v), sdpa(q, k, v), atol=1e-12)


def test_pass_leaves_the_model_kernels_as_they_were(recording):
    _, _, model = recording
    before = [blk.self_attn.attention for blk in model.blocks]
    _replay(recording, "b")
    assert [blk.self_attn.attention for blk in model.blocks] == before


CONTROLS = {
    "causal-mask": dict(mask=HistoryCompressMask(21, causal=True)),
    "full-kv": dict(mask=HistoryCompressMask(21, compressed=False)),
    "keep-middle-frame": dict(mask=HistoryCompressMask(21, keep_index=1)),
    "blind-to-own-block": dict(mask=HistoryCompressMask(21, own_block=False)),
    "noisy-rope-after-clean": dict(noisy_start=21),
    "unwarped": dict(schedule=FlowSchedule(warp=False)),
}


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_negative_controls_are_rejected(recording, name):
    err = _replay(recording, "a", **CONTROLS[name])
    assert err >= REJECT, f"{name}: {err}"


def test_second_video_with_its_own_caption_is_not_the_reference(recording):
    err = _replay(recording, "b", prompt="prompt_b")
    assert err >= REJECT, err


def test_reconstruction_memory_is_one_frame_of_kv_per_block(recording):
    """The bytes the reconstruction test's memory holds equal those of MAG's compressed memory
    policy holding every block (no ring limit, no sink), filled by the same network."""
    from golden.tiny import LATENT_SHAPE

    from magbench.baselines.wan.memory import CompressedMemory
    from magbench.baselines.wan.reconstruction import compressed_memory_bytes
    from magbench.baselines.wan.sampler import BlockSampler

    t, meta, model = recording
    blocks = meta["blocks"]["a"]
    memory = CompressedMemory(model.cfg.num_layers, slots=blocks, sink_frames=0)
    sampler = BlockSampler(model, memory)
    sampler.reset(t["prompt_a"], seed=0, latent_shape=LATENT_SHAPE)
    sampler.feed(t["a.clean"])
    assert memory.memory_bytes() == compressed_memory_bytes(model, blocks, *LATENT_SHAPE[1:]) > 0
