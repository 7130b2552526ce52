"""The warm-up (issue 20): it tries the next samples until one warms the method up, and every
record says truthfully whether and on what it ran."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from magbench.harness import Harness, RunConfig

sys.path.insert(0, str(Path(__file__).parent / "plugins"))


@pytest.fixture()
def first_video_missing(synth_dir, tmp_path):
    """The synthetic set with its first sample's video deleted."""
    root = tmp_path / "set"
    shutil.copytree(synth_dir, root)
    next(root.rglob("synthetic_000_pan.mp4")).unlink()
    return root


def _run(dataset: Path, out: Path, method: str = "magbench_test_methods:CallLog"):
    import magbench_test_methods as plugins

    plugins.CallLog.calls.clear()
    cfg = RunConfig(method=method, dataset=f"synthetic:{dataset}", out=out, metrics=["psnr"], device="cpu")
    return Harness(cfg).run(progress=False), plugins.CallLog.calls


def test_warm_up_tries_the_next_sample_when_the_first_one_cannot_run_and_records_say_which(first_video_missing, tmp_path):
    s, calls = _run(first_video_missing, tmp_path / "r")
    assert calls[:2] == [("reset", "synthetic_001_tilt", 12), ("generate", "synthetic_001_tilt", 12)]  # one untimed block
    assert s.warmup["kind"] == "sample" and s.warmup["sample_id"] == "synthetic_001_tilt"
    assert [t["sample_id"] for t in s.warmup["tried"]] == ["synthetic_000_pan"]
    by_id = {r.sample_id: r for r in s.records}
    assert not by_id["synthetic_000_pan"].ok  # the missing video is that sample's failure, recorded once
    for sid in ("synthetic_001_tilt", "synthetic_002_dolly"):
        assert by_id[sid].timing.warmup == "sample" and by_id[sid].timing.warmup_sample == "synthetic_001_tilt"


def test_records_say_no_warm_up_ran_when_no_sample_could_warm_the_method_up(synth_dir, tmp_path):
    s, _ = _run(synth_dir, tmp_path / "r", "magbench_test_methods:FailsShortTargets")  # fails on one block only
    assert s.warmup["kind"] == "failed" and s.warmup["sample_id"] is None and len(s.warmup["tried"]) == 3
    assert s.ok == 3  # the samples themselves run, cold, and say so
    assert all(r.timing.warmup == "failed" and r.timing.warmup_sample is None for r in s.records)
