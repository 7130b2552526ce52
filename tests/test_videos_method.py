"""``--method videos:DIR``: videos made by someone else's code, scored as a method's output (issue
20). A run's own saved outputs, read back, give its metrics: exactly from a lossless container
(the kept ``.npz`` frames, a PNG sequence), within the codec's loss from its mp4 videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from magbench.harness import Harness, RunConfig
from magbench.store import RunDir

from test_cli import main

METRICS = ["psnr", "ssim", "lpips", "bestmatch"]
METRIC_OPTIONS = {"lpips": {"random_weights": True}, "bestmatch": {"random_weights": True}}
QUALITY = ("psnr", "ssim", "lpips", "bestmatch_lpips", "bestmatch_psnr", "bestmatch_ssim", "bestmatch_ordered_psnr")


def _run(synth_dir, out: Path, method: str, **kw):
    cfg = RunConfig(method=method, dataset=f"synthetic:{synth_dir}", out=out, metrics=METRICS,
                    metric_options=METRIC_OPTIONS, device="cpu", limit=2, **kw)
    return Harness(cfg).run(progress=False)


def _metrics(summary) -> dict[str, dict[str, float]]:
    return {r.sample_id: r.metrics for r in summary.records}


@pytest.fixture(scope="module")
def source(synth_dir, tmp_path_factory):
    """shuffle-context on two samples, its frames kept (npz) and its videos saved (mp4)."""
    out = tmp_path_factory.mktemp("videos") / "shuffle"
    s = _run(synth_dir, out, "shuffle-context", save_videos=True)
    assert s.ok == 2
    return out, s


def test_kept_npz_frames_scored_as_videos_give_the_methods_metrics_exactly(synth_dir, source, tmp_path):
    run, s = source
    got = _run(synth_dir, tmp_path / "r", f"videos:{run / 'frames'}")
    assert got.ok == 2 and _metrics(got) == _metrics(s)
    assert all(r.method_extras["video_span"] == "target" for r in got.records)


def test_saved_mp4_videos_scored_as_videos_give_the_methods_metrics_within_the_codecs_loss(synth_dir, source, tmp_path):
    run, s = source
    got = _metrics(_run(synth_dir, tmp_path / "r", f"videos:{run / 'videos'}"))
    want = _metrics(s)
    for sid, m in want.items():
        for key in QUALITY:
            a, b = m[key], got[sid][key]
            # H.264 at crf 10 (write_video) on 64x112 frames: a fraction of a dB where the frames
            # differ a lot from the truth; up to a few dB where they match it to ~43 dB.
            tol = {"psnr": 1.0, "bestmatch_psnr": 6.0, "bestmatch_ordered_psnr": 1.5}.get(key, 0.03)
            assert abs(a - b) <= tol, (sid, key, a, b)
            assert a != b or key.endswith("lpips"), "an mp4 is lossy: some difference is expected"


def test_a_folder_of_png_frames_per_sample_is_scored_losslessly(synth_dir, source, tmp_path):
    run, s = source
    for rec in s.records:
        with np.load(run / rec.frames) as z:
            frames = z["generated"]
        folder = tmp_path / "pngs" / rec.sample_id
        folder.mkdir(parents=True)
        for i, f in enumerate(frames):
            Image.fromarray(f).save(folder / f"{i:04d}.png")
    got = _run(synth_dir, tmp_path / "r", f"videos:{tmp_path / 'pngs'}")
    assert _metrics(got) == _metrics(s)


def test_a_video_of_the_whole_clip_is_detected_and_its_target_segment_scored(synth_dir, source, tmp_path):
    run, s = source
    folder = tmp_path / "whole"
    folder.mkdir()
    for rec in s.records:
        with np.load(run / rec.frames) as z:
            target = z["generated"]
        context = np.zeros((rec.part.num_context, *target.shape[1:]), np.uint8)  # whatever a generator repeats
        np.savez(folder / f"{rec.sample_id}.npz", generated=np.concatenate([context, target]))
    got = _run(synth_dir, tmp_path / "r", f"videos:{folder}")
    assert _metrics(got) == _metrics(s)
    assert {r.method_extras["video_span"] for r in got.records} == {"whole clip"}
    assert got.records[0].method_extras["video_frames"] == got.records[0].part.num_context + got.records[0].part.num_target


def test_a_video_with_the_wrong_frame_count_is_a_sample_failure_naming_the_file_and_both_counts(synth_dir, source, tmp_path):
    run, s = source
    folder = tmp_path / "short"
    shutil.copytree(run / "frames", folder)
    first = s.records[0]
    with np.load(folder / f"{first.sample_id}.npz") as z:
        np.savez(folder / f"{first.sample_id}.npz", generated=z["generated"][:-5])
    got = {r.sample_id: r for r in _run(synth_dir, tmp_path / "r", f"videos:{folder}").records}
    bad = got[first.sample_id]
    assert not bad.ok and f"{folder / (first.sample_id + '.npz')}: 19 frames" in bad.error
    assert "target segment (24 frames) or its whole kept clip (153" in bad.error
    assert got[s.records[1].sample_id].ok


def test_a_video_of_another_size_is_a_sample_failure_naming_the_file_and_the_resolution_option(synth_dir, source, tmp_path):
    run, s = source
    folder = tmp_path / "big"
    folder.mkdir()
    for rec in s.records:
        np.savez(folder / f"{rec.sample_id}.npz", generated=np.zeros((24, 32, 56, 3), np.uint8))
    rec = _run(synth_dir, tmp_path / "r", f"videos:{folder}").records[0]
    assert not rec.ok and f"{folder / (rec.sample_id + '.npz')}: frames are 32x56 but the ground truth is 64x112" in rec.error
    assert "--opt resolution=32x56" in rec.error
    ok = _run(synth_dir, tmp_path / "r2", f"videos:{folder}", method_options={"resolution": [32, 56]})
    assert ok.ok == 2  # the ground truth resized to the videos' size, as for a method of that resolution


def test_records_say_timing_was_not_measured_and_the_leaderboard_shows_no_speed_for_them(synth_dir, source, tmp_path, capsys):
    run, _ = source
    out = tmp_path / "runs" / "videos"
    _run(synth_dir, out, f"videos:{run / 'frames'}")
    line = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert line["timing"]["measured"] is False and line["timing"]["fps"] is None and line["timing"]["e2e_fps"] is None
    code, stdout, stderr = main("leaderboard", out, capsys=capsys)
    assert code == 0 and "e2e FPS" not in stdout and "gen FPS" not in stdout
    assert "Not timed: videos scored videos made elsewhere" in " ".join(stderr.split())
    assert RunDir(out).manifest()["config"]["method"]["options"]["dir"] == str((run / "frames").resolve())


def test_a_videos_folder_that_does_not_exist_is_one_line_before_any_work(tmp_path, capsys):
    code, _, err = main("run", "--method", f"videos:{tmp_path / 'nowhere'}", "--out", tmp_path / "r", capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nowhere" in err and not (tmp_path / "r").exists()
