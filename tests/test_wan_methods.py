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


def _tiny_state(seed: int) -> dict[str, torch.Tensor]:
    from magbench.baselines.wan.model import CausalWan, WanConfig

    return CausalWan(WanConfig.tiny()).init_random(seed).state_dict()


def test_longlive_loads_base_generator_weights_and_merges_the_lora(tmp_path):
    from magbench.baselines.wan.lora import TARGETS

    state = _tiny_state(5)
    torch.save({"generator": {f"model.{k}": v for k, v in state.items()}, "critic": {}}, tmp_path / "base.pt")
    g = torch.Generator().manual_seed(0)
    lora = {}
    for i in range(2):
        for t in TARGETS:
            out_f, in_f = state[f"blocks.{i}.{t}.weight"].shape
            lora[f"base_model.model.blocks.{i}.{t}.lora_A.weight"] = torch.randn(4, in_f, generator=g)
            lora[f"base_model.model.blocks.{i}.{t}.lora_B.weight"] = torch.randn(out_f, 4, generator=g)
    torch.save({"generator_lora": lora, "step": 3}, tmp_path / "lora.pt")
    m = METHODS.get("longlive")(
        config="tiny", checkpoint_path=str(tmp_path / "base.pt"), lora_path=str(tmp_path / "lora.pt"), lora_rank=4, lora_alpha=8,
    )
    model, memory_model = m.load_models()
    assert memory_model is None
    w = model.state_dict()
    a, b = lora["base_model.model.blocks.1.ffn.0.lora_A.weight"], lora["base_model.model.blocks.1.ffn.0.lora_B.weight"]
    torch.testing.assert_close(w["blocks.1.ffn.0.weight"], state["blocks.1.ffn.0.weight"] + 2.0 * b @ a)
    assert torch.equal(w["head.head.weight"], state["head.head.weight"])  # not a LoRA target


def test_causvid_loads_the_generator_key(tmp_path):
    state = _tiny_state(6)
    torch.save({"generator": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "model.pt")
    m = METHODS.get("causvid")(config="tiny", checkpoint_path=str(tmp_path / "model.pt"))
    model, _ = m.load_models()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_causvid_rollouts_reencode_the_carried_pixel_frame(tmp_path, monkeypatch):
    """A new rollout asks for latent l's last pixel frame, pixel 4l, and VAE-encodes it alone."""
    m = _method("causvid", tmp_path)
    s = _sample(9, 96)  # 3 context latents; 24 generated latents: one restart
    m.reset(s)
    asked = []
    encode = m.vae.encode
    monkeypatch.setattr(m.vae, "encode", lambda frames: asked.append(frames.shape) or encode(frames))
    get = m._pixels.get
    monkeypatch.setattr(m._pixels, "get", lambda i: asked.append(i) or get(i))
    m.memorize(torch.rand(9, 3, 16, 32))
    list(m.generate(s.num_target))
    # rollout 1 from context latents 0-2 (latent 0 is already a one-frame encoding: kept);
    # rollout 2 from latents 18-20: pixel 72, encoded as a one-frame video
    assert asked == [72, (1, 3, 16, 32)]
    assert m.memory.rollouts == 2


@pytest.mark.parametrize("name", ["longlive", "causvid"])
def test_new_baselines_run_through_the_harness(name, synth_dir, tmp_path):
    from magbench.harness import Harness, RunConfig

    cfg = RunConfig(
        method=name, dataset=f"synthetic:{synth_dir}", out=tmp_path / name, device="cpu",
        method_options={"config": "tiny", "random_weights": True}, metrics=["psnr"], limit=1,
    )
    s = Harness(cfg).run(progress=False)
    assert s.ok == 1, s.records[0].get("error")
    assert s.records[0].memory.kv_bytes_end > 0
