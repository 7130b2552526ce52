"""The Wan methods' typed options: checked at construction, what config() records, one build."""

from __future__ import annotations

import pytest
import torch

import magbench.baselines.wan  # noqa: F401  (registers the methods)
from magbench.baselines.wan.methods import BLOCK_FRAMES, WanOptions, _WanMethod
from magbench.errors import MagbenchError
from magbench.options import OptionError
from magbench.registry import METHODS

WAN = ["mag", "self-forcing", "full-history", "longlive", "causvid"]


@pytest.mark.parametrize("name", WAN)
def test_every_wan_method_declares_typed_options_over_the_common_ones(name):
    cls = METHODS.get(name)
    assert issubclass(cls.Options, WanOptions)
    assert set(WanOptions.names()) <= set(cls.Options.names())
    assert cls.defaults == cls.Options.defaults()


@pytest.mark.parametrize(
    "name, given, named",
    [
        ("self-forcing", {"attention": "xformers"}, "attention"),
        ("mag", {"config": "t2v-14b"}, "config"),
        ("mag", {"slots": 0}, "slots"),
        ("mag", {"sink_frames": BLOCK_FRAMES + 1}, "sink_frames"),
        ("self-forcing", {"window_frames": 2}, "window_frames"),
        ("self-forcing", {"sink_frames": -1}, "sink_frames"),
        ("full-history", {"max_frames": 0}, "max_frames"),
        ("longlive", {"lora_rank": "big"}, "lora_rank"),
        ("causvid", {"reencode_anchor": "perhaps"}, "reencode_anchor"),
        ("self-forcing", {"resolution": "480by832"}, "resolution"),
        ("self-forcing", {"checkpoint_path": "/no/such/file.pt"}, "checkpoint_path"),
    ],
)
def test_bad_option_values_are_refused_at_construction_naming_the_option(name, given, named):
    with pytest.raises(MagbenchError, match=named):  # an OptionError, or the memory's own check
        METHODS.get(name)(**given)


def test_cross_option_checks_happen_at_construction():
    with pytest.raises(MagbenchError, match="multiples of 16"):
        METHODS.get("mag")(resolution="20x32")
    with pytest.raises(MagbenchError, match="carry_frames"):
        METHODS.get("causvid")(carry_frames=4)  # not a whole block


def test_text_values_from_the_command_line_become_typed_attributes():
    m = METHODS.get("mag")(slots="4", memory_model="false", resolution="16x32", attention="sdpa")
    assert (m.opts.slots, m.opts.memory_model, m.opts.resolution, m.opts.attention) == (4, False, (16, 32), "sdpa")
    assert m.resolution == (16, 32)
    assert m.config()["options"]["resolution"] == [16, 32]  # JSON, as before the typed options
    assert m.config()["memory"]["slots"] == 4


def test_config_records_the_resolved_options_as_before():
    """The option names and JSON values of a manifest are those the untyped defaults gave."""
    cfg = METHODS.get("longlive")().config()
    assert cfg["options"]["lora_alpha"] == 256 and isinstance(cfg["options"]["lora_alpha"], int)
    assert cfg["memory"] == {"policy": "sliding-window", "window_frames": 6, "sink_frames": 3}
    assert cfg["options"]["attention"] == "auto" and cfg["options"]["resolution"] is None


def test_causvid_builds_its_sampler_once_with_the_vae(tmp_path, monkeypatch):
    calls = []
    make = _WanMethod.make_sampler
    cls = METHODS.get("causvid")
    orig = cls.make_sampler

    def counting(self, *args, **kwargs):
        calls.append(kwargs.get("vae"))
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(cls, "make_sampler", counting)
    m = cls(config="tiny", random_weights=True, resolution=[16, 32], prompt_cache=str(tmp_path))
    m.load("cpu", torch.float32)
    assert len(calls) == 1 and calls[0] is m.vae
    assert m.sampler.anchor is not None  # the rollouts re-encode their anchor through that VAE
    assert make is _WanMethod.make_sampler


def test_scripts_build_the_same_parts_without_a_vae():
    from magbench.baselines.wan.build import build_transformer

    parts = build_transformer("causvid", "cpu", torch.float32, config="tiny", random_weights=True)
    assert parts.sampler.anchor is None  # no VAE: carried latents as they are
