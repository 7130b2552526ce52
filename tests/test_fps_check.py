"""The protocol's 16 fps is checked: container frame rate and frame count against the CSV duration."""

from fractions import Fraction

import numpy as np
import pytest

from magbench.data.dataset import check_video, load_csv_dataset
from magbench.data.video_io import read_video, resample_frames, video_fps, write_video
from magbench.errors import MagbenchError, SampleError
from magbench.protocol import ReplayProtocol


def _dataset(root, fps, seconds, csv_seconds=None, n_frames=None):
    """A csv: dataset of one video at ``fps`` lasting ``seconds``; the CSV says ``csv_seconds``."""
    n = n_frames or round(fps * seconds)
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 256, size=(n, 1, 1, 3), dtype=np.uint8), 32, axis=1)
    frames = np.repeat(frames, 48, axis=2)
    write_video(root / "videos" / "clip.mp4", frames, fps=fps)
    (root / "data.csv").write_text(
        f"video_path,raw_caption,duration(sec)\nclip.mp4,a room,{csv_seconds if csv_seconds is not None else seconds}\n"
    )
    return root


@pytest.fixture(scope="module")
def clip25(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("fps25"), fps=25, seconds=10)


def test_container_frame_rate_is_read_from_the_header(clip25, tmp_path):
    assert video_fps(clip25 / "videos" / "clip.mp4") == 25.0
    assert video_fps(tmp_path / "missing.mp4") is None


def test_25_fps_video_in_a_csv_dataset_is_rejected_naming_both_frame_rates(clip25):
    sample = load_csv_dataset(clip25).samples[0]
    record = {}
    with pytest.raises(SampleError, match=r"clip.mp4: container frame rate 25 fps, the protocol needs 16 fps.*--fps-policy resample"):
        sample.load_frames_checked(ReplayProtocol(), record)
    check = record["video_check"]
    assert check["flags"] == ["fps", "duration"] and check["action"] == "rejected"
    assert check["container_fps"] == 25.0 and check["decoded_frames"] == 250 and check["expected_frames"] == 160


def test_resample_policy_keeps_the_decoded_frame_nearest_in_time(clip25):
    sample = load_csv_dataset(clip25).samples[0]
    record = {}
    frames = sample.load_frames_checked(ReplayProtocol(fps_policy="resample"), record)
    decoded = read_video(clip25 / "videos" / "clip.mp4")
    # Independently: output frame i at time i/16 s shows the 25 fps frame k whose time k/25 is nearest.
    nearest = [min(range(250), key=lambda k: (abs(Fraction(k, 25) - Fraction(i, 16)), -k)) for i in range(160)]
    assert frames.shape[0] == 160
    np.testing.assert_array_equal(frames, decoded[nearest])
    check = record["video_check"]
    assert check["flags"] == ["fps"] and check["action"] == "resampled" and check["frames_used"] == 160
    # Split as a 10 s video at 16 fps would be: a quarter of it is the target.
    split = ReplayProtocol().split(frames.shape[0], sample.duration_sec)
    assert (split.switch, split.num_target) == (129, 24)


def test_accept_policy_uses_the_frames_as_they_are_and_flags_them(clip25):
    sample = load_csv_dataset(clip25).samples[0]
    record = {}
    frames = sample.load_frames_checked(ReplayProtocol(fps_policy="accept"), record)
    assert frames.shape[0] == 250
    assert record["video_check"]["action"] == "accepted" and record["video_check"]["flags"] == ["fps", "duration"]


def test_official_magbench_is_split_as_the_reference_whatever_its_containers_say(clip25):
    for policy in ("strict", "resample", "accept"):
        sample = load_csv_dataset(clip25, dataset_id="magbench", revision="local").samples[0]
        record = {}
        frames = sample.load_frames_checked(ReplayProtocol(fps_policy=policy), record)
        assert frames.shape[0] == 250  # exactly what the reference splits: every decoded frame
        assert record["video_check"]["action"] == "reference" and record["video_check"]["flags"] == ["fps", "duration"]


