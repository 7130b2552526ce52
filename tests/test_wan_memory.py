"""Causal Wan with KV memories (tiny config, CPU, float32): caches against an uncached pass."""

from __future__ import annotations

import copy

import pytest
import torch

from magbench.baselines.wan.memory import CacheFullError, CompressedMemory, FullHistory, KVMemory, SlidingWindow
from magbench.baselines.wan.model import CausalWan, WanConfig
from magbench.baselines.wan.sampler import BlockSampler, FlowSchedule

CFG = WanConfig.tiny()
C, H, W = CFG.in_dim, 4, 6  # latent frame 4x6 -> 2x3 patches -> 6 tokens
FT = (H // 2) * (W // 2)


def _model(seed: int = 0) -> CausalWan:
    return CausalWan(CFG).init_random(seed).eval()


def _text(seed: int = 1, n: int = 5) -> torch.Tensor:
    return torch.randn(1, n, CFG.text_dim, generator=torch.Generator().manual_seed(seed))


def _latents(frames: int, seed: int = 2) -> torch.Tensor:
    return torch.randn(1, frames, C, H, W, generator=torch.Generator().manual_seed(seed))


class OnePass(KVMemory):
    """Uncached reference: the whole sequence at once (masked by :func:`_masked_self_attention`)."""

    name = "one-pass"

    def reset(self) -> None:
        pass

    def begin(self, start_frame, n_frames, frame_tokens, commit):
        pass

    def attend(self, layer, k, v):
        return k, v

    def after_attention(self, layer):
        pass

    def end(self):
        pass

    def _plan(self, s, n):  # pragma: no cover - unused
        raise NotImplementedError

    def _keep(self, *a):  # pragma: no cover
        raise NotImplementedError

    def _advance(self, *a):  # pragma: no cover
        raise NotImplementedError

    def kept_frames(self):
        return []


def _block_causal(frames: int, block: int = 3) -> torch.Tensor:
    blk = torch.arange(frames).repeat_interleave(FT) // block
    return blk[:, None] >= blk[None, :]


def _masked_self_attention(model: CausalWan, mask: torch.Tensor) -> CausalWan:
    """A copy of ``model`` whose self-attention is the reference's own: SDPA under ``mask``."""

    def attend(q, k, v):
        out = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        return out.transpose(1, 2)

    ref = copy.deepcopy(model)
    for blk in ref.blocks:
        blk.self_attn.attention = attend
    return ref


def test_full_history_cache_equals_block_causal_uncached_pass():
    model, text = _model(), _text()
    ctx = model.context_kv(text)
    clean = _latents(9)
    noisy = _latents(3, seed=7)
    t_noisy = 833.3
    # Cached: three clean commit passes, then a denoising (read-only) pass at t_noisy.
    mem = FullHistory(CFG.num_layers)
    outs = []
    with torch.no_grad():
        for b in range(3):
            outs.append(model(clean[:, 3 * b : 3 * b + 3], torch.zeros(1, 3), ctx, mem, 3 * b, commit=True))
        outs.append(model(noisy, torch.full((1, 3), t_noisy), ctx, mem, 9, commit=False))
        cached = torch.cat(outs, dim=1)
        # Uncached: all 12 frames at once, per-frame timesteps, block-causal mask.
        x = torch.cat([clean, noisy], dim=1)
        t = torch.cat([torch.zeros(1, 9), torch.full((1, 3), t_noisy)], dim=1)
        ref = _masked_self_attention(model, _block_causal(12))(x, t, ctx, OnePass(CFG.num_layers), 0, commit=False)
    assert mem.kept_frames() == list(range(9))  # the read-only pass committed nothing
    torch.testing.assert_close(cached, ref, rtol=1e-5, atol=1e-5)


def _run(mem: KVMemory, blocks: int = 5, model: CausalWan | None = None, memory_model: CausalWan | None = None):
    model = model or _model()
    s = BlockSampler(model, mem, memory_model=memory_model)
    s.reset(_text(), empty_embeds=_text(9, 1), seed=3, latent_shape=(C, H, W))
    s.feed(_latents(6))
    return torch.cat([s.next_block() for _ in range(blocks)], dim=1), s


def test_sliding_window_as_long_as_the_video_equals_full_history():
    full, _ = _run(FullHistory(CFG.num_layers))
    win, s = _run(SlidingWindow(CFG.num_layers, window_frames=30, sink_frames=0))
    torch.testing.assert_close(win, full, rtol=1e-5, atol=1e-5)
    assert s.memory.kept_frames() == list(range(21))


def test_short_sliding_window_differs_and_keeps_sink_plus_recent_frames():
    full, _ = _run(FullHistory(CFG.num_layers))
    win, s = _run(SlidingWindow(CFG.num_layers, window_frames=6, sink_frames=2))
    assert s.memory.kept_frames() == [0, 1] + list(range(15, 21))
    assert not torch.allclose(win[:, -3:], full[:, -3:], atol=1e-3)


def _tagged_pass(mem: KVMemory, start: int, commit: bool) -> set[int]:
    """One pass whose K/V hold their own absolute frame index; returns the frames attended."""
    frames = torch.arange(start, start + 3, dtype=torch.float32).repeat_interleave(FT)
    k = frames.view(1, -1, 1, 1).expand(1, 3 * FT, CFG.num_heads, CFG.head_dim).contiguous()
    mem.begin(start, 3, FT, commit)
    seen: set[int] = set()
    for layer in range(CFG.num_layers):
        keys, values = mem.attend(layer, k, k)
        if layer == 0:
            seen = set(keys[0, :, 0, 0].long().tolist())
            assert set(values[0, :, 0, 0].long().tolist()) == seen
        mem.after_attention(layer)
    mem.end()
    return seen


def test_sliding_window_attends_sink_plus_recent_frames_plus_current_block():
    mem = SlidingWindow(CFG.num_layers, window_frames=6, sink_frames=2)
    for b in range(6):
        seen = _tagged_pass(mem, 3 * b, commit=False)  # a denoising pass changes nothing
        assert _tagged_pass(mem, 3 * b, commit=True) == seen
        past = list(range(3 * b))
        expect = set(past[:2]) | set(past[2:][-6:]) | {3 * b, 3 * b + 1, 3 * b + 2}
        assert seen == expect, b
    assert mem.kept_frames() == [0, 1] + list(range(12, 18))


def test_cache_reads_are_views_of_the_preallocated_buffer():
    mem = CompressedMemory(CFG.num_layers, slots=3, sink_frames=2)
    for b in range(5):
        _tagged_pass(mem, 3 * b, commit=True)
    k = torch.zeros(1, 3 * FT, CFG.num_heads, CFG.head_dim)
    mem.begin(15, 3, FT, commit=False)
    keys, values = mem.attend(0, k, k)
    buf_k, buf_v = mem.layer_kv(0)
    assert keys.untyped_storage().data_ptr() == buf_k.untyped_storage().data_ptr()
    assert values.untyped_storage().data_ptr() == buf_v.untyped_storage().data_ptr()


def test_compressed_memory_keeps_last_frame_of_each_block_and_first_block_sink():
    model, mem_model = _model(0), _model(5)
    mem = CompressedMemory(CFG.num_layers, slots=4, sink_frames=2)
    _, s = _run(mem, blocks=5, model=model, memory_model=mem_model)  # 2 context + 5 generated blocks
    # 7 blocks committed into 4 slots: the last frames of blocks 3..6 remain, plus frames 0, 1.
    assert mem.sink_frame_ids() == [0, 1]
    assert mem.slot_frame_ids() == [11, 14, 17, 20]
    assert mem.kept_frames() == [0, 1, 11, 14, 17, 20]
    # Their K/V are exactly what the memory model produced for those frames (check against a
    # full-history run of the same two networks: same commits, nothing evicted).
    ref = FullHistory(CFG.num_layers)
    ref_s = BlockSampler(model, ref, memory_model=mem_model)
    ref_s.reset(_text(), empty_embeds=_text(9, 1), seed=3, latent_shape=(C, H, W))
    ref_s.feed(_latents(6))
    # Replay with the compressed run's own committed latents is not needed for the first block:
    # block 0 is context, identical in both runs, so the sink and its slot must match exactly.
    for layer in range(CFG.num_layers):
        kc, _ = mem.layer_kv(layer)
        kr, _ = ref.layer_kv(layer)
        torch.testing.assert_close(kc[:, : 2 * FT], kr[:, : 2 * FT])


def test_compressed_memory_attends_sink_slots_and_current_block_only():
    mem = CompressedMemory(CFG.num_layers, slots=3, sink_frames=2)
    seen = []
    for b in range(6):
        _tagged_pass(mem, 3 * b, commit=False)
        seen.append(_tagged_pass(mem, 3 * b, commit=True))
    cur = lambda b: {3 * b, 3 * b + 1, 3 * b + 2}  # noqa: E731
    assert seen[0] == cur(0)  # block 0: no sink yet (sink_len = min(current_start, ...) = 0)
    assert seen[1] == {0, 1, 2} | cur(1)
    assert seen[2] == {0, 1, 2, 5} | cur(2)
    assert seen[3] == {0, 1, 2, 5, 8} | cur(3)
    assert seen[4] == {0, 1, 5, 8, 11} | cur(4)  # ring of 3: block 3's frame replaced block 0's
    assert seen[5] == {0, 1, 8, 11, 14} | cur(5)
    with pytest.raises(ValueError):
        mem.begin(3 * 7, 3, FT, commit=False)  # blocks must come in order


def test_memory_bytes_are_exact():
    model = _model()
    for mem, frames in [
        (FullHistory(CFG.num_layers), 21),
        (SlidingWindow(CFG.num_layers, window_frames=6, sink_frames=3), 9),
        (CompressedMemory(CFG.num_layers, slots=4, sink_frames=2), 6),
    ]:
        _run(mem, model=model, memory_model=model if isinstance(mem, CompressedMemory) else None)
        per_frame = 2 * CFG.num_layers * FT * CFG.num_heads * CFG.head_dim * 4  # float32
        assert mem.memory_bytes() == frames * per_frame, mem.name
        assert len(mem.kept_frames()) == frames
        assert mem.allocated_bytes() >= mem.memory_bytes()


def test_full_history_cap_raises_a_recordable_error():
    mem = FullHistory(CFG.num_layers, max_frames=6)
    with pytest.raises(CacheFullError, match="max_frames=6"):
        _run(mem, blocks=1)


def test_warped_schedule_matches_reference_values():
    ts = FlowSchedule().timesteps()
    assert ts[0] == pytest.approx(1000.0)
    assert ts[1:] == pytest.approx([937.5, 833.3333, 625.0], abs=1e-3)
    assert FlowSchedule().sigma(625.0) == pytest.approx(0.625, abs=1e-6)


def test_param_count_matches_module():
    assert CFG.param_count() == sum(p.numel() for p in _model().parameters())
    assert WanConfig().param_count() == pytest.approx(1.42e9, rel=0.02)


def test_fused_qkv_equals_separate_projections():
    model, text = _model(), _text()
    ctx = model.context_kv(text)
    x = _latents(3)
    with torch.no_grad():
        a = model(x, torch.full((1, 3), 500.0), ctx, FullHistory(CFG.num_layers), 0, commit=False)
        model.fuse_qkv()
        b = model(x, torch.full((1, 3), 500.0), ctx, FullHistory(CFG.num_layers), 0, commit=False)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# -- the baselines' policies ------------------------------------------------------------------------
def test_causvid_schedule_is_three_raw_steps_with_nearest_grid_sigma():
    from magbench.baselines.wan.sampler import CAUSVID_SCHEDULE

    assert CAUSVID_SCHEDULE.timesteps() == [1000.0, 757.0, 522.0]
    # shift-8 grid points nearest to 757 (index 720) and 522 (index 880), as baselines.md 3.4
    assert CAUSVID_SCHEDULE.sigma(757) == pytest.approx(0.7567567229270935, abs=1e-7)
    assert CAUSVID_SCHEDULE.sigma(522) == pytest.approx(0.52173912525177, abs=1e-7)
    assert CAUSVID_SCHEDULE.sigma(1000) == 1.0


def test_reference_cache_sizes_map_onto_sliding_windows():
    ll = SlidingWindow.from_reference(CFG.num_layers, local_attn_size=12, sink_size=3)
    sf = SlidingWindow.from_reference(CFG.num_layers, local_attn_size=21, sink_size=0)
    assert (ll.sink_frames, ll.window_frames, sf.sink_frames, sf.window_frames) == (3, 6, 0, 18)


def _rollout_sampler(model, **kw):
    from magbench.baselines.wan.memory import RolloutMemory
    from magbench.baselines.wan.sampler import RolloutSampler

    mem = RolloutMemory(CFG.num_layers, **kw)
    s = RolloutSampler(model, mem)
    s.reset(_text(), seed=0, latent_shape=(C, H, W))
    return s, mem


def test_rollouts_start_from_the_last_context_latents_and_restart_at_position_zero():
    model = _model()
    s, mem = _rollout_sampler(model)
    s.feed(_latents(12))  # context: remembered, no cache pass yet
    assert mem.kept_frames() == [] and s.frame == 12
    s.next_block()  # rollout 1: the last 3 context latents at 0-2, then the block at 3-5
    assert mem.rollouts == 1 and mem.position == 6 and s.frame == 15
    for _ in range(5):
        s.next_block()
    assert mem.position == 21 and not mem.fits(3)
    s.next_block()  # rollout 2: 3 carried latents at 0-2, the block at 3-5
    assert mem.rollouts == 2 and mem.position == 6 and s.frame == 33


def test_a_rollout_equals_a_fresh_cache_fed_the_carried_latents():
    """After a restart the cache holds exactly what a fresh full-history cache holds when the
    carried latents are committed at positions 0.. (no trace of the previous rollout)."""
    model = _model()
    s, mem = _rollout_sampler(model, rollout_frames=9)
    s.feed(_latents(6))
    blocks = [s.next_block() for _ in range(3)]  # rollout 1: ctx[3:6] + 2 blocks; then rollout 2
    fresh = FullHistory(CFG.num_layers)
    b = BlockSampler(model, fresh)
    b.reset(_text(), seed=0, latent_shape=(C, H, W))
    b.feed(blocks[1])
    b.feed(blocks[2])
    for layer in range(CFG.num_layers):
        torch.testing.assert_close(mem.layer_kv(layer)[0][:, : 6 * FT], fresh.layer_kv(layer)[0][:, : 6 * FT])


def test_rollout_options_are_checked():
    from magbench.baselines.wan.memory import RolloutMemory
    from magbench.errors import MagbenchError

    with pytest.raises(MagbenchError, match="context_frames=4"):
        RolloutMemory(2, context_frames=4)
    with pytest.raises(MagbenchError, match="carry_frames=21"):
        RolloutMemory(2, carry_frames=21)
