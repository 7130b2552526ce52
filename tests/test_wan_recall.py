"""``Method.recall`` of the Wan methods and the memory tasks' sanity methods (CPU, tiny).

Behaviour (what each memory gives back, by age = blocks since memorised) is checked with
``_recall_fixtures.CopyNetwork`` in place of the generator: a network that returns exactly the
latents its memory holds at the block's position, so recall is exact where the memory kept the
block and off where it did not. (A random-weight generator recalls nothing whatever its memory:
its output does not copy what it attends to.) The tiny random VAE does not reconstruct pixels
(its round trip scores ~10 dB on random frames, as anything does), so memory is read off the
latent MSE and pixel recall is compared with the ``vae-roundtrip`` ceiling's frames.
"""

from __future__ import annotations

import pytest
import torch

from _recall_fixtures import install_copier

import magbench.baselines  # noqa: F401
from magbench.errors import MagbenchError
from magbench.method import SampleInfo
from magbench.metrics.common import psnr_frames
from magbench.registry import METHODS

BLOCKS = 4
FRAMES = 12 * BLOCKS - 3
EXACT = 1e-10  # latent MSE of a block recalled from memory (float32 copies)
FORGOTTEN = 1e-3  # latent MSE of a block the memory no longer holds (the copier's average)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return torch.rand(FRAMES, 3, 32, 48, generator=torch.Generator().manual_seed(0))


def _info(n: int = FRAMES) -> SampleInfo:
    return SampleInfo("clip", "a prompt", 3, 32, 48, 16.0, n, 12)


def _method(name: str, copier: bool = True, **options):
    m = METHODS.get(name)(config="tiny", random_weights=True, **options)
    m.load("cpu", torch.float32)
    if copier:
        install_copier(m)
    return m


def _recall(m, clip):
    m.reset(_info())
    m.memorize(clip)
    return list(m.recall())


@pytest.fixture(scope="module")
def ceiling(clip):
    rt = METHODS.get("vae-roundtrip")(config="tiny", random_weights=True)
    rt.load("cpu")
    rt.reset(_info())
    rt.memorize(clip)
    return list(rt.recall())


def _latent_mse_by_age(blocks) -> list[float]:
    """Latent MSE of each block, by age (0 = the last memorised block)."""
    return [float((b.latents - b.reference_latents).pow(2).mean()) for b in reversed(blocks)]


def test_vae_roundtrip_is_encode_then_decode(clip, ceiling):
    rt = METHODS.get("vae-roundtrip")(config="tiny", random_weights=True)
    rt.load("cpu")
    whole = rt.vae.decode(rt.vae.encode(clip))
    assert [(b.index, b.start, b.frames.shape[0]) for b in ceiling] == [(0, 0, 9)] + [(i, 12 * i - 3, 12) for i in range(1, BLOCKS)]
    torch.testing.assert_close(torch.cat([b.frames for b in ceiling]), whole, atol=1e-5, rtol=0)
    assert all(torch.equal(b.latents, b.reference_latents) for b in ceiling)
    rt.reset(_info())
    assert torch.equal(torch.cat([b.frames for b in rt.reconstruct(clip)]), torch.cat([b.frames for b in ceiling]))


def test_full_history_recalls_every_age_at_the_ceiling(clip, ceiling):
    blocks = _recall(_method("full-history"), clip)
    assert max(_latent_mse_by_age(blocks)) < EXACT
    for b, c in zip(blocks, ceiling):  # the ceiling's very frames, at every age
        assert b.start == c.start
        torch.testing.assert_close(b.frames, c.frames, atol=1e-4, rtol=0)
        gt = clip[b.start : b.start + b.frames.shape[0]]
        assert abs(float(psnr_frames(b.frames, gt).mean()) - float(psnr_frames(c.frames, gt).mean())) < 1e-3


