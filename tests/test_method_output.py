"""Generated frames outside the contract (floating point in [0, 1]) are per-sample failures that
say what was found, never clamped into a score (issue 20)."""

from __future__ import annotations

import sys
from pathlib import Path

from magbench.harness import Harness, RunConfig

sys.path.insert(0, str(Path(__file__).parent / "plugins"))


def _run(synth_dir, out, method):
    config = RunConfig(method=method, dataset=f"synthetic:{synth_dir}", out=out, metrics=["psnr"], device="cpu", limit=1)
    return Harness(config).run(progress=False)


def test_uint8_output_is_a_sample_failure_naming_the_dtype(synth_dir, tmp_path):
    s = _run(synth_dir, tmp_path / "r", "magbench_test_methods:Uint8Frames")
    rec = s.records[0]
    assert s.failed == 1 and not rec.ok and rec.metrics == {}
    assert "yielded block 0 as torch.uint8" in rec.error and "floating point in [0, 1]" in rec.error


def test_float_output_outside_zero_one_is_a_sample_failure_naming_the_range_never_clamped(synth_dir, tmp_path):
    s = _run(synth_dir, tmp_path / "r", "magbench_test_methods:SignedFrames")
    rec = s.records[0]
    assert s.failed == 1 and not rec.ok and rec.metrics == {}
    assert "output values in [-5, 5] (torch.float32), outside [0, 1], in 24 of 24 frames" in rec.error
    assert "never clamped" in rec.error
