import time
from pathlib import Path

import numpy as np
import pytest
import torch

from magbench.data import load_dataset
from magbench.data.dataset import load_csv_dataset
from magbench.data.synthetic import SynthConfig, correspondences, generate, make_scene, render, render_videos, trajectory
from magbench.data.video_io import read_video, resize_frames, write_video
from magbench.errors import DatasetError, MissingWeightsError, SampleError
from magbench.protocol import ReplayProtocol


def test_synthetic_set_is_written_in_the_magbench_schema(synth_dir):
    ds = load_csv_dataset(synth_dir)
    assert len(ds) == 3
    s = ds.samples[0]
    frames = s.load_frames()
    assert frames.shape == (160, 64, 112, 3) and frames.dtype == np.uint8
    ann = s.annotations()
    assert len(ann["poses"]) == len(ann["correspondences"]) == 160


def test_synthetic_target_frames_only_show_views_seen_in_the_context(synth_dir):
    ds = load_csv_dataset(synth_dir)
    split = ReplayProtocol().split(160, 10.0)
    for s in ds.samples:
        corr = s.annotations()["correspondences"]
        assert all(corr[t] < split.switch for t in range(split.switch, split.kept))
        assert corr[split.kept - 1] == 0  # home again on the last kept frame


def test_synthetic_turnaround_is_before_the_switch_with_few_static_frames(synth_dir):
    split = ReplayProtocol().split(160, 10.0)
    for s in load_csv_dataset(synth_dir).samples:
        ann = s.annotations()
        turn, corr = ann["turnaround_frame"], ann["correspondences"]
        assert ann["leave_frame"] <= 16 and turn < split.switch - 24  # the general case, not the switch
        assert all(corr[t] == corr[2 * turn - t] for t in range(turn, split.kept))  # mirrored at the turn
        assert sum(c == 0 for c in corr[: split.switch]) == ann["leave_frame"]  # static home frames


def test_synthetic_turnaround_is_configurable_and_checked(tmp_path):
    old = generate(tmp_path / "old", SynthConfig(n=1, height=32, width=48, turnaround=None)).samples[0].annotations()
    assert old["turnaround_frame"] == 128 and old["leave_frame"] == 105  # at the switch
    with pytest.raises(DatasetError, match="before the switch"):
        generate(tmp_path / "late", SynthConfig(n=1, height=32, width=48, turnaround=0.9))
    with pytest.raises(DatasetError, match="turnaround above 0.5"):
        generate(tmp_path / "early", SynthConfig(n=1, height=32, width=48, turnaround=0.3))


def test_rendered_corresponding_frames_are_identical_before_compression():
    rng = np.random.default_rng(0)
    scene = torch.from_numpy(make_scene(rng, 120, 150)).permute(2, 0, 1)[None]
    poses = trajectory("dolly", 160, 11, 81, 153)
    frames = render(scene, poses, 32, 48)
    corr = correspondences(poses)
    for t in range(82, 153):
        assert corr[t] == (0 if 162 - t < 11 else 162 - t)
        np.testing.assert_array_equal(frames[t], frames[corr[t]])
    assert np.abs(frames[81].astype(int) - frames[0].astype(int)).mean() > 10  # the camera did leave


def test_synthetic_generation_is_deterministic_by_seed(tmp_path):
    # The rendered frames are a function of the config, bit for bit; the written video holds them
    # to within H.264's error at crf 10 (encoder decisions are not promised bit for bit).
    cfg = SynthConfig(n=1, height=32, width=48, seconds=8.0, seed=3)
    (_, _, a), = render_videos(cfg)
    (_, _, b), = render_videos(cfg)
    (_, _, c), = render_videos(SynthConfig(n=1, height=32, width=48, seconds=8.0, seed=4))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5
    written = generate(tmp_path / "a", cfg).samples[0].load_frames()
    mse = ((written.astype(np.float64) - a) ** 2).mean()
    assert written.shape == a.shape and 10 * np.log10(255**2 / mse) > 25  # 29 dB: 4:2:0 chroma at 32x48