@pytest.mark.parametrize("window_frames", [3, 6])
def test_small_window_forgets_past_its_length(clip, ceiling, window_frames):
    """Self-Forcing's window of ``window_frames`` latent frames (no sink) holds the last
    ``window_frames / 3`` blocks: those come back exactly, every older one does not."""
    blocks = _recall(_method("self-forcing", window_frames=window_frames), clip)
    held = window_frames // 3
    by_age = _latent_mse_by_age(blocks)
    assert all(mse < EXACT for mse in by_age[:held]), by_age
    assert all(mse > FORGOTTEN for mse in by_age[held:]), by_age
    # Pixels: the recalled clip is decoded as one video (as MAG's test decodes its output), so
    # the causal decoder carries a forgotten block's error into the next blocks' first frames:
    # only a clip recalled exactly up to the oldest block decodes to the ceiling's frames.
    assert not torch.allclose(blocks[-1].frames, ceiling[-1].frames, atol=1e-4, rtol=0)


def test_mag_memory_gives_back_the_kept_frame_of_each_block(clip):
    """MAG's compressed memory keeps the last latent frame of each block (and the first block's
    first two in the sink): exactly those frames come back."""
    blocks = _recall(_method("mag"), clip)
    for b in blocks:
        per_frame = (b.latents - b.reference_latents).pow(2).mean(dim=(0, 2, 3, 4))
        kept = [0, 1, 2] if b.index == 0 else [2]
        assert all((per_frame[j] < EXACT) == (j in kept) for j in range(3)), (b.index, per_frame)


def test_recall_reads_the_memory_and_leaves_generation_as_it_was(clip):
    """Recall changes nothing the method keeps: the memory's bytes and frames, and the blocks
    a later generate() yields (real tiny random weights)."""
    # the memory model's path; the rollouts'; a memory that rotates held keys on read (self-forcing's
    # path is mag's without the memory model)
    for name in ("mag", "causvid", "reward-forcing"):
        plain = _method(name, copier=False)
        plain.reset(_info())
        plain.memorize(clip)
        want = torch.cat(list(plain.generate(12)))
        m = _method(name, copier=False)
        m.reset(_info())
        m.memorize(clip)
        kept = m.memory.kept_frames()
        blocks = list(m.recall())
        assert len(blocks) == BLOCKS and all(torch.isfinite(b.frames).all() for b in blocks)
        if name != "causvid":  # CausVid's memory is empty until its first rollout: recall starts it, as generate would
            assert m.memory.kept_frames() == kept
        torch.testing.assert_close(torch.cat(list(m.generate(12))), want, atol=0, rtol=0, msg=name)


def test_recall_before_memorize_is_refused():
    m = _method("self-forcing", copier=False)
    m.reset(_info())
    with pytest.raises(MagbenchError, match="memorize"):
        list(m.recall())


def test_mean_frame_recalls_the_mean(clip):
    m = METHODS.get("mean-frame")()
    m.reset(_info())
    m.memorize(clip[:20])
    m.memorize(clip[20:])
    blocks = list(m.recall())
    assert [(b.start, b.frames.shape[0]) for b in blocks] == [(0, 9)] + [(12 * i - 3, 12) for i in range(1, BLOCKS)]
    mean = clip.mean(0, keepdim=True)
    assert all(torch.allclose(b.frames, mean.expand_as(b.frames), atol=1e-6) for b in blocks)
    assert m.memory_bytes() == mean.numel() * 4


def test_vae_roundtrip_has_no_replay_capability():
    caps = METHODS.get("vae-roundtrip").capabilities()
    assert {"recall", "reconstruct"} <= caps and "replay" not in caps


def test_mag_reconstruct_sees_only_blocks_up_to_its_own(clip):
    """``mag.reconstruct``: changing the clip's last block changes only that block's
    reconstruction (the history_compress mask, at the method level, real tiny random weights)."""
    m = _method("mag", copier=False)
    m.reset(_info())
    before = list(m.reconstruct(clip))
    changed = clip.clone()
    changed[-12:] = torch.rand(12, *clip.shape[1:], generator=torch.Generator().manual_seed(5))
    m.reset(_info())
    after = list(m.reconstruct(changed))
    assert len(before) == BLOCKS
    for b, a in zip(before[:-1], after[:-1]):
        assert torch.equal(b.latents, a.latents) and torch.equal(b.frames, a.frames), b.index
    assert not torch.equal(before[-1].latents, after[-1].latents)
    # the memory the test reconstructs from: one latent frame of K/V per block
    cfg = m.memory_model.cfg
    assert m.memory_bytes() == BLOCKS * (4 // 2) * (6 // 2) * cfg.num_layers * 2 * cfg.dim * 4
