"""The three Wan methods run end to end through the harness on CPU, with a tiny random config."""

import pytest

from magbench.harness import Harness, RunConfig


@pytest.mark.parametrize("method", ["mag", "self-forcing", "full-history"])
def test_wan_method_runs_through_magbench_run_with_tiny_random_config(method, synth_dir, tmp_path):
    cfg = RunConfig(
        method=method, dataset=f"synthetic:{synth_dir}", out=tmp_path / method, device="cpu",
        method_options={"config": "tiny", "random_weights": True}, metrics=["psnr", "ssim"], limit=1,
    )
    s = Harness(cfg).run(progress=False)
    assert s.ok == 1, s.records[0].get("error")
    r = s.records[0]
    assert r.part.num_target == 24 and r.timing.block_frames == [12, 12]
    assert r.memory.kv_bytes_end > 0
    assert 0 <= r.metrics["ssim"] <= 1
