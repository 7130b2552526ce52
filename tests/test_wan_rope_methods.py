"""``rolling-forcing`` and ``infinity-rope`` end to end on the tiny config (CPU, random weights,
no downloads), in both memory sources; their options, weights and refusals."""

from __future__ import annotations

import pytest
import torch

from magbench.errors import MagbenchError, MissingWeightsError
from magbench.registry import METHODS

from _wan_drive import H, N_CTX, N_TGT, W
from _wan_drive import frames as _frames
from _wan_drive import run_like_harness as _run
from _wan_drive import sample as _sample
from _wan_drive import spy_commits as _spy_commits
from _wan_drive import tiny_method as _method

NAMES = ["rolling-forcing", "infinity-rope"]


@pytest.mark.parametrize("source", ["generated", "ground-truth"])
@pytest.mark.parametrize("name", NAMES)
def test_method_generates_the_asked_frames_in_unit_range(name, source, tmp_path):
    m = _method(name, tmp_path)
    video = _run(m, _frames(N_CTX, 0), _frames(N_TGT, 1), source)
    assert video.shape == (N_TGT, 3, H, W)
    assert torch.isfinite(video).all() and video.min() >= 0 and video.max() <= 1
    assert m.memory_bytes() > 0 and "decode_s" in m.timings()


