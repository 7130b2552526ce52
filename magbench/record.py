"""The per-sample record: one typed definition that every writer and reader uses.

A record is one JSON line of ``RUN/samples*.jsonl``. Its common part (:class:`SampleRecord`) is
shared by every task: identity (``sample_id``, ``task``, ``schema``), outcome (``status``,
``error``), the method's timing (:class:`Timing`) and memory (:class:`MemoryUsage`), the scores
(``metrics``: scalars for leaderboards; ``per_frame``: curves; ``extra``: anything else a metric
returns) and the files written for it. Each task adds its own typed part (a :class:`TaskPart`
subclass named by the task's ``Part``), stored flat beside the common fields.

Schema versions: 1 (before tasks: no ``task``/``schema`` keys; read as ``magbench-replay``),
2 (this). Keys a reader does not know are kept in ``unknown`` and written back unchanged, so a
record rewritten by ``magbench score`` loses nothing.

The JSON layout (the replay task's part shown; ``magbench schema`` prints this from the code)::

    {"schema": 2, "task": "magbench-replay", "sample_id", "status", "error", "error_type",
     "traceback", "caption", "video_path", "seed", "finished_at",
     "metrics": {...}, "per_frame": {...}, "extra": {...}, "method_extras": {...},
     "timing": {Timing}, "memory": {MemoryUsage}, "preview", "frames", "video",
     <task part fields>}
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

SCHEMA_VERSION = 2
DEFAULT_TASK = "magbench-replay"


def _from_dict(cls: type, data: dict[str, Any] | None) -> Any:
    """A dataclass from its JSON fields; unknown keys go to its ``extras`` (if it has one)."""
    if data is None:
        return None
    names = {f.name for f in fields(cls)}
    known = {k: v for k, v in data.items() if k in names and k != "extras"}
    obj = cls(**known)
    rest = {k: v for k, v in data.items() if k not in names}
    if rest and "extras" in names:
        obj.extras.update(rest)
    return obj


def _to_dict(obj: Any) -> dict[str, Any]:
    out = {f.name: getattr(obj, f.name) for f in fields(obj) if f.name != "extras"}
    out.update(getattr(obj, "extras", {}) or {})
    return out


@dataclass
class Timing:
    """Seconds of the method's work on one sample (every call timed, device-synchronised;
    :mod:`magbench.instrument`). ``method_s`` = reset + memorize + generate + memory_bytes (the
    end-to-end time); ``fps`` = target frames / generate_s, ``e2e_fps`` = target frames /
    method_s. ``extras``: what :meth:`Method.timings` adds (``decode_s``, ...), stored flat."""

    reset_s: float = 0.0
    memorize_s: float = 0.0
    generate_s: float = 0.0
    remember_ground_truth_s: float | None = None  # within generate_s; null unless that memory source
    memory_bytes_s: float = 0.0
    method_s: float = 0.0
    first_block_s: float | None = None
    block_s: list[float] = field(default_factory=list)
    block_frames: list[int] = field(default_factory=list)
    fps: float | None = None
    e2e_fps: float | None = None
    block_p50_s: float | None = None
    block_p95_s: float | None = None
    # The warm-up that ran before this sample in its process: "sample" (one untimed block of a
    # sample), "hook" (the method's warmup()) or "failed" (no sample warmed it up: timed cold);
    # ``warmup_sample``: the sample it ran on.
    warmup: str | None = None
    warmup_sample: str | None = None
    # False where nothing was timed (``--method videos:DIR``: videos made elsewhere); the speed
    # fields are then empty.
    measured: bool = True
    fps_without_decode: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        """A timing by name (a field or a method's own extra), for generic columns."""
        if key in self.extras:
            return self.extras[key]
        return getattr(self, key, default) if key in _TIMING_FIELDS else default


@dataclass
class MemoryUsage:
    """Memory on one sample: device peaks measured by the harness, the method's own KV bytes."""

    peak_device_bytes: int | None = None  # allocated
    peak_device_reserved_bytes: int | None = None
    device_growth_bytes: int | None = None  # allocated at the end - after load (measured)
    peak_rss_bytes: int | None = None
    kv_bytes_end: int | None = None  # self-reported (Method.memory_bytes)
    kv_bytes_peak: int | None = None
    kv_bytes_per_block: list[int] = field(default_factory=list)
    frames_per_block: list[int] = field(default_factory=list)
    host_bytes_end: int | None = None  # memory a method keeps in host RAM (Method.host_memory_bytes)
    host_bytes_per_block: list[int] = field(default_factory=list)  # long-video: host RAM against length
    extras: dict[str, Any] = field(default_factory=dict)


_TIMING_FIELDS = {f.name for f in fields(Timing)} - {"extras"}


@dataclass
class TaskPart:
    """Base of a task's own part of the record (its fields are stored flat in the JSON line)."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TaskPart":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


@dataclass
class SampleRecord:
    """One sample's result, for every task. ``part`` is the task's typed part."""

    sample_id: str
    task: str = DEFAULT_TASK
    schema: int = SCHEMA_VERSION
    status: str = "failed"  # "ok" | "failed"
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    caption: str = ""
    video_path: str | None = None
    seed: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    per_frame: dict[str, list[Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    method_extras: dict[str, Any] = field(default_factory=dict)
    timing: Timing | None = None
    memory: MemoryUsage | None = None
    preview: str | None = None
    frames: str | None = None
    video: str | None = None
    finished_at: str | None = None
    part: TaskPart | None = None
    # Keys this version does not know (a newer writer's, say): kept and written back unchanged.
    unknown: dict[str, Any] = field(default_factory=dict)

    COMMON: ClassVar[frozenset[str]] = frozenset()  # set below

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fail(self, error: str, error_type: str, traceback: str | None = None) -> None:
        self.status, self.error, self.error_type = "failed", error, error_type
        if traceback is not None:
            self.traceback = traceback

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.unknown)
        for f in fields(self):
            if f.name in ("part", "unknown"):
                continue
            v = getattr(self, f.name)
            if f.name in ("timing", "memory"):
                v = None if v is None else _to_dict(v)
            elif f.name == "traceback" and v is None:
                continue  # written only when there is one, as before the schema
            out[f.name] = v
        if self.part is not None:
            out.update(self.part.to_json())
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], part_type: type[TaskPart] | None = None) -> "SampleRecord":
        """A record from its JSON line (any schema version). ``part_type``: the task's part
        class (default: looked up from the record's ``task`` in the task registry)."""
        task = data.get("task") or DEFAULT_TASK
        if part_type is None:
            part_type = _part_type(task)
        part_names = part_type.field_names() if part_type else set()
        kw: dict[str, Any] = {}
        unknown: dict[str, Any] = {}
        for k, v in data.items():
            if k in cls.COMMON:
                kw[k] = v
            elif k not in part_names:
                unknown[k] = v
        kw["task"] = task
        kw["schema"] = int(data.get("schema", 1))
        kw["timing"] = _from_dict(Timing, data.get("timing"))
        kw["memory"] = _from_dict(MemoryUsage, data.get("memory"))
        for k in ("metrics", "per_frame", "extra", "method_extras"):
            kw[k] = dict(data.get(k) or {})
        rec = cls(**kw, unknown=unknown)
        if part_type is not None:
            rec.part = part_type.from_json(data)
        return rec


SampleRecord.COMMON = frozenset(f.name for f in fields(SampleRecord)) - {"part", "unknown"}


def _part_type(task: str) -> type[TaskPart] | None:
    from magbench.tasks import TASKS

    try:
        return TASKS.get(task).Part
    except Exception:  # an unknown task (a plugin not installed here): its fields stay in `unknown`
        return None


def schema_text() -> str:
    """The record schema, generated from the dataclasses (``magbench schema``)."""
    from magbench.tasks import TASKS

    def block(title: str, cls: type) -> list[str]:
        lines = [title]
        for f in fields(cls):
            if f.name in ("part", "unknown", "extras"):
                continue
            tp = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            lines.append(f"  {f.name}: {tp}")
        return lines

    out = [f"record schema {SCHEMA_VERSION} (one JSON line per sample; task part stored flat)"]
    out += block("common (SampleRecord):", SampleRecord)
    out += block("timing (Timing; method timings beside them):", Timing)
    out += block("memory (MemoryUsage):", MemoryUsage)
    for name in TASKS.names():
        part = TASKS.get(name).Part
        if part is not None:
            out += block(f"task {name} ({part.__name__}):", part)
    return "\n".join(out)


def as_record(obj: SampleRecord | dict[str, Any]) -> SampleRecord:
    return obj if isinstance(obj, SampleRecord) else SampleRecord.from_json(obj)


__all__ = [
    "SCHEMA_VERSION", "DEFAULT_TASK", "SampleRecord", "Timing", "MemoryUsage", "TaskPart",
    "schema_text", "as_record",
]
