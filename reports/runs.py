"""Loading run folders for reports: manifest, merged records, damaged lines, grouping keys.

Everything is read through :mod:`magbench.store` (``find_runs`` / ``RunDir``); this module only
adds what reports need on top: which runs may be pooled (same method config, dataset and
protocol) and human-readable labels for those three.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Sequence

from magbench.record import SampleRecord
from magbench.store import FATAL, CorruptLine, RunDir, find_runs

# The metrics a report ranks by when none is asked for: the first of these that has values in the
# runs, else the first key that has values. The MAG paper's best-match LPIPS first, then the
# frame-aligned scores (LPIPS, PSNR, SSIM: a frozen or shuffled video cannot flatter them), then
# the order-preserving best match, then the scores against the corresponding context frame. A key
# without a single value (its metric was skipped, e.g. for missing weights) is never ranked by.
PRIMARY_PREFERENCE = (
    "bestmatch_lpips", "lpips", "psnr", "ssim", "bestmatch_ordered_lpips", "corr_lpips", "corr_psnr", "corr_ssim",
)
# Protocol settings added after runs were already made, with the value those runs had in effect:
# an old run reads as if it had recorded it, so it still pools with new runs of the same setting.
PROTOCOL_DEFAULTS = {"memory_source": "generated"}


@dataclass
class Run:
    """One run folder, read once."""

    path: Path
    manifest: dict[str, Any]
    records: list[SampleRecord]
    problems: list[CorruptLine] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id") or self.path.name)

    @property
    def method(self) -> str:
        m = self.manifest.get("method") or {}
        return str(m.get("name") or (m.get("config") or {}).get("name") or "?")

    @property
    def kind(self) -> str:
        return str((self.manifest.get("method") or {}).get("kind") or "method")

    @property
    def method_config(self) -> str:
        """The method's options as compact JSON ("default" when it has none). Manifests that
        record resolved options (every default included) name the changed ones apart."""
        changed = (self.manifest.get("method") or {}).get("options_changed")
        if changed is not None:
            return _compact(changed) if changed else "default"
        cfg = (self.manifest.get("method") or {}).get("config") or {}
        options = cfg.get("options", {k: v for k, v in cfg.items() if k != "name"})
        return _compact(options) if options else "default"

    @property
    def dataset(self) -> str:
        return str((self.manifest.get("dataset") or {}).get("id") or "?")

    @property
    def dataset_revision(self) -> str:
        return str((self.manifest.get("dataset") or {}).get("revision") or "")

    @property
    def protocol(self) -> dict[str, Any]:
        """The manifest's protocol, with settings it predates filled in (``PROTOCOL_DEFAULTS``;
        the memory source from the records where only they name it)."""
        return dict(self._protocol)

    @cached_property
    def _protocol(self) -> dict[str, Any]:
        task = self.manifest.get("task") or {}
        if task.get("name", "magbench-replay") != "magbench-replay":
            # Another task: its own protocol id and options are what it measured and how.
            return {"id": str(task.get("protocol") or task["name"]), "task": task["name"], **(task.get("options") or {})}
        proto = dict(self.manifest.get("protocol") or {})
        if "memory_source" not in proto:
            named = {getattr(r.part, "memory_source", None) for r in self.records} - {None}
            if len(named) == 1:
                proto["memory_source"] = named.pop()
        return {**PROTOCOL_DEFAULTS, **proto}

    @property
    def memory_source(self) -> str:
        """Where the method's memory of generated spans came from ("generated" or "ground-truth")."""
        return str(self.protocol.get("memory_source", ""))

    def fatal(self) -> dict[str, Any] | None:
        """Why the run stopped (``RUN/fatal.json``: error, error_type, traceback, at), or None.

        A fatal error older than the run's last record is stale (a later invocation went on) and
        is not reported."""
        return read_fatal(self.path, self.records)

    @property
    def task(self) -> str:
        """The task the run measured (runs from before tasks existed: ``magbench-replay``)."""
        return str((self.manifest.get("task") or {}).get("name") or "magbench-replay")

    @property
    def protocol_id(self) -> str:
        return str(self.protocol.get("id") or "?")

    def comparison_key(self) -> tuple[str, str, str]:
        """Runs with different keys measure different things and are never averaged together:
        another task, dataset, revision or protocol (a task's protocol names the task)."""
        return (self.dataset, self.dataset_revision, _compact(self.protocol))

    def group_key(self) -> tuple[str, ...]:
        # The whole method configuration, not only the label: runs whose defaults differ in code
        # are different runs even where the changed options agree.
        config = _compact((self.manifest.get("method") or {}).get("config") or {})
        return (self.method, self.method_config, config, *self.comparison_key())

    def key_info(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest.get("key_info") or {})

    def ok_records(self) -> list[SampleRecord]:
        return [r for r in self.records if r.ok]

    def metric_keys(self) -> list[str]:
        keys: list[str] = list(self.manifest.get("key_info") or {})
        for r in self.ok_records():
            keys += [k for k in r.metrics if k not in keys]
        return keys

    @property
    def random_method_weights(self) -> bool:
        """The method ran with random weights (``--opt random_weights=true``: a smoke test)."""
        cfg = (self.manifest.get("method") or {}).get("config") or {}
        return bool((cfg.get("options") or {}).get("random_weights"))

    def skipped_metrics(self) -> dict[str, str]:
        """Metrics of the run's set that did not run, or ran in part, with why (the manifest's
        ``skipped_metrics``)."""
        return {str(k): str(v) for k, v in (self.manifest.get("skipped_metrics") or {}).items()}

    def random_weight_metrics(self) -> list[str]:
        """Metrics computed with random backbone weights (a test setting: not publishable)."""
        out = []
        for m in (self.manifest.get("config") or {}).get("metrics") or []:
            if isinstance(m, dict) and (m.get("options") or {}).get("random_weights"):
                out.append(str(m.get("name")))
        return out


