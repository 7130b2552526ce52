"""Datasets in the MAG-Bench schema: a CSV (``video_path``, ``raw_caption``, ``duration(sec)``)
beside a folder of mp4 files, with optional per-video annotations (camera poses and
correspondences) in ``annotations/<video stem>.json``.

Every dataset (the official one, a user's folder, the synthetic set) is read by this one loader,
so all code paths are shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from magbench.data.video_io import read_video
from magbench.errors import DatasetError, SampleError

REQUIRED_COLUMNS = ("video_path", "raw_caption", "duration(sec)")


@dataclass
class VideoSample:
    sample_id: str
    video_path: Path
    caption: str
    duration_sec: float
    annotations_path: Path | None = None

    def load_frames(self) -> np.ndarray:
        return read_video(self.video_path)

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


def load_csv_dataset(root: Path | str, dataset_id: str | None = None, revision: str | None = None) -> Dataset:
    """Load a folder (or CSV file) in the MAG-Bench schema. Only the CSV is checked here;
    a missing or broken video is a per-sample failure found when the sample runs."""
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
            )
        )
    return Dataset(id=dataset_id or f"csv:{root}", root=base, samples=samples, revision=revision)


def _resolve_video(base: Path, rel: str) -> Path:
    for cand in (base / rel, base / "videos" / rel, base / "video" / rel):
        if cand.exists():
            return cand
    return base / rel  # missing: reported when the sample runs
