"""The results store: one folder per run, crash-safe and resumable.

Layout of a run folder::

    RUN/manifest.json          what was run (method + config, dataset + revision, protocol,
                               metrics, seed, versions, git commit, hardware); written atomically
    RUN/samples*.jsonl         one JSON record per finished sample, appended one whole line at a
                               time and fsynced. A single process writes samples.jsonl; sharded
                               runs write samples.<shard>.jsonl; readers merge every file.
    RUN/previews/ID.npz        small uint8 frame strips for reports (no pickle: arrays only)
    RUN/videos/ID.mp4          generated target segment, with --save-videos
    RUN/.run.lock              held by the invocation that launched the run (runners/locking.py)
    RUN/.samples*.jsonl.lock   held by the process appending to that record file
    RUN/shards.json            the shard plan of a sharded run (runners/sharding.py)
    RUN/slurm/                 submitit logs of a SLURM launch

A record (``status`` "ok" or "failed")::

    {"sample_id", "status", "error", "error_type",
     "caption", "video_path", "seed", "num_context", "num_target", "switch_frame",
     "height", "width", "fps",
     "metrics":   {"psnr": 31.2, "lpips": 0.12, ...},            # scalars for leaderboards
     "per_frame": {"psnr": [...], ...},                          # index = frames since switch
     "extra":     {"bestmatch_indices": [...], "seconds_since_leave": [...], ...},
     "timing":    {"memorize_s", "generate_s", "first_block_s", "block_s": [...],
                   "block_frames": [...], "fps", "block_p50_s", "block_p95_s", "decode_s"?,
                   "fps_without_decode"?},
     "memory":    {"peak_device_bytes", "peak_rss_bytes", "kv_bytes_end", "kv_bytes_peak",
                   "kv_bytes_per_block": [...], "frames_per_block": [...]},
     "preview": "previews/ID.npz" | null, "video": "videos/ID.mp4" | null,
     "finished_at": ISO time}

A SIGKILL can at worst leave one partial last line: readers report and skip it, and the sample
is redone on resume.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from magbench.errors import MagbenchError, RunConfigMismatchError

MANIFEST = "manifest.json"
RECORDS_GLOB = "samples*.jsonl"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _finite(o: Any) -> Any:
    """JSON has no NaN/Inf: store them as null so every reader can parse every line."""
    if isinstance(o, float):
        return o if o == o and abs(o) != float("inf") else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


@dataclass
class CorruptLine:
    file: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class RunDir:
    """A run folder: its manifest and its merged records."""

    path: Path
    problems: list[CorruptLine] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # -- manifest ------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MagbenchError(f"{self.path}: not a run folder (no {MANIFEST})") from None
        except json.JSONDecodeError as exc:
            raise MagbenchError(f"{self.manifest_path}: corrupt JSON ({exc})") from exc

    def init(self, manifest: dict[str, Any]) -> None:
        """Create the run, or check that an existing one was written with the same config."""
        if self.exists():
            old = self.manifest()
            if old.get("fingerprint") != manifest.get("fingerprint"):
                diff = _diff_config(old.get("config", {}), manifest.get("config", {}))
                raise RunConfigMismatchError(
                    f"{self.path} holds a run with a different configuration ({diff}); "
                    "use another --out folder or delete this one"
                )
            return
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, manifest)

    def update_manifest(self, **fields: Any) -> None:
        m = self.manifest()
        m.update(fields)
        atomic_write_json(self.manifest_path, m)

    # -- records -------------------------------------------------------------------------------
    def record_files(self) -> list[Path]:
        return sorted(self.path.glob(RECORDS_GLOB))

    def iter_records(self) -> Iterator[dict[str, Any]]:
        """Every parseable record, in file order; damaged lines go to ``self.problems``."""
        self.problems = []
        for file in self.record_files():
            with open(file, "rb") as f:
                for lineno, raw in enumerate(f, start=1):
                    if not raw.strip():
                        continue
                    try:
                        rec = json.loads(raw)
                        if not isinstance(rec, dict) or "sample_id" not in rec:
                            raise ValueError("not a record (no sample_id)")
                    except ValueError as exc:
                        truncated = not raw.endswith(b"\n")
                        reason = "truncated line (interrupted write)" if truncated else str(exc)
                        self.problems.append(CorruptLine(file, lineno, reason))
                        continue
                    yield rec

    def records(self) -> list[dict[str, Any]]:
        """One record per sample (the last one written wins), in first-seen order."""
        merged: dict[str, dict[str, Any]] = {}
        for rec in self.iter_records():
            merged.pop(rec["sample_id"], None)
            merged[rec["sample_id"]] = rec
        return list(merged.values())

    def done_ids(self, include_failed: bool = True) -> set[str]:
        return {
            r["sample_id"]
            for r in self.records()
            if include_failed or r.get("status") == "ok"
        }


class RecordWriter:
    """Appends records to one JSONL file, one whole line per write, fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()

    def _repair_tail(self) -> None:
        # A line cut by a kill would glue itself to our next record: end it first.
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                last = f.read(1)
            if last != b"\n":
                with open(self.path, "ab") as f:
                    f.write(b"\n")

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(_finite(record), sort_keys=True, default=_json_default) + "\n"
        data = line.encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # One write(2) of the whole line: O_APPEND keeps concurrent appenders' lines whole.
            written = os.write(fd, data)
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        finally:
            os.close(fd)


def find_runs(paths: Iterable[Path | str]) -> list[RunDir]:
    """Run folders among ``paths``: each path is a run folder or a folder holding run folders."""
    runs: list[RunDir] = []
    for p in map(Path, paths):
        if not p.exists():
            raise MagbenchError(f"{p}: no such folder")
        if (p / MANIFEST).is_file():
            runs.append(RunDir(p))
            continue
        found = sorted(m.parent for m in p.glob(f"*/{MANIFEST}"))
        runs.extend(RunDir(f) for f in found)
    if not runs:
        raise MagbenchError(
            f"no runs found in {', '.join(map(str, paths))} (a run folder holds {MANIFEST}); "
            "create one with `magbench run`"
        )
    return runs


def _diff_config(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> str:
    diffs = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            d = _diff_config(a, b, f"{prefix}{k}.")
            if d:
                diffs.append(d)
        elif a != b:
            diffs.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return "; ".join(diffs[:4])