def test_16_fps_video_whose_csv_duration_disagrees_by_more_than_a_block_is_rejected(tmp_path):
    root = _dataset(tmp_path, fps=16, seconds=10, csv_seconds=8)  # 160 frames, the CSV says 128
    sample = load_csv_dataset(root).samples[0]
    for policy in ("strict", "resample"):
        with pytest.raises(SampleError, match="160 frames, but the CSV duration 8 s is 128 frames at 16 fps.*duration"):
            sample.load_frames_checked(ReplayProtocol(fps_policy=policy))
    assert sample.load_frames_checked(ReplayProtocol(fps_policy="accept")).shape[0] == 160


def test_check_by_hand():
    p = ReplayProtocol()
    ok = check_video(160, 16.0, 10.0, p)
    assert ok["flags"] == [] and ok["action"] == "none" and ok["frames_used"] == 160
    assert check_video(172, 16.0, 10.0, p)["flags"] == []  # within one block of 12 frames
    assert check_video(173, 16.0, 10.0, p)["flags"] == ["duration"]
    assert check_video(160, None, 10.0, p)["flags"] == []  # no rate in the container: frame count only
    assert check_video(160, 16000 / 1001, 10.0, p)["flags"] == []  # a rate stored as a fraction
    assert check_video(160, 15.9, 10.0, p)["flags"] == ["fps"]
    r = check_video(300, 30.0, 10.0, ReplayProtocol(fps_policy="resample"))
    assert r["action"] == "resampled" and r["frames_used"] == 160


def test_resample_frames_by_hand():
    x = np.arange(10)[:, None]
    np.testing.assert_array_equal(resample_frames(x, 32.0, 16.0)[:, 0], [0, 2, 4, 6, 8])
    # Upsampling: output i at i/16 s lies halfway between two 8 fps frames when odd; ties go later.
    np.testing.assert_array_equal(resample_frames(x, 8.0, 16.0)[:, 0], [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 9])
    np.testing.assert_array_equal(resample_frames(x, 16.0, 16.0), x)


def test_fps_policy_is_part_of_the_protocol_identity():
    assert ReplayProtocol().to_dict()["fps_policy"] == "strict"
    assert ReplayProtocol(fps_policy="resample").id == "magbench-replay-v1-fpsresample" != ReplayProtocol().id
    with pytest.raises(MagbenchError, match="--fps-policy lenient: choose one of strict, resample, accept"):
        ReplayProtocol(fps_policy="lenient")


def test_run_fails_the_25_fps_sample_naming_both_rates_or_resamples_it_when_asked(clip25, tmp_path):
    from magbench.harness import Harness, RunConfig
    from magbench.reports.leaderboard import build

    def run(policy):
        cfg = RunConfig(method="repeat-last", dataset=f"csv:{clip25}", out=tmp_path / policy, device="cpu",
                        metrics=["psnr"], protocol=ReplayProtocol(fps_policy=policy))
        return Harness(cfg).run(progress=False).records[0]

    strict = run("strict")
    assert strict.status == "failed" and "25 fps, the protocol needs 16 fps" in strict.error
    assert strict.part.video_check["action"] == "rejected"
    resampled = run("resample")
    assert resampled.status == "ok" and (resampled.part.num_context, resampled.part.num_target) == (129, 24)
    assert resampled.part.video_check["flags"] == ["fps"] and resampled.part.video_check["frames_used"] == 160
    lb = build([tmp_path])
    df = lb.frame.set_index("protocol")
    assert df.loc["magbench-replay-v1-fpsresample", "n_video_flags"] == 1
    assert df.loc["magbench-replay-v1", "status"] == "failed" and "25 fps" in df.loc["magbench-replay-v1", "cause"]
    assert any("1 sample(s) with video flags (clip: container frame rate 25 fps" in n and "resampled" in n for n in lb.notes)


def test_data_info_shows_the_container_frame_rate_and_the_check(clip25, monkeypatch):
    from rich.console import Console
    from typer.testing import CliRunner

    import magbench.cli
    from magbench.cli import app

    def info(*extra):
        console = Console(record=True, width=400)
        monkeypatch.setattr(magbench.cli, "console", console)
        res = CliRunner().invoke(app, ["data", "info", f"csv:{clip25}", *extra])
        assert res.exit_code == 0, res.output
        return " ".join(console.export_text().split())

    assert "│ 10 │ 25 │" in info() and "container frame rate 25 fps, the protocol needs 16 fps" in info()
    assert "│ 25 │ 160 │ 129 │ 24 │ resampled: container frame rate 25 fps" in info("--fps-policy", "resample")
