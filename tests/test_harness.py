import json
import sys
from pathlib import Path

import numpy as np
import pytest

from magbench.errors import MagbenchError, RunConfigMismatchError
from magbench.harness import Harness, RunConfig, parse_options, sample_seed
from magbench.store import RunDir

from conftest import TEST_METRIC_OPTS, TEST_METRICS

sys.path.insert(0, str(Path(__file__).parent / "plugins"))


def _config(synth_dir, out, method="replay-context", **kw):
    metric_options: dict = {}
    for item in TEST_METRIC_OPTS:
        name, _, rest = item.partition(".")
        metric_options.setdefault(name, {}).update(parse_options([rest]))
    return RunConfig(
        method=method, dataset=f"synthetic:{synth_dir}", out=out, metrics=TEST_METRICS.split(","),
        metric_options=metric_options, device="cpu", **kw,
    )


def _mean(summary, key):
    return float(np.mean([r["metrics"][key] for r in summary.records if r["status"] == "ok"]))


@pytest.fixture(scope="module")
def sanity_runs(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return {m: Harness(_config(synth_dir, out / m, m)).run(progress=False) for m in ("oracle", "replay-context", "repeat-last")}


def test_oracle_scores_every_metric_at_its_best_value(sanity_runs):
    s = sanity_runs["oracle"]
    assert s.ok == 3 and s.failed == 0
    key_info = RunDir(s.run_dir).manifest()["key_info"]
    checked = 0
    for key, info in key_info.items():
        if info.get("best") is None or key.startswith("corr_"):
            continue  # correspondence compares with the context: imperfect even for the oracle
        assert _mean(s, key) == pytest.approx(info["best"], abs=1e-4), key
        checked += 1
    assert checked >= 6
    assert _mean(s, "psnr") >= 60


def test_replay_context_remembers_better_than_repeat_last(sanity_runs):
    replay, repeat = sanity_runs["replay-context"], sanity_runs["repeat-last"]
    assert _mean(replay, "psnr") > _mean(repeat, "psnr") + 3
    assert _mean(replay, "lpips") < _mean(repeat, "lpips")
    assert _mean(replay, "bestmatch_lpips") < _mean(repeat, "bestmatch_lpips")


def test_records_carry_timings_memory_per_frame_values_and_previews(sanity_runs):
    s = sanity_runs["replay-context"]
    r = s.records[0]
    assert r["num_target"] == 24 and r["switch_frame"] == 129
    assert len(r["timing"]["block_s"]) == 2 and r["timing"]["fps"] > 0
    assert r["memory"]["kv_bytes_end"] == 129 * 3 * 64 * 112 * 4  # float32 context frames held
    assert len(r["per_frame"]["psnr"]) == 24
    assert len(r["extra"]["bestmatch_indices"]) == 24
    assert len(r["extra"]["seconds_since_leave"]) == 24
    assert r["method_extras"] == {"mirror_source": "annotation:turnaround_frame", "turnaround_frame": 81.0}
    with np.load(s.run_dir / r["preview"], allow_pickle=False) as z:
        assert z["target"].shape == z["generated"].shape and z["target"].dtype == np.uint8


def test_failures_are_recorded_per_sample_and_the_run_goes_on(synth_dir, tmp_path):
    s = Harness(_config(synth_dir, tmp_path / "r", "magbench_test_methods:Troublemaker")).run(progress=False)
    by_id = {r["sample_id"]: r for r in s.records}
    assert s.ok == 1 and s.failed == 2
    assert "boom in generate" in by_id["synthetic_000_pan"]["error"]
    assert "NaN" in by_id["synthetic_001_tilt"]["error"]
    assert by_id["synthetic_002_dolly"]["status"] == "ok"


def test_wrong_block_shape_is_a_recorded_failure_naming_the_shape(synth_dir, tmp_path):
    s = Harness(_config(synth_dir, tmp_path / "r", "magbench_test_methods:WrongShape")).run(progress=False)
    assert s.failed == 3 and "(24, 3, 8, 8)" in s.records[0]["error"]


def test_rerun_skips_finished_samples(synth_dir, tmp_path):
    first = Harness(_config(synth_dir, tmp_path / "r", limit=1)).run(progress=False)
    assert first.ok == 1
    second = Harness(_config(synth_dir, tmp_path / "r")).run(progress=False)
    assert second.done_before == 1 and second.ok == 3
    assert len(RunDir(tmp_path / "r").records()) == 3


def test_run_folder_written_with_another_config_is_refused(synth_dir, tmp_path):
    Harness(_config(synth_dir, tmp_path / "r", limit=1)).run(progress=False)
    with pytest.raises(RunConfigMismatchError, match="seed"):
        Harness(_config(synth_dir, tmp_path / "r", limit=1, seed=7)).run(progress=False)


def test_save_videos_writes_the_generated_target_segment(synth_dir, tmp_path):
    from magbench.data.video_io import read_video

    s = Harness(_config(synth_dir, tmp_path / "r", limit=1, save_videos=True)).run(progress=False)
    video = read_video(tmp_path / "r" / s.records[0]["video"])
    assert video.shape == (24, 64, 112, 3)


def test_sample_seed_depends_on_the_sample_not_its_position():
    assert sample_seed(0, "a") == sample_seed(0, "a") != sample_seed(0, "b")
    assert sample_seed(1, "a") != sample_seed(0, "a")


def test_bad_method_option_is_a_clear_error(synth_dir, tmp_path):
    with pytest.raises(MagbenchError):
        parse_options(["novalue"])


def test_default_metrics_with_missing_weights_are_skipped_and_reported(synth_dir, tmp_path):
    cfg = RunConfig(method="replay-context", dataset=f"synthetic:{synth_dir}", out=tmp_path / "r", device="cpu", limit=1)
    h = Harness(cfg)
    assert "lpips" in h.skipped_metrics and "magbench download --metrics" in h.skipped_metrics["lpips"]
    s = h.run(progress=False)
    assert "psnr" in s.records[0]["metrics"] and "lpips" not in s.records[0]["metrics"]
    assert "lpips" in RunDir(tmp_path / "r").manifest()["skipped_metrics"]


def test_metric_asked_for_by_name_without_weights_fails_before_any_work(synth_dir, tmp_path):
    from magbench.errors import MissingWeightsError

    cfg = RunConfig(method="replay-context", dataset=f"synthetic:{synth_dir}", out=tmp_path / "r", device="cpu", metrics=["lpips"])
    with pytest.raises(MissingWeightsError, match="magbench download --metrics"):
        Harness(cfg)
    assert not (tmp_path / "r").exists()
