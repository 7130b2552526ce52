"""The results store: one folder per run, crash-safe and resumable.

Layout of a run folder::

    RUN/manifest.json          what was run (method + config, dataset + revision, protocol,
                               metrics, seed, versions, git commit, hardware); written atomically
    RUN/samples*.jsonl         one JSON record per finished sample, appended one whole line at a
                               time and fsynced. A single process writes samples.jsonl; sharded
                               runs write samples.<shard>.jsonl; readers merge every file.
    RUN/previews/ID.npz        small uint8 frame strips for reports (no pickle: arrays only)
    RUN/frames/ID.npz          the generated target segment, uint8 T x H x W x 3, lossless
                               (what `magbench score` scores again); off with --no-keep-frames
    RUN/fatal.json             why the run stopped, if it did: {error, error_type, traceback, at}
    RUN/videos/ID.mp4          generated target segment, with --save-videos
    RUN/.run.lock              held by the invocation that launched the run (magbench/locking.py)
    RUN/.samples*.jsonl.lock   held by the process appending to that record file
    RUN/shards.json            the shard plan of a sharded run (runners/sharding.py)
    RUN/slurm/                 submitit logs of a SLURM launch

A record is one JSON line: its one definition, common and per-task parts, is
:class:`magbench.record.SampleRecord` (``magbench schema`` prints it). Readers here return
typed records; records of every earlier version read.

A SIGKILL can at worst leave one partial last line: readers report and skip it, and the sample
is redone on resume.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from magbench.errors import MagbenchError, RunConfigMismatchError, storage_error
from magbench.record import SampleRecord

MANIFEST = "manifest.json"
RECORDS_GLOB = "samples*.jsonl"
FATAL = "fatal.json"  # a run's fatal error: {error, error_type, traceback, at}
FRAMES_DIR = "frames"  # generated frames, lossless, for `magbench score`
RUN_SUBFOLDERS = (FRAMES_DIR, "previews", "videos", "slurm")  # what --overwrite removes with the files


def records_name(rank: int = 0, world_size: int = 1) -> str:
    """The record file of shard ``rank`` of ``world_size``; one shard writes ``samples.jsonl``."""
    if world_size == 1:
        return "samples.jsonl"
    return f"samples.{rank}-of-{world_size}.jsonl"


def lock_name(records: str) -> str:
    """The lock file held by the process appending to record file ``records``."""
    return f".{records}.lock"


def safe_name(name: str) -> str:
    """A sample id or run name as a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def file_mode() -> int:
    """The mode open() gives a new file under the current umask (mkstemp's are owner-only)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def writing(path: Path | str, partial: Path | str | None = None) -> Iterator[None]:
    """Writes to ``path`` inside: a read-only, full-disk or permission error becomes a one-line
    :class:`~magbench.errors.StorageError` naming the path and the fix, and ``partial`` (a
    temporary file being written) is removed, so a failed write leaves nothing half-made."""
    try:
        yield
    except OSError as exc:
        if partial is not None:
            with contextlib.suppress(OSError):
                Path(partial).unlink(missing_ok=True)
        err = storage_error(exc, path)
        if err is None:
            raise
        raise err from None
    except BaseException:
        if partial is not None:
            with contextlib.suppress(OSError):
                Path(partial).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with writing(path, partial=tmp):
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), file_mode())
            os.fsync(f.fileno())
        os.replace(tmp, path)


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
    # The sample the damaged line was about, where its bytes still name it (records are written
    # with sorted keys, so a line cut short may end before its "sample_id").
    sample_id: str | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


_SAMPLE_ID = re.compile(rb'"sample_id":\s*("(?:[^"\\]|\\.)*")')


def _named_sample(raw: bytes) -> str | None:
    """The sample id a damaged record line still names, if it does."""
    m = _SAMPLE_ID.search(raw)
    if not m:
        return None
    try:
        sid = json.loads(m.group(1))
    except ValueError:
        return None
    return sid if isinstance(sid, str) else None


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
                    "use another --out folder, or --overwrite to replace it"
                )
            return
        with writing(self.path):
            self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, manifest)

    def clear(self) -> list[str]:
        """Remove what a run left in this folder (manifest, records, kept frames, previews,
        videos, plan, fatal error, SLURM logs, record locks), for ``--overwrite``; other files
        stay. Call it holding the exclusive run lock (which stays). Returns the names removed."""
        import shutil

        if not self.path.is_dir():
            return []
        removed = []
        for p in sorted(self.path.iterdir()):
            name = p.name
            known_file = name in (MANIFEST, FATAL, "shards.json") or p.match(RECORDS_GLOB) or (
                name.startswith(".samples") and name.endswith(".lock"))
            if p.is_dir() and name in RUN_SUBFOLDERS:
                shutil.rmtree(p)
            elif p.is_file() and known_file:
                p.unlink()
            else:
                continue
            removed.append(name)
        return removed

    def update_manifest(self, **fields: Any) -> None:
        m = self.manifest()
        m.update(fields)
        atomic_write_json(self.manifest_path, m)

    # -- records -------------------------------------------------------------------------------
    def record_files(self) -> list[Path]:
        return sorted(self.path.glob(RECORDS_GLOB))

    def iter_records(self) -> Iterator[SampleRecord]:
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
                        self.problems.append(CorruptLine(file, lineno, reason, _named_sample(raw)))
                        continue
                    yield SampleRecord.from_json(rec)

    def records(self) -> list[SampleRecord]:
        """One record per sample (the last one written wins), in first-seen order."""
        merged: dict[str, SampleRecord] = {}
        for rec in self.iter_records():
            merged.pop(rec.sample_id, None)
            merged[rec.sample_id] = rec
        return list(merged.values())

    def discard_if_empty(self) -> bool:
        """Remove a run folder that holds no result (no record file, no kept frame): what a run
        that failed before its first sample leaves. True if removed."""
        if self.record_files() or any(self.path.glob(f"{FRAMES_DIR}/*.npz")):
            return False
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)
        return True

    def write_fatal(self, exc: BaseException, tb: str) -> None:
        """Record why the run stopped; where that cannot be written either (the disk the error
        was about), the error itself is what the user sees."""
        import datetime as _dt

        with contextlib.suppress(MagbenchError, OSError):
            atomic_write_json(self.path / FATAL, {
                "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                "error_type": type(exc).__name__,
                "traceback": tb,
                "at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            })

    def clear_fatal(self) -> None:
        (self.path / FATAL).unlink(missing_ok=True)

    def done_ids(self, include_failed: bool = True) -> set[str]:
        return {r.sample_id for r in self.records() if include_failed or r.ok}


class RecordWriter:
    """Appends records to one JSONL file, one whole line per write, fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with writing(self.path):
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

    def append(self, record: SampleRecord | dict[str, Any]) -> None:
        line = record_line(record)
        data = line.encode("utf-8")
        with writing(self.path):
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                start = os.fstat(fd).st_size  # one writer per file (its record lock): the line starts here
                try:
                    # One write(2) of the whole line: O_APPEND keeps concurrent appenders' lines whole.
                    written = os.write(fd, data)
                    while written < len(data):
                        written += os.write(fd, data[written:])
                    os.fsync(fd)
                except OSError:
                    # A full disk may take part of the line: cut it off, so the file ends with the
                    # last whole record and the sample is simply redone.
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, start)
                    raise
            finally:
                os.close(fd)


