"""The ground-truth memory source (the paper's "GT context") and MAG's memory-model ablation for
the Wan methods: tiny config, random weights, float32, CPU."""

from __future__ import annotations

import pytest
import torch

from magbench.errors import MagbenchError
from magbench.registry import METHODS

from _wan_drive import N_CTX, N_TGT
from _wan_drive import frames as _frames
from _wan_drive import run_like_harness as _run
from _wan_drive import sample as _sample
from _wan_drive import spy_commits as _spy_commits
from _wan_drive import tiny_method as _method

NAMES = ["mag", "self-forcing", "full-history"]


def test_streaming_encode_of_the_target_continuing_from_the_context_equals_a_one_shot_encode():
    from magbench.baselines.wan.vae import WanVAE, tiny_vae_config

    vae = WanVAE.random(tiny_vae_config(), "cpu", torch.float32)
    ctx, tgt = _frames(N_CTX, 0), _frames(N_TGT, 1)
    # The reference: one encode of the whole clip, split into context and target latents.
    whole = vae.encode(torch.cat([ctx, tgt]))
    n = N_TGT // 4
    ref_ctx, ref_tgt = whole[:, :-n], whole[:, -n:]
    enc = vae.encoder_stream()
    got_ctx = enc.push(ctx)
    got_tgt = torch.cat([enc.push(tgt[:12]), enc.push(tgt[12:])], dim=1)
    assert got_ctx.shape == ref_ctx.shape and got_tgt.shape == ref_tgt.shape == (1, 6, 16, 2, 4)
    torch.testing.assert_close(got_ctx, ref_ctx, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_tgt, ref_tgt, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_cache_update_pass_receives_the_latents_of_a_one_shot_encode_of_the_clip(name, tmp_path):
    m = _method(name, tmp_path)
    commits = _spy_commits(m)
    ctx, tgt = _frames(N_CTX, 0), _frames(N_TGT, 1)
    _run(m, ctx, tgt, "ground-truth")
    whole = m.vae.encode(torch.cat([ctx, tgt]))  # [1, 12, C, h, w]: 2 context + 2 target blocks
    assert len(commits) == 4
    for i, got in enumerate(commits):
        torch.testing.assert_close(got, whole[:, 3 * i : 3 * i + 3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_different_ground_truth_gives_different_memory_and_later_blocks(name, tmp_path):
    m = _method(name, tmp_path)
    ctx = _frames(N_CTX, 0)
    a = _run(m, ctx, _frames(N_TGT, 1), "ground-truth")
    mem_a = [k.clone() for k in m.memory.layer_kv(0)] if hasattr(m.memory, "layer_kv") else None
    b = _run(m, ctx, _frames(N_TGT, 2), "ground-truth")
    # The first block only reads the context; the second reads the first block's ground truth.
    torch.testing.assert_close(a[:12], b[:12], rtol=0, atol=0)
    assert not torch.allclose(a[12:], b[12:])
    if mem_a is not None:
        assert any(not torch.equal(x, y) for x, y in zip(mem_a, m.memory.layer_kv(0)))


@pytest.mark.parametrize("name", NAMES)
def test_ground_truth_equal_to_the_generated_latents_gives_the_generated_mode_output(name, tmp_path):
    m = _method(name, tmp_path)
    commits = _spy_commits(m)
    ctx, tgt = _frames(N_CTX, 0), _frames(N_TGT, 1)
    generated = _run(m, ctx, tgt, "generated")
    bytes_generated = m.memory_bytes()
    own = commits[2:]  # the generated blocks' latents, as committed in generated mode
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
    assert m.memory_bytes() == bytes_generated


def test_generated_blocks_are_not_committed_in_ground_truth_mode(tmp_path):
    m = _method("self-forcing", tmp_path)
    commits = _spy_commits(m)
    m.reset(_sample("ground-truth"))
    m.memorize(_frames(N_CTX, 0))
    gen = m.generate(N_TGT)
    next(gen)
    assert len(commits) == 2  # the context's blocks only: the block's own latents are not written
    with pytest.raises(MagbenchError, match="remember_ground_truth"):
        next(gen)  # resumed without the block's ground truth
    m.reset(_sample("generated"))
    m.memorize(_frames(N_CTX, 0))
    with pytest.raises(MagbenchError, match="this sample's is generated"):
        m.remember_ground_truth(_frames(12, 1))


def test_a_final_partial_block_is_accepted(tmp_path):
    m = _method("mag", tmp_path)
    commits = _spy_commits(m)
    out = _run(m, _frames(N_CTX, 0), _frames(17, 1), "ground-truth")  # 12 + 5 frames
    assert out.shape[0] == 17
    assert len(commits) == 2 + 1  # the 5-frame tail is never read by a later block


def test_wan_method_through_the_harness_records_the_memory_source(synth_dir, tmp_path):
    from magbench.harness import Harness, RunConfig
    from magbench.protocol import ReplayProtocol
    from magbench.store import RunDir

    cfg = RunConfig(
        method="mag", dataset=f"synthetic:{synth_dir}", out=tmp_path / "run", device="cpu",
        method_options={"config": "tiny", "random_weights": True}, metrics=["psnr"], limit=1,
        protocol=ReplayProtocol(memory_source="ground-truth"),
    )
    s = Harness(cfg).run(progress=False)
    assert s.ok == 1, s.records[0].get("error")
    assert s.records[0].part.memory_source == "ground-truth"
    assert RunDir(s.run_dir).manifest()["protocol"]["memory_source"] == "ground-truth"


def test_oracle_fed_its_own_output_as_ground_truth_gives_the_generated_mode_records(synth_dir, tmp_path):
    from magbench.harness import Harness, RunConfig
    from magbench.protocol import ReplayProtocol

    def records(source):
        cfg = RunConfig(method="oracle", dataset=f"synthetic:{synth_dir}", out=tmp_path / source, device="cpu",
                        metrics=["psnr", "ssim"], limit=2, protocol=ReplayProtocol(memory_source=source))
        return Harness(cfg).run(progress=False).records

    gen, gt = records("generated"), records("ground-truth")
    assert [r.part.memory_source for r in gt] == ["ground-truth"] * 2
    for a, b in zip(gen, gt):
        assert a.metrics == b.metrics and a.sample_id == b.sample_id


def _spy_writers(m) -> list[tuple[str, object]]:
    """(network, prompt context) of every pass that writes the memory."""
    writes: list[tuple[str, object]] = []
    for label in ("generator", "memory_model"):
        net = getattr(m, label)
        if net is None:
            continue
        real = net.forward

        def forward(x, t, ctx, memory, frame, commit=False, _real=real, _label=label, **kw):
            if commit:
                writes.append((_label, ctx))
            return _real(x, t, ctx, memory, frame, commit=commit, **kw)

        net.forward = forward
    return writes


@pytest.mark.parametrize("source", ["generated", "ground-truth"])
def test_memory_model_ablation_has_the_generator_write_the_cache_with_its_prompt(source, tmp_path):
    ctx, tgt = _frames(N_CTX, 0), _frames(N_TGT, 1)
    full = _method("mag", tmp_path)
    writes = _spy_writers(full)
    out_full = _run(full, ctx, tgt, source)
    assert [w for w, _ in writes] == ["memory_model"] * 4  # 2 context + 2 generated blocks
    assert all(c is full.sampler._mem_ctx for _, c in writes)  # the empty prompt's context

    ablated = _method("mag", tmp_path, memory_model=False)
    assert ablated.memory_model is None and ablated.sampler.memory_model is None
    writes = _spy_writers(ablated)
    out_ablated = _run(ablated, ctx, tgt, source)
    assert [w for w, _ in writes] == ["generator"] * 4
    assert all(c is ablated.sampler._gen_ctx for _, c in writes)  # the generation prompt's context
    assert type(ablated.memory) is type(full.memory)  # the same compressed memory
    assert ablated.memory_bytes() == full.memory_bytes()
    assert not torch.allclose(out_full, out_ablated)


def test_memory_model_ablation_is_recorded_in_the_method_config():
    on, off = METHODS.get("mag")(), METHODS.get("mag")(memory_model=False)
    assert on.config()["cache_writer"] == "memory model, empty prompt"
    assert off.config()["cache_writer"] == "generator, generation prompt"
    assert off.config()["options"]["memory_model"] is False
    # Typed options read "no"/"off"/"0" as false (--opt values arrive as text); anything else is refused.
    assert METHODS.get("mag")(memory_model="no").opts.memory_model is False
    with pytest.raises(MagbenchError, match="memory_model"):
        METHODS.get("mag")(memory_model="maybe")
