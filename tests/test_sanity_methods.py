"""Sanity methods: the replay floor mirrors at the clip's turnaround (annotation, frames, switch)
and records which; the frozen and shuffled probes; all on clips built here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from magbench.baselines.sanity import HoldFirst, RepeatLast, ReplayContext, ShuffleContext, mirror_axis
from magbench.data.synthetic import make_scene, render
from magbench.method import SampleInfo
from magbench.options import OptionError
from magbench.metrics.common import psnr_frames

T, SWITCH, KEPT = 160, 129, 153  # a 10 s clip under the default protocol


def _pan(num_frames: int, distance: float = 1.2) -> np.ndarray:
    poses = np.zeros((num_frames, 3))
    poses[:, 0] = np.linspace(0.0, distance, num_frames)
    poses[:, 2] = 1.0
    return poses


@pytest.fixture(scope="module")
def palindrome() -> tuple[torch.Tensor, np.ndarray]:
    """MAG-Bench style: a clip followed by its reverse playback (T frames, frame t == T-1-t)."""
    scene = torch.from_numpy(make_scene(np.random.default_rng(0), 220, 340)).permute(2, 0, 1)[None]
    half = _pan(T // 2)
    poses = np.concatenate([half, half[::-1]])
    frames = render(scene, poses, 32, 48)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255, poses


def _run(method, frames: torch.Tensor, annotations=None) -> torch.Tensor:
    method.load("cpu")
    method.reset(SampleInfo("clip", "", 3, frames.shape[-2], frames.shape[-1], 16.0, SWITCH, KEPT - SWITCH,
                            annotations=annotations))
    method.memorize(frames[:SWITCH])
    return torch.cat(list(method.generate(KEPT - SWITCH)))


def test_mirror_axis_of_a_palindrome_by_hand():
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0], [3.0], [1.0], [0.0], [5.0]])
    assert mirror_axis(x, min_pairs=2, shift=1) == (6, 0.0)  # frame t mirrors frame 6 - t


def test_a_static_stretch_is_not_taken_for_a_turnaround():
    # 10 still frames, then a steady move: every axis inside the still part mirrors it exactly
    x = torch.cat([torch.zeros(10, 1), torch.arange(1, 11, dtype=torch.float64)[:, None]])
    axis, ratio = mirror_axis(x, min_pairs=3, shift=2)
    assert ratio > 0.25
    still = torch.zeros(12, 1)
    assert mirror_axis(still)[1] == 1.0


def test_replay_mirrors_a_palindromic_clip_at_its_turnaround_found_from_the_frames(palindrome):
    frames, _ = palindrome
    target = frames[SWITCH:KEPT]
    replay = ReplayContext()
    out = _run(replay, frames)
    extras = replay.sample_extras()
    assert extras["mirror_source"] == "frames" and extras["turnaround_frame"] == (T - 1) / 2
    torch.testing.assert_close(out, target)  # target frame t is context frame T-1-t
    repeat = _run(RepeatLast(), frames)
    assert psnr_frames(out, target).mean() > psnr_frames(repeat, target).mean() + 10


def test_mirroring_at_the_switch_walks_away_again_on_a_palindrome(palindrome):
    frames, _ = palindrome
    target = frames[SWITCH:KEPT]
    at_switch = ReplayContext(mirror="switch")
    out = _run(at_switch, frames)
    assert at_switch.sample_extras() == {"mirror_source": "switch", "turnaround_frame": SWITCH - 1.0}
    assert psnr_frames(out, target).mean() < psnr_frames(_run(RepeatLast(), frames), target).mean()


def test_annotation_comes_first_turnaround_frame_then_poses(palindrome):
    frames, poses = palindrome
    replay = ReplayContext()
    _run(replay, frames, annotations={"turnaround_frame": 70})
    assert replay.sample_extras() == {"mirror_source": "annotation:turnaround_frame", "turnaround_frame": 70.0}
    out = _run(replay, frames, annotations={"poses": poses.tolist(), "leave_frame": 0})
    assert replay.sample_extras() == {"mirror_source": "annotation:poses", "turnaround_frame": (T - 1) / 2}
    torch.testing.assert_close(out, frames[SWITCH:KEPT])


def test_a_clip_that_never_turns_around_falls_back_to_the_switch():
    scene = torch.from_numpy(make_scene(np.random.default_rng(1), 220, 340)).permute(2, 0, 1)[None]
    frames = torch.from_numpy(render(scene, _pan(T, 2.5), 32, 48)).permute(0, 3, 1, 2).float() / 255
    replay = ReplayContext()
    _run(replay, frames)
    assert replay.sample_extras()["mirror_source"] == "switch"
    with pytest.raises(OptionError, match="mirror='sideways' is not allowed; expected one of auto, annotation, frames, switch"):
        ReplayContext(mirror="sideways")


def test_probes_freeze_or_shuffle_the_replay(palindrome):
    frames, _ = palindrome
    first = _run(HoldFirst(), frames)
    assert torch.equal(first, frames[:1].expand_as(first))
    replay, shuffled = _run(ReplayContext(), frames), _run(ShuffleContext(), frames)
    order = [int(torch.nonzero((replay == f).flatten(1).all(1))[0]) for f in shuffled]
    assert sorted(order) == list(range(KEPT - SWITCH)) and order != sorted(order)
    assert torch.equal(shuffled, _run(ShuffleContext(), frames))  # seeded by the sample


def test_bounds_name_only_the_metrics_a_sanity_method_bounds():
    from magbench.baselines.sanity import Oracle

    assert "corr_*" not in Oracle.bounds and Oracle.bounds["psnr"] == "ceiling"
    assert ReplayContext.bounds["corr_*"] == "ceiling"
    assert "bestmatch_lpips" not in RepeatLast.bounds and "subject_consistency" not in HoldFirst.bounds


def test_through_the_harness_replay_beats_repeat_last_on_a_palindromic_mp4(palindrome, tmp_path):
    from magbench.data.video_io import write_video
    from magbench.harness import Harness, RunConfig

    frames, _ = palindrome
    write_video(tmp_path / "data" / "clip.mp4", (frames.permute(0, 2, 3, 1) * 255).round().byte().numpy())
    (tmp_path / "data" / "bench.csv").write_text("video_path,raw_caption,duration(sec)\nclip.mp4,a clip and its reverse,10\n")
    runs = {m: Harness(RunConfig(method=m, dataset=f"csv:{tmp_path / 'data'}", out=tmp_path / m, metrics=["psnr"],
                                 device="cpu")).run(progress=False).records[0]
            for m in ("replay-context", "repeat-last")}
    replay = runs["replay-context"]
    assert replay.method_extras["mirror_source"] == "frames"  # no annotations: found in the frames
    assert replay.method_extras["turnaround_frame"] == (T - 1) / 2
    assert replay.metrics["psnr"] > runs["repeat-last"].metrics["psnr"] + 10