def load_runs(paths: Iterable[Path | str | RunDir | Run]) -> list[Run]:
    """Every run under ``paths`` (run folders or folders of runs), in a stable order.

    Raises MagbenchError (from ``find_runs``) when a path is missing or holds no run.
    """
    items = list(paths)
    loaded: list[Run] = [p for p in items if isinstance(p, Run)]
    dirs = [p for p in items if isinstance(p, RunDir)]
    plain = [p for p in items if not isinstance(p, (Run, RunDir))]
    if plain or not (loaded or dirs):
        dirs += find_runs(plain)
    seen: set[Path] = {r.path.resolve() for r in loaded}
    for d in dirs:
        if d.path.resolve() in seen:
            continue
        seen.add(d.path.resolve())
        records = d.records()
        loaded.append(Run(d.path, d.manifest(), records, list(d.problems)))
    return loaded


def read_fatal(path: Path, records: Sequence[SampleRecord] = ()) -> dict[str, Any] | None:
    """``path/fatal.json`` as a dict (None when absent or stale); a damaged file reads as its text."""
    f = Path(path) / FATAL
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except (OSError, ValueError) as exc:
        return {"error": f"{f} is unreadable ({exc})", "error_type": "unknown", "at": None}
    at = str(data.get("at") or "")
    later = [str(r.finished_at or "") for r in records if str(r.finished_at or "") > at]
    if at and later and all(_iso_comparable(x, at) for x in later):
        return None
    return data


def _iso_comparable(a: str, b: str) -> bool:
    # ISO times compare as text only when written alike (same length, same zone suffix).
    return len(a) == len(b) and a[-6:-5] == b[-6:-5]


def fatal_line(fatal: dict[str, Any]) -> str:
    """One line for a fatal error: "ErrorType: first line of the message"."""
    msg = str(fatal.get("error") or "").strip().splitlines()
    kind = str(fatal.get("error_type") or "").strip()
    text = msg[0] if msg else "(no message)"
    return f"{kind}: {text}" if kind and not text.startswith(kind) else text


def stopped_without_manifest(paths: Iterable[Path | str | RunDir | Run]) -> list[tuple[Path, dict[str, Any]]]:
    """Folders among ``paths`` (or directly under them) that hold a fatal error but no manifest:
    runs that stopped before they were set up. Reports list them with their cause."""
    out: list[tuple[Path, dict[str, Any]]] = []
    for p in paths:
        if isinstance(p, (Run, RunDir)):
            continue
        p = Path(p)
        for folder in [p, *sorted(x.parent for x in p.glob(f"*/{FATAL}"))]:
            if (folder / FATAL).is_file() and not (folder / "manifest.json").is_file():
                fatal = read_fatal(folder)
                if fatal is not None:
                    out.append((folder, fatal))
    return out


def merged_key_info(runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    info: dict[str, dict[str, Any]] = {}
    for r in runs:
        for k, v in r.key_info().items():
            info.setdefault(k, dict(v))
    return info


def metric_keys(runs: Sequence[Run]) -> list[str]:
    """Metric keys reported by any run, in first-seen order."""
    keys: list[str] = []
    for r in runs:
        keys += [k for k in r.metric_keys() if k not in keys]
    return keys


def choose_primary(keys: Sequence[str], requested: str | None = None, with_values: Iterable[str] | None = None,
                   task: str | None = None) -> str | None:
    """The ranking metric: ``requested`` if given, else ``task``'s own ``primary_metric`` (the
    recall tasks rank by recall PSNR, long video by VBench-Long subject consistency), else the
    first of :data:`PRIMARY_PREFERENCE`, each only among ``with_values`` (the keys that have a
    value; default: all ``keys``), else the first key with a value; None when no key has one."""
    if requested:
        return requested
    have = list(keys) if with_values is None else [k for k in keys if k in set(with_values)]
    own = task_primary_metric(task)
    for k in ((own,) if own else ()) + PRIMARY_PREFERENCE:
        if k in have:
            return k
    return have[0] if have else None


def task_primary_metric(task: str | None) -> str | None:
    """The registered task's ranking metric (None for a task whose plugin is not installed here:
    its runs still rank, by the general order)."""
    from magbench.tasks import TASKS

    if not task or task not in TASKS:
        return None
    return TASKS.get(task).primary_metric


def higher_is_better(key: str, key_info: dict[str, dict[str, Any]]) -> bool | None:
    """Direction of ``key``; None when no manifest says (reports then make no better/worse claim)."""
    v = (key_info.get(key) or {}).get("higher_is_better")
    return None if v is None else bool(v)


def protocol_labels(runs: Sequence[Run]) -> dict[str, str]:
    """Label for each protocol (by compact JSON): its id, plus the settings that differ between
    loaded runs sharing that id, so two variants of one protocol never look alike."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        lst = by_id.setdefault(r.protocol_id, [])
        if r.protocol not in lst:
            lst.append(r.protocol)
    labels: dict[str, str] = {}
    for pid, protos in by_id.items():
        varying = sorted({k for p in protos for k in p if any(q.get(k) != p.get(k) for q in protos)})
        for p in protos:
            extra = ", ".join(f"{k}={p.get(k)}" for k in varying)
            labels[_compact(p)] = f"{pid} ({extra})" if extra else pid
    return labels


def _compact(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