@pytest.mark.parametrize("name", NAMES)
def test_ground_truth_source_commits_the_latents_of_a_one_shot_encode_of_the_clip(name, tmp_path):
    m = _method(name, tmp_path)
    commits = _spy_commits(m)
    ctx, tgt = _frames(N_CTX, 0), _frames(N_TGT, 1)
    _run(m, ctx, tgt, "ground-truth")
    whole = m.vae.encode(torch.cat([ctx, tgt]))  # 2 context + 2 target blocks of latents
    assert len(commits) == 4
    for i, got in enumerate(commits):
        torch.testing.assert_close(got, whole[:, 3 * i : 3 * i + 3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_different_ground_truth_changes_only_the_blocks_that_read_it(name, tmp_path):
    m = _method(name, tmp_path)
    ctx = _frames(N_CTX, 0)
    a = _run(m, ctx, _frames(N_TGT, 1), "ground-truth")
    b = _run(m, ctx, _frames(N_TGT, 2), "ground-truth")
    # The first block only reads the context; the second reads the first block's ground truth
    # (Rolling Forcing: in the window after the first block left it).
    torch.testing.assert_close(a[:12], b[:12], rtol=0, atol=0)
    assert not torch.allclose(a[12:], b[12:])


@pytest.mark.parametrize("name", NAMES)
def test_ground_truth_equal_to_the_generated_latents_gives_the_generated_output(name, tmp_path):
    m = _method(name, tmp_path)
    commits = _spy_commits(m)
    ctx, tgt = _frames(N_CTX, 0), _frames(N_TGT, 1)
    generated = _run(m, ctx, tgt, "generated")
    own = commits[2:]  # the generated blocks' latents as committed in generated mode
    assert len(own) == 2

    class OwnLatents:  # a "ground truth" whose encoding is exactly the method's own output
        pending_frames = 0

        def push(self, frames):
            return own.pop(0)

    m.reset(_sample("ground-truth"))
    m.memorize(ctx)
    m._enc = OwnLatents()
    out, produced = [], 0
    for block in m.generate(N_TGT):
        out.append(block)
        m.remember_ground_truth(tgt[produced : produced + block.shape[0]])
        produced += block.shape[0]
    torch.testing.assert_close(torch.cat(out), generated, rtol=0, atol=0)


def test_rolling_forcing_first_block_waits_for_a_whole_window_of_passes(tmp_path):
    """The first block leaves the window after 5 passes (one per step: time to first block
    counts them all); each later block after one more; the last windows shrink."""
    m = _method("rolling-forcing", tmp_path)
    m.reset(_sample(n_tgt=36))
    m.memorize(_frames(N_CTX, 0))
    passes, in_flight = [], []
    for _ in m.generate(36):
        passes.append(m.sampler.passes)
        in_flight.append(m.sampler.in_flight)
    assert passes == [5, 6, 7] and in_flight == [2, 1, 0]


def test_memory_holds_what_each_policy_keeps(tmp_path):
    per_frame = 2 * 2 * (1 * 2) * 64 * 4  # K+V, 2 layers, 1x2 patches per frame, width 64, float32
    # 6 context + 9 generated latent frames; Rolling Forcing: sink (first block) + the 12 frames
    # after it (past_frames = 18 not yet full); Infinity-RoPE: 1 sink frame + 2 recent frames.
    for name, frames in (("rolling-forcing", 3 + 12), ("infinity-rope", 1 + 2)):
        m = _method(name, tmp_path)
        m.reset(_sample(n_tgt=36))
        m.memorize(_frames(N_CTX, 0))
        list(m.generate(36))
        assert m.memory_bytes() == frames * per_frame, name
    assert m.memory.kept_frames() == [0, 13, 14]


@pytest.mark.parametrize("name", NAMES)
def test_load_without_weights_fails_at_once_naming_the_download(name):
    with pytest.raises(MissingWeightsError, match=f"magbench download --method {name}"):
        METHODS.get(name)().load("cpu")


@pytest.mark.parametrize("name", NAMES)
def test_run_without_weights_fails_before_any_work_naming_the_download(name, tmp_path):
    from magbench.harness import Harness, RunConfig

    cfg = RunConfig(method=name, dataset="synthetic", out=tmp_path / "run", device="cpu", metrics=["psnr"], limit=1)
    with pytest.raises(MissingWeightsError, match=f"magbench download --method {name}"):
        Harness(cfg)


@pytest.mark.parametrize("name", NAMES)
def test_cuda_graphs_are_refused(name):
    with pytest.raises(MagbenchError, match="cuda_graphs"):
        METHODS.get(name)(cuda_graphs=True)


def test_options_are_typed_and_checked():
    with pytest.raises(TypeError, match="unknown option"):
        METHODS.get("rolling-forcing")(window_frames=3)
    with pytest.raises(MagbenchError, match="multiple of the block"):
        METHODS.get("rolling-forcing")(attention_frames=20)
    with pytest.raises(MagbenchError, match="attention_frames"):
        METHODS.get("rolling-forcing")(attention_frames=15)
    with pytest.raises(MagbenchError, match="sink_frames"):
        METHODS.get("infinity-rope")(sink_frames=-1)
    m = METHODS.get("infinity-rope")(config="tiny", window_frames="5")
    assert m.opts.window_frames == 5 and m.config()["memory"]["window_frames"] == 5


def test_their_options_extend_the_common_wan_options():
    from magbench.baselines.wan.methods import WanOptions
    from magbench.baselines.wan.rope_methods import InfinityRopeOptions, RollingForcingOptions

    common = WanOptions.defaults()
    for opts in (RollingForcingOptions, InfinityRopeOptions):
        assert {k: v for k, v in opts.defaults().items() if k in common} == common


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_loads_the_ema_weights_without_fsdp_wrapper_names(name, tmp_path):
    from magbench.baselines.wan.model import CausalWan, WanConfig

    ema = CausalWan(WanConfig.tiny()).init_random(5).state_dict()
    raw = CausalWan(WanConfig.tiny()).init_random(6).state_dict()

    def wrapped(k: str) -> str:  # FSDP's name inside a nested-wrapped block, as the references strip it
        return "model." + k.replace("blocks.0.", "blocks.0._fsdp_wrapped_module.")

    torch.save({"generator": {f"model.{k}": v for k, v in raw.items()},
                "generator_ema": {wrapped(k): v for k, v in ema.items()}}, tmp_path / "ckpt.pt")
    model, memory_model = METHODS.get(name)(config="tiny", checkpoint_path=str(tmp_path / "ckpt.pt")).load_models()
    assert memory_model is None
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ema.items())
    model, _ = METHODS.get(name)(config="tiny", checkpoint_path=str(tmp_path / "ckpt.pt"), ema=False).load_models()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in raw.items())


@pytest.mark.parametrize("name", NAMES)
def test_method_runs_through_the_harness_with_the_ground_truth_memory_source(name, synth_dir, tmp_path):
    from magbench.harness import Harness, RunConfig
    from magbench.protocol import ReplayProtocol

    cfg = RunConfig(
        method=name, dataset=f"synthetic:{synth_dir}", out=tmp_path / name, device="cpu",
        method_options={"config": "tiny", "random_weights": True}, metrics=["psnr"], limit=1,
        protocol=ReplayProtocol(memory_source="ground-truth"),
    )
    s = Harness(cfg).run(progress=False)
    assert s.ok == 1, s.records[0].error
    assert s.records[0].part.memory_source == "ground-truth" and s.records[0].memory.kv_bytes_end > 0
