"""The public builders give benchmarks exactly what a method's ``load`` builds."""

from __future__ import annotations

import pytest
import torch

from magbench.baselines.wan.build import build_memory, build_transformer, wan_method
from magbench.baselines.wan.memory import CompressedMemory, SlidingWindow
from magbench.errors import MagbenchError

TINY = {"config": "tiny", "random_weights": True, "resolution": [16, 32]}


@pytest.mark.parametrize("name", ["mag", "self-forcing"])
def test_built_parts_equal_the_loaded_methods(name, tmp_path):
    method = wan_method(name, prompt_cache=str(tmp_path), **TINY)
    method.load("cpu", torch.float32)
    built = build_transformer(name, "cpu", torch.float32, prompt_cache=str(tmp_path), **TINY)
    pairs = [(method.generator, built.generator), (method.memory_model, built.memory_model)]
    for a, b in pairs:
        assert (a is None) == (b is None)
        if a is not None:
            sa, sb = a.state_dict(), b.state_dict()
            assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
            assert (a.attention.backend, a.fused_elementwise) == (b.attention.backend, b.fused_elementwise)
    assert built.memory.describe() == method.memory.describe()
    assert type(built.sampler) is type(method.sampler)


def test_memory_defaults_come_from_the_method_classes():
    mem = build_memory("self-forcing", config="tiny")
    assert isinstance(mem, SlidingWindow)
    assert (mem.window_frames, mem.sink_frames) == (wan_method("self-forcing").opts.window_frames, wan_method("self-forcing").opts.sink_frames)
    mag = build_memory("mag", config="tiny", slots=4)
    assert isinstance(mag, CompressedMemory) and mag.slots == 4 and mag.sink_frames == wan_method("mag").opts.sink_frames


def test_options_are_the_methods_own():
    with pytest.raises(TypeError, match="unknown option"):
        build_memory("mag", window_frames=3)
    with pytest.raises(MagbenchError, match="not a Wan method"):
        wan_method("repeat-last")


def test_memory_reports_what_a_block_attends_to():
    mem = build_memory("mag", config="tiny", slots=2)
    assert mem.allocated_frames == 0 and mem.buffers() == []
    assert mem.plan(0, 3) == (2, 2)  # no sink yet: the block attends to itself only
    assert mem.attended_frames(0, 3) == 3


def test_a_random_weight_model_built_on_the_meta_device_is_the_eagerly_built_one_bit_for_bit():
    """``random_model`` skips PyTorch's default initialisation, which init_random overwrites for
    every parameter (the global RNG it no longer consumes is reseeded per sample by the harness;
    the samplers draw noise from their own generators)."""
    from magbench.baselines.wan.model import CausalWan, WanConfig

    fast = wan_method("self-forcing", **TINY).random_model(7)
    eager = CausalWan(WanConfig.tiny()).init_random(7)
    a, b = fast.state_dict(), eager.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {p.device.type for p in fast.parameters()} == {"cpu"}
