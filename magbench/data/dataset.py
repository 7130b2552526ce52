"""Datasets in the MAG-Bench schema: a CSV (``video_path``, ``raw_caption``, ``duration(sec)``)
beside a folder of mp4 files, with optional per-video annotations (camera poses and
correspondences) in ``annotations/<video stem>.json``.

Every dataset (the official one, a user's folder, the synthetic set) is read by this one loader,
so all code paths are shared.

The replay protocol assumes 16 fps. :meth:`VideoSample.load_frames_checked` checks each video
against it (container frame rate, frame count against the CSV duration), records the check in
the sample's record (``record["video_check"]``) and applies the protocol's ``fps_policy``; the
official MAG-Bench is split exactly as the reference does whatever its containers say.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from magbench.data.video_io import read_video, resample_frames, video_fps
from magbench.errors import DatasetError, SampleError

if TYPE_CHECKING:
    from magbench.protocol import ReplayProtocol

REQUIRED_COLUMNS = ("video_path", "raw_caption", "duration(sec)")
# A frame rate this close to the protocol's counts as equal: containers store rates as fractions,
# and 16000/1001 (0.016 off) drifts by less than one frame in a minute.
FPS_TOLERANCE = 0.05


@dataclass
class VideoSample:
    sample_id: str
    video_path: Path
    caption: str
    duration_sec: float
    annotations_path: Path | None = None
    # True for the official MAG-Bench: split exactly as the reference splits it (the frame-rate
    # check only flags, never fails or resamples).
    reference_split: bool = False

    def load_frames(self) -> np.ndarray:
        return read_video(self.video_path)

    def load_frames_checked(self, protocol: "ReplayProtocol", record: dict[str, Any] | None = None) -> np.ndarray:
        """The frames the protocol splits, after the frame-rate check (see :func:`check_video`).

        The check is written to ``record["video_check"]`` (also when it fails the sample, which
        raises SampleError naming both numbers)."""
        frames = self.load_frames()
        check = check_video(frames.shape[0], video_fps(self.video_path), self.duration_sec, protocol, self.reference_split)
        if record is not None:
            record["video_check"] = check
        if check["action"] == "rejected":
            fix = FPS_FIX if "fps" in check["flags"] else DURATION_FIX
            raise SampleError(f"{self.video_path}: {'; '.join(check['problems'])}. {fix}")
        if check["action"] == "resampled":
            frames = resample_frames(frames, check["container_fps"], float(protocol.fps))
            check["frames_used"] = int(frames.shape[0])
        return frames

    def annotations(self) -> dict[str, Any] | None:
        """``{"poses": [[...] per frame], "correspondences": [frame per frame], "leave_frame": int}``.

        ``correspondences[t]`` is the earliest frame that shows the same view as frame t.
        """
        if self.annotations_path is None or not self.annotations_path.is_file():
            return None
        try:
            return json.loads(self.annotations_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SampleError(f"{self.annotations_path}: corrupt annotations ({exc})") from exc


FPS_FIX = (
    "Re-encode the video at 16 fps, or run with --fps-policy resample (resample it to 16 fps) or "
    "--fps-policy accept (use its frames as they are)"
)


def check_video(
    num_frames: int,
    container_fps: float | None,
    duration_sec: float,
    protocol: "ReplayProtocol",
    reference_split: bool = False,
) -> dict[str, Any]:
    """Check a decoded video against the protocol's frame rate and decide what happens to it.

    Flags: ``"fps"`` when the container's frame rate is not ``protocol.fps``; ``"duration"`` when
    the frame count (after resampling, if that is what happens) differs from the CSV duration x
    ``protocol.fps`` by more than one block (12 frames). ``action``: "none" (no flag),
    "reference" (official MAG-Bench: used as the reference uses it), "accepted" (policy accept),
    "resampled" (policy resample, an "fps" flag), "rejected" (policy strict, or a "duration" flag
    that resampling does not explain).
    """
    from magbench.protocol import BLOCK_PIXEL_FRAMES

    fps = float(protocol.fps)
    expected = duration_sec * fps
    flags: list[str] = []
    problems: list[str] = []
    if container_fps is not None and abs(container_fps - fps) > FPS_TOLERANCE:
        flags.append("fps")
        problems.append(f"container frame rate {container_fps:g} fps, the protocol needs {fps:g} fps")
    # What would be split: the decoded frames, or the resampled ones when that is what happens.
    resample = "fps" in flags and protocol.fps_policy == "resample" and not reference_split
    used = math.floor(num_frames * fps / container_fps + 1e-9) if resample else num_frames
    if abs(used - expected) > BLOCK_PIXEL_FRAMES:
        flags.append("duration")
        what = f"{used} frames after resampling to {fps:g} fps" if resample else f"{num_frames} frames"
        problems.append(
            f"{what}, but the CSV duration {duration_sec:g} s is {expected:g} frames at {fps:g} fps "
            f"(off by more than one block of {BLOCK_PIXEL_FRAMES})"
        )
    if not flags:
        action = "none"
    elif reference_split:
        action = "reference"
    elif protocol.fps_policy == "accept":
        action = "accepted"
    elif resample and "duration" not in flags:
        action = "resampled"
    else:
        action = "rejected"
    return {
        "container_fps": container_fps,
        "decoded_frames": int(num_frames),
        "csv_duration_sec": float(duration_sec),
        "expected_frames": expected,
        "frames_used": int(used) if action != "rejected" else None,
        "flags": flags,
        "problems": problems,
        "policy": "reference" if reference_split else protocol.fps_policy,
        "action": action,
    }


DURATION_FIX = "Check the video's duration(sec) in the CSV, or run with --fps-policy accept (use its frames as they are)"


@dataclass
class Dataset:
    id: str
    root: Path
    samples: list[VideoSample]
    revision: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "root": str(self.root),
            "num_samples": len(self.samples),
            **self.info,
        }


def find_csv(root: Path) -> Path:
    """The CSV of a dataset folder: the one file with the MAG-Bench columns."""
    if root.is_file():
        return root
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    candidates = sorted(root.glob("*.csv")) or sorted(root.glob("**/*.csv"))
    matching = [c for c in candidates if _has_columns(c)]
    if len(matching) == 1:
        return matching[0]
    if not candidates:
        raise DatasetError(f"{root}: no CSV file (expected columns {', '.join(REQUIRED_COLUMNS)})")
    if not matching:
        # Name what is missing in the most plausible candidate.
        _read_csv(candidates[0])
    raise DatasetError(f"{root}: several CSV files match the schema: {[str(m) for m in matching]}")


def _has_columns(csv: Path) -> bool:
    try:
        header = csv.open(encoding="utf-8").readline()
    except (OSError, UnicodeDecodeError):
        return False
    cols = [c.strip().strip('"') for c in header.strip().split(",")]
    return all(c in cols for c in REQUIRED_COLUMNS)


def _read_csv(csv: Path):
    import pandas as pd

    try:
        df = pd.read_csv(csv)
    except Exception as exc:
        raise DatasetError(f"{csv}: unreadable CSV ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DatasetError(
            f"{csv}: missing column(s) {', '.join(repr(m) for m in missing)} "
            f"(found {', '.join(map(str, df.columns))})"
        )
    return df


def load_csv_dataset(
    root: Path | str, dataset_id: str | None = None, revision: str | None = None, reference_split: bool | None = None
) -> Dataset:
    """Load a folder (or CSV file) in the MAG-Bench schema. Only the CSV is checked here;
    a missing or broken video is a per-sample failure found when the sample runs.

    ``reference_split`` (default: True for the dataset id "magbench", the official benchmark and
    its local copies) splits every video exactly as the reference does, whatever its container's
    frame rate; other datasets follow the protocol's ``fps_policy``."""
    if reference_split is None:
        reference_split = dataset_id == "magbench"
    root = Path(root).expanduser()
    csv = find_csv(root)
    df = _read_csv(csv)
    base = csv.parent
    samples: list[VideoSample] = []
    seen: set[str] = set()
    for i, row in enumerate(df.itertuples(index=False), start=2):  # line 1 is the header
        rel = str(getattr(row, "video_path"))
        try:
            duration = float(df.at[i - 2, "duration(sec)"])
        except (TypeError, ValueError):
            raise DatasetError(f"{csv}:{i}: duration(sec) {df.at[i - 2, 'duration(sec)']!r} is not a number") from None
        video = _resolve_video(base, rel)
        sample_id = Path(rel).with_suffix("").as_posix()
        if sample_id in seen:
            raise DatasetError(f"{csv}:{i}: video_path {rel!r} appears twice")
        seen.add(sample_id)
        caption = df.at[i - 2, "raw_caption"]
        ann = base / "annotations" / (Path(rel).stem + ".json")
        samples.append(
            VideoSample(
                sample_id=sample_id,
                video_path=video,
                caption="" if caption != caption else str(caption),  # NaN -> ""
                duration_sec=duration,
                annotations_path=ann if ann.is_file() else None,
                reference_split=reference_split,
            )
        )
    return Dataset(id=dataset_id or f"csv:{root}", root=base, samples=samples, revision=revision)


def _resolve_video(base: Path, rel: str) -> Path:
    for cand in (base / rel, base / "videos" / rel, base / "video" / rel):
        if cand.exists():
            return cand
    return base / rel  # missing: reported when the sample runs