def test_too_short_synthetic_duration_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="--seconds"):
        generate(tmp_path, SynthConfig(n=1, height=32, width=48, seconds=4.0))


def test_csv_missing_a_column_names_the_column_and_the_file(tmp_path):
    (tmp_path / "bench.csv").write_text("video_path,raw_caption\na.mp4,hello\n")
    with pytest.raises(DatasetError, match=r"bench\.csv.*duration\(sec\)"):
        load_csv_dataset(tmp_path)


def test_csv_with_bad_duration_names_the_line(tmp_path):
    (tmp_path / "bench.csv").write_text("video_path,raw_caption,duration(sec)\na.mp4,hi,ten\n")
    with pytest.raises(DatasetError, match=r"bench\.csv:2"):
        load_csv_dataset(tmp_path)


def test_missing_and_corrupt_videos_fail_per_sample_with_path_and_reason(tmp_path):
    (tmp_path / "bench.csv").write_text("video_path,raw_caption,duration(sec)\ngone.mp4,a,10\nbad.mp4,b,10\n")
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    ds = load_csv_dataset(tmp_path)
    with pytest.raises(SampleError, match="gone.mp4.*not found"):
        ds.samples[0].load_frames()
    with pytest.raises(SampleError, match="bad.mp4.*cannot decode"):
        ds.samples[1].load_frames()


def test_pyav_and_decord_decode_the_same_frames(tmp_path):
    decord = pytest.importorskip("decord")  # noqa: F841
    from magbench.data.video_io import _read_decord, _read_pyav

    frames = (np.random.default_rng(0).uniform(0, 255, (13, 64, 112, 3))).astype(np.uint8)
    write_video(tmp_path / "v.mp4", frames)
    a, b = _read_decord(tmp_path / "v.mp4", None), _read_pyav(tmp_path / "v.mp4", None)
    assert a.shape == b.shape == (13, 64, 112, 3)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0


def test_resize_policy_covers_then_centre_crops():
    x = torch.zeros(1, 3, 40, 100)
    x[..., 40:60] = 1.0  # a bright vertical band in the centre
    y = resize_frames(x, (20, 20))
    assert y.shape == (1, 3, 20, 20)
    assert y[..., 10].mean() > 0.9 and y[..., 0].mean() < 0.1
    assert resize_frames(x, None) is x and resize_frames(x, (40, 100)) is x


def test_unknown_dataset_name_suggests_the_closest():
    with pytest.raises(Exception, match="synthetic"):
        load_dataset("synthetc")


def test_official_magbench_offline_without_local_copy_fails_at_once_naming_the_command(monkeypatch):
    monkeypatch.delenv("MAGBENCH_DATA", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(MissingWeightsError, match="magbench download --dataset magbench"):
        load_dataset("magbench")
    assert time.perf_counter() - t0 < 2.0


def test_official_magbench_loads_from_a_local_copy(monkeypatch, synth_dir):
    monkeypatch.setenv("MAGBENCH_DATA", str(synth_dir))
    ds = load_dataset("magbench")
    assert ds.id == "magbench" and len(ds) == 3


def test_render_of_a_scene_does_not_depend_on_scenes_rendered_before():
    # A zoomed-out view samples a blurred copy of the scene; that copy must be the scene's own,
    # whatever was rendered earlier in the process (an id()-keyed cache once reused a freed scene's).
    poses = np.array([[0.0, 0.0, 1.5], [0.1, 0.0, 1.5]])
    rng = np.random.default_rng(0)
    first = torch.from_numpy(make_scene(rng, 96, 144)).permute(2, 0, 1)[None].contiguous()
    second = torch.from_numpy(make_scene(rng, 96, 144)).permute(2, 0, 1)[None].contiguous()
    alone = render(second.clone(), poses, 32, 48)
    render(first, poses, 32, 48)
    # Free ``first`` and give ``second`` a chance to land at its address.
    del first
    reused = [second.clone() for _ in range(4)]
    for scene in reused:
        np.testing.assert_array_equal(render(scene, poses, 32, 48), alone)
