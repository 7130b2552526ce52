import math

import pytest

from magbench.errors import SampleError
from magbench.protocol import ReplayProtocol


def _reference_split(num_frames: int, duration: float):
    """The official rule, written out independently."""
    kept = (num_frames + 3) // 12 * 12 - 3
    s = math.floor(duration * 0.75 * 16.0)
    s = math.ceil((s + 3) / 12) * 12 - 3
    return kept, s


def test_split_matches_official_formula_for_every_duration_1_to_60_seconds():
    proto = ReplayProtocol()
    checked = rejected = 0
    for step in range(0, 1181):  # 1.00 s .. 60.00 s in 0.05 s steps
        duration = round(1.0 + 0.05 * step, 2)
        for num_frames in {int(round(duration * 16)), int(duration * 16) + 5}:
            kept, switch = _reference_split(num_frames, duration)
            if kept <= 9 or switch >= kept:
                with pytest.raises(SampleError):
                    proto.split(num_frames, duration)
                rejected += 1
                continue
            split = proto.split(num_frames, duration)
            assert (split.kept, split.switch) == (kept, switch), duration
            assert split.num_context + split.num_target == kept
            checked += 1
    assert checked > 1500 and rejected > 10


def test_split_of_a_ten_second_video_by_hand():
    # 160 frames: keep (163 // 12) * 12 - 3 = 153; floor(10*0.75*16)=120 -> ceil(123/12)*12-3 = 129
    split = ReplayProtocol().split(160, 10.0)
    assert (split.kept, split.switch, split.num_target) == (153, 129, 24)
    assert split.num_target % 12 == 0 and (split.switch + 3) % 12 == 0


def test_video_with_nine_frames_or_fewer_is_rejected_with_its_name():
    with pytest.raises(SampleError, match="clip.mp4.*more than 9"):
        ReplayProtocol().split(12, 0.5, name="clip.mp4")


def test_switch_not_before_end_is_rejected():
    # 5 s at 16 fps: keep 69, switch 69
    with pytest.raises(SampleError, match="switch frame 69"):
        ReplayProtocol().split(80, 5.0)


def test_other_switch_fraction_changes_the_split_and_the_protocol_id():
    p = ReplayProtocol(switch_fraction=0.5)
    assert p.split(160, 10.0).switch == math.ceil((80 + 3) / 12) * 12 - 3
    assert p.id != ReplayProtocol().id
