import json
import sys
from pathlib import Path

import numpy as np
import pytest

from magbench.errors import MagbenchError, RunConfigMismatchError
from magbench.cli import parse_options
from magbench.harness import Harness, RunConfig, sample_seed
from magbench.store import RunDir

from conftest import TEST_METRIC_OPTS, TEST_METRICS

sys.path.insert(0, str(Path(__file__).parent / "plugins"))


def _config(synth_dir, out, method="replay-context", metrics=("psnr",), **kw):
    """A run of the synthetic set on the CPU; PSNR only unless a test needs more (the full test
    set with its random-weight LPIPS backbones is paid once, by ``sanity_runs``)."""
    metric_options: dict = {}
    for item in TEST_METRIC_OPTS:
        name, _, rest = item.partition(".")
        metric_options.setdefault(name, {}).update(parse_options([rest]))
    return RunConfig(
        method=method, dataset=f"synthetic:{synth_dir}", out=out, metrics=list(metrics),
        metric_options=metric_options, device="cpu", **kw,
    )


def _mean(summary, key):
    return float(np.mean([r.metrics[key] for r in summary.records if r.ok]))


@pytest.fixture(scope="module")
def sanity_runs(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    full = TEST_METRICS.split(",")
    return {m: Harness(_config(synth_dir, out / m, m, metrics=full)).run(progress=False) for m in ("oracle", "replay-context", "repeat-last")}


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
    assert r.part.num_target == 24 and r.part.switch_frame == 129
    assert len(r.timing.block_s) == 2 and r.timing.fps > 0
    assert r.memory.kv_bytes_end == 129 * 3 * 64 * 112 * 4  # float32 context frames held
    assert len(r.per_frame["psnr"]) == 24
    assert len(r.extra["bestmatch_indices"]) == 24
    assert len(r.extra["seconds_since_leave"]) == 24
    assert r.method_extras == {"mirror_source": "annotation:turnaround_frame", "turnaround_frame": 81.0}
    with np.load(s.run_dir / r.preview, allow_pickle=False) as z:
        assert z["target"].shape == z["generated"].shape and z["target"].dtype == np.uint8


def test_failures_are_recorded_per_sample_and_the_run_goes_on(synth_dir, tmp_path):
    s = Harness(_config(synth_dir, tmp_path / "r", "magbench_test_methods:Troublemaker")).run(progress=False)
    by_id = {r.sample_id: r for r in s.records}
    assert s.ok == 1 and s.failed == 2
    assert "boom in generate" in by_id["synthetic_000_pan"].error
    assert "NaN" in by_id["synthetic_001_tilt"].error
    assert by_id["synthetic_002_dolly"].status == "ok"


def test_wrong_block_shape_is_a_recorded_failure_naming_the_shape(synth_dir, tmp_path):
    s = Harness(_config(synth_dir, tmp_path / "r", "magbench_test_methods:WrongShape")).run(progress=False)
    assert s.failed == 3 and "(24, 3, 8, 8)" in s.records[0].error


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
    video = read_video(tmp_path / "r" / s.records[0].video)
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
    assert "psnr" in s.records[0].metrics and "lpips" not in s.records[0].metrics
    assert "lpips" in RunDir(tmp_path / "r").manifest()["skipped_metrics"]


def test_metric_asked_for_by_name_without_weights_fails_before_any_work(synth_dir, tmp_path):
    from magbench.errors import MissingWeightsError

    cfg = RunConfig(method="replay-context", dataset=f"synthetic:{synth_dir}", out=tmp_path / "r", device="cpu", metrics=["lpips"])
    with pytest.raises(MissingWeightsError, match="magbench download --metrics"):
        Harness(cfg)
    assert not (tmp_path / "r").exists()


def _mag_config(synth_dir, tmp_path, **kw):
    return RunConfig(
        method="mag", method_options={"config": "tiny", "random_weights": True}, dataset=f"synthetic:{synth_dir}",
        out=tmp_path / "mag", metrics=["psnr"], device="cpu", **kw,
    )


def test_manifest_of_a_tiny_mag_run_names_every_resolved_option_and_its_memory_before_load(synth_dir, tmp_path, monkeypatch):
    from magbench.baselines.wan.methods import MagMethod

    h = Harness(_mag_config(synth_dir, tmp_path))
    method = h.manifest()["config"]["method"]
    assert method["name"] == "mag"
    assert method["options"]["slots"] == 21 and method["options"]["sink_frames"] == 2
    assert method["options"]["use_prompt"] is True and method["options"]["config"] == "tiny"
    assert method["memory"]["policy"] == "compressed" and method["memory"]["slots"] == 21
    assert method["memory"]["sink_frames"] == 2
    assert not hasattr(h.method, "generator"), "described from the options, nothing loaded"

    before = h.manifest()["fingerprint"]
    from dataclasses import dataclass

    from magbench.baselines.wan.methods import MagOptions
    from magbench.options import option

    @dataclass(frozen=True)
    class Changed(MagOptions):  # a default changed in code
        slots: int = option(20, ge=1)

    monkeypatch.setattr(MagMethod, "Options", Changed)
    assert Harness(_mag_config(synth_dir, tmp_path)).manifest()["fingerprint"] != before


def test_fingerprint_covers_the_protocol_switch_fraction_and_memory_source(synth_dir, tmp_path):
    from magbench.protocol import ReplayProtocol

    fp = lambda **p: Harness(_config(synth_dir, tmp_path / "r", protocol=ReplayProtocol(**p))).manifest()["fingerprint"]  # noqa: E731
    assert len({fp(), fp(switch_fraction=0.5), fp(memory_source="ground-truth")}) == 3


def test_unknown_method_option_names_the_known_ones(synth_dir, tmp_path):
    with pytest.raises(MagbenchError, match="unknown option.*slotz.*known:.*slots"):
        Harness(RunConfig(method="mag", method_options={"slotz": 3}, dataset=f"synthetic:{synth_dir}", device="cpu"))


# -- honest timing ---------------------------------------------------------------------------------
def _timed_run(synth_dir, tmp_path, method):
    import magbench_test_methods as plugins

    cfg = _config(synth_dir, tmp_path / method, f"magbench_test_methods:{method}", limit=1)
    return Harness(cfg, clock=plugins.CLOCK).run(progress=False).records[0].timing.__dict__


def test_work_moved_into_reset_memorize_or_memory_bytes_gains_no_end_to_end_fps(synth_dir, tmp_path):
    honest = _timed_run(synth_dir, tmp_path, "HonestWorker")
    assert honest["e2e_fps"] == pytest.approx(honest["fps"]) == pytest.approx(100.0)  # 0.01 s a frame
    for cheat in ("MemorizeCheat", "ResetCheat", "MemoryBytesCheat"):
        t = _timed_run(synth_dir, tmp_path, cheat)
        assert t["e2e_fps"] <= honest["e2e_fps"] * (1 + 1e-9), cheat
        # What the generation FPS alone shows: better, or no generation time at all (None).
        assert t["fps"] is None or t["fps"] > honest["fps"], cheat
        assert t["method_s"] == pytest.approx(t["reset_s"] + t["memorize_s"] + t["generate_s"] + t["memory_bytes_s"])
    assert _timed_run(synth_dir, tmp_path, "MemoryBytesCheat")["memory_bytes_s"] == pytest.approx(0.12)


def test_every_method_call_is_timed_and_reported_to_the_stage_hook(synth_dir, tmp_path):
    import magbench_test_methods as plugins

    seen: list[str] = []
    cfg = _config(synth_dir, tmp_path / "r", "magbench_test_methods:HonestWorker", limit=1)
    Harness(cfg, clock=plugins.CLOCK, stage_hook=lambda stage, s: seen.append(stage)).run(progress=False)
    for stage in ("load", "warmup", "input", "reset", "memorize", "block", "memory_bytes", "score", "save", "sample"):
        assert stage in seen, stage
    assert seen.count("block") == 2 and seen.index("warmup") < seen.index("reset")


def test_a_short_untimed_sample_warms_the_method_up_before_the_first_timed_one(synth_dir, tmp_path):
    import magbench_test_methods as plugins

    plugins.CallLog.calls.clear()
    cfg = _config(synth_dir, tmp_path / "r", "magbench_test_methods:CallLog", limit=2)
    s = Harness(cfg).run(progress=False)
    assert [c for c in plugins.CallLog.calls if c[0] == "generate"] == [
        ("generate", "synthetic_000_pan", 12), ("generate", "synthetic_000_pan", 24), ("generate", "synthetic_001_tilt", 24),
    ]
    assert s.warmup["kind"] == "sample" and s.warmup["sample_id"] == "synthetic_000_pan"
    assert all(r.timing.warmup == "sample" for r in s.records) and len(s.records) == 2
    assert "warm" in RunDir(s.run_dir).manifest()["warmup"]


def test_a_method_with_its_own_warmup_hook_is_warmed_up_by_it(synth_dir, tmp_path):
    import magbench_test_methods as plugins

    plugins.CallLog.calls.clear()
    cfg = _config(synth_dir, tmp_path / "r", "magbench_test_methods:WarmsItself", limit=1)
    s = Harness(cfg).run(progress=False)
    assert plugins.CallLog.calls[0] == ("warmup", "synthetic_000_pan", 24)
    assert [c[0] for c in plugins.CallLog.calls[1:]] == ["reset", "generate"] and s.warmup["kind"] == "hook"


def test_a_fatal_error_is_recorded_in_the_run_folder(synth_dir, tmp_path):
    def boom(record):
        raise OSError("disk full")

    cfg = _config(synth_dir, tmp_path / "r", limit=2)
    with pytest.raises(OSError):
        Harness(cfg).run(progress=False, on_sample=boom)
    fatal = json.loads((tmp_path / "r" / "fatal.json").read_text())
    assert fatal["error"] == "disk full" and fatal["error_type"] == "OSError"
    assert "boom" in fatal["traceback"] and fatal["at"]
    assert len(RunDir(tmp_path / "r").records()) == 1  # what finished is kept
    Harness(cfg).run(progress=False)  # a later run that works clears it
    assert not (tmp_path / "r" / "fatal.json").exists()


def test_kept_frames_are_the_scored_uint8_frames(sanity_runs):
    from magbench.store import load_frames

    s = sanity_runs["replay-context"]
    r = s.records[0]
    frames = load_frames(s.run_dir, r.frames)
    assert frames.dtype == np.uint8 and frames.shape == (24, 64, 112, 3)


def test_a_samples_frames_do_not_depend_on_the_warm_up_or_what_ran_before(synth_dir, tmp_path):
    """Run A: pan then tilt (warm-up on pan); run B: tilt alone (warm-up on tilt). A stateful
    method (tiny self-forcing, random weights) gives tilt bit-identical frames in both."""
    from magbench.store import load_frames

    def run(out, which):
        cfg = RunConfig(
            method="self-forcing", dataset=f"synthetic:{synth_dir}", out=out, device="cpu",
            method_options={"config": "tiny", "random_weights": True}, metrics=["psnr"],
        )
        h = Harness(cfg)
        recs = h.run(samples=[h.selected_samples()[i] for i in which], progress=False).records
        return {r.sample_id: r for r in recs}

    a, b = run(tmp_path / "a", [0, 1]), run(tmp_path / "b", [1])
    tilt = "synthetic_001_tilt"
    assert a[tilt].status == b[tilt].status == "ok"
    np.testing.assert_array_equal(load_frames(tmp_path / "a", a[tilt].frames), load_frames(tmp_path / "b", b[tilt].frames))
