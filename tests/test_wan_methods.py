"""The registered Wan methods end to end on the tiny config (CPU, random weights, no downloads)."""

from __future__ import annotations

import pytest
import torch

from magbench.errors import MagbenchError, MissingWeightsError
from magbench.method import SampleInfo
from magbench.registry import METHODS

import magbench.baselines.wan  # noqa: F401  (registers the methods until baselines/__init__ does)

NAMES = ["mag", "self-forcing", "full-history", "longlive", "causvid"]


def _method(name: str, tmp_path, **opts):
    m = METHODS.get(name)(config="tiny", random_weights=True, resolution=[16, 32], prompt_cache=str(tmp_path), **opts)
    m.name = name
    m.load("cpu", torch.float32)
    return m


def _sample(n_ctx: int = 21, n_tgt: int = 24) -> SampleInfo:
    return SampleInfo("s0", "a red car drives along the coast", 5, 16, 32, 16.0, n_ctx, n_tgt)


@pytest.mark.parametrize("name", NAMES)
def test_method_generates_the_asked_frames_in_unit_range(name, tmp_path):
    m = _method(name, tmp_path)
    assert m.resolution == (16, 32)
    s = _sample()
    m.reset(s)
    m.memorize(torch.rand(21, 3, 16, 32))
    blocks = list(m.generate(s.num_target))
    assert [b.shape for b in blocks] == [(12, 3, 16, 32)] * 2
    video = torch.cat(blocks)
    assert torch.isfinite(video).all() and video.min() >= 0 and video.max() <= 1
    assert m.memory_bytes() > 0 and "decode_s" in m.timings()


def test_generation_is_seeded_and_memory_changes_the_output(tmp_path):
    a = _method("self-forcing", tmp_path)
    ctx = torch.rand(21, 3, 16, 32, generator=torch.Generator().manual_seed(0))

    def run(m, frames):
        m.reset(_sample())
        m.memorize(frames)
        return torch.cat(list(m.generate(24)))

    first = run(a, ctx)
    torch.testing.assert_close(run(a, ctx), first)  # reset forgets everything; same seed, same video
    other = run(a, torch.rand(21, 3, 16, 32, generator=torch.Generator().manual_seed(1)))
    assert not torch.allclose(first, other)  # the context reaches the generated frames


def test_memory_bytes_follow_the_policy(tmp_path):
    per_frame = 2 * 2 * (1 * 2) * 64 * 4  # K+V, 2 layers, 1x2 patches per frame, width 64, float32
    cases = [
        ("mag", 2 + 5, {}), ("self-forcing", 3 + 12, {"window_frames": 12, "sink_frames": 3}),
        ("self-forcing", 6 + 9, {}), ("full-history", 6 + 9, {}), ("longlive", 3 + 6, {}),
        ("causvid", 3 + 9, {}),  # the rollout starts from the last 3 context latents
    ]
    for name, frames, opts in cases:
        m = _method(name, tmp_path, **opts)
        m.reset(_sample(21, 36))
        m.memorize(torch.rand(21, 3, 16, 32))
        list(m.generate(36))
        assert m.memory_bytes() == frames * per_frame, name


def test_context_must_be_whole_blocks(tmp_path):
    m = _method("mag", tmp_path)
    m.reset(_sample(13, 24))
    m.memorize(torch.rand(13, 3, 16, 32))  # 13 frames: 4 latent frames, not whole blocks
    with pytest.raises(MagbenchError, match="12a-3"):
        next(m.generate(24))


def test_unknown_option_and_bad_resolution_are_refused():
    with pytest.raises(TypeError, match="unknown option"):
        METHODS.get("mag")(windw=3)
    with pytest.raises(MagbenchError, match="multiples of 16"):
        METHODS.get("mag")(resolution=[20, 32])


@pytest.mark.parametrize("name", NAMES)
def test_load_without_weights_fails_at_once_naming_the_download(name):
    m = METHODS.get(name)()
    with pytest.raises(MissingWeightsError, match=f"magbench download --method"):
        m.load("cpu")


def test_registration_does_not_import_diffusers_or_transformers():
    import subprocess
    import sys

    code = (
        "import sys; import magbench.baselines.wan; "
        "bad=[m for m in ('diffusers','transformers') if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