def save_frames(run_path: Path, sample_id: str, frames: np.ndarray) -> str:
    """Keep a sample's generated frames (uint8 T x H x W x 3, lossless, compressed ``.npz``, no
    pickle) so that ``magbench score`` can score them again; returns the path relative to the
    run folder."""
    rel = Path(FRAMES_DIR) / f"{safe_name(sample_id)}.npz"
    path = Path(run_path) / rel
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    with writing(path, partial=tmp):
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(tmp, generated=np.ascontiguousarray(frames, dtype=np.uint8))
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    return rel.as_posix()


def load_frames(run_path: Path, rel: str) -> np.ndarray:
    path = Path(run_path) / rel
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["generated"]
    except FileNotFoundError:
        raise MagbenchError(f"{path}: kept frames missing; regenerate the sample with `magbench run --retry-failed`") from None
    except (OSError, ValueError, KeyError) as exc:
        raise MagbenchError(f"{path}: unreadable kept frames ({exc})") from exc


def record_line(record: SampleRecord | dict[str, Any]) -> str:
    """A record as its JSON line (NaN/Inf as null)."""
    data = record.to_json() if isinstance(record, SampleRecord) else record
    return json.dumps(_finite(data), sort_keys=True, default=_json_default) + "\n"


def rewrite_records(path: Path, records: list[SampleRecord | dict[str, Any] | str]) -> None:
    """Replace record file ``path`` with ``records`` (a damaged line given as its text stays
    as it was), atomically (readers see the old file or the new one). Hold the file's record
    lock while doing it."""
    text = "".join(r + "\n" if isinstance(r, str) else record_line(r) for r in records)
    atomic_write_text(Path(path), text)


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
