"""The leaderboard: one row per (method, method config, dataset, protocol; the task is part of the protocol).

Runs that share all four are pooled (shards, or the same config run in several folders); runs
that differ in dataset (id or revision) or protocol (any setting, the memory source included) get
separate rows and are **never averaged together**. Within one dataset and protocol, every row is
scored on the samples all its ranked rows finished (``n_common``), never on its own easier subset.
Rows are sorted by dataset, then protocol, then the primary metric, best first (NaN last; on a
tie, a row without failures first). The primary metric is ``--primary`` where given, else the
first of ``magbench.reports.runs.PRIMARY_PREFERENCE`` (the paper's best-match LPIPS, then
frame-aligned LPIPS, PSNR, SSIM, ...) that has values in that dataset/protocol: a column without a
single value is never ranked by. Notes in ``df.attrs["notes"]`` say which metric ranks and why,
what was skipped (metrics without weights, random metric or method weights), when more than one
dataset/protocol is present, when rows were cut to their common samples, and when a validity check
fires for the top row (``magbench.reports.verdict``).

Columns (stable; names only ever get added):

==========================  ==========================================================================
``task``                    the task measured (``magbench tasks``); runs of two tasks never pool
                            (a task other than magbench-replay is part of the protocol)
``method``                  method name from the manifest
``kind``                    "method", or "floor" / "ceiling" for sanity methods
``method_config``           the method's options as compact JSON, "default" when none
``dataset``                 dataset id; ``dataset_revision`` its revision
``protocol``                protocol id, plus the settings that differ between loaded runs sharing it
``memory_source``           where the method's memory of generated spans came from: "generated"
                            (its own output, the paper's history context) or "ground-truth" (GT
                            context); runs made before it was recorded read as "generated". Part of
                            the protocol: rows that differ in it are never pooled or ranked together
``n_runs``, ``run_ids``     how many run folders were pooled into the row, and their ids (";"-joined)
``n_samples``               samples this row finished (status "ok")
``n_common``                samples every ranked row of the same dataset and protocol finished: the
                            row's means, intervals and efficiency figures are over these, so a method
                            that fails the hard samples is never ranked on an easier subset. Rows
                            with no finished sample (``status`` "failed"/"empty") are not ranked and
                            do not shrink the others' set
``n_failed``                samples recorded as failed
``n_corrupt_lines``         damaged lines skipped in the rows' ``samples*.jsonl`` files
``n_video_flags``           samples whose video failed the protocol's 16 fps check (container frame
                            rate not 16, or frame count off its CSV duration by more than a block),
                            whatever was done about it (``record["video_check"]``; a note names them)
``status``                  "ok" (no failed sample), "partial" (some failed: marked, ranked on the
                            common samples), "failed" (every sample failed) or "empty" (no records)
``cause``                   why, for rows that are not "ok": the run's fatal error (``RUN/fatal.json``)
                            and the most frequent sample error with its count; "" otherwise
``<key>_mean``              mean over samples of every metric key (``psnr``, ``lpips``,
                            ``bestmatch_lpips``, ``corr_ssim``, ``subject_consistency``, ...)
``<key>_ci_low/_ci_high``   95% percentile-bootstrap interval of that mean (2000 resamples over
                            samples, seed 0); NaN with fewer than two samples
                            (VBench's subject/background consistency, whose records carry
                            ``extra["<key>_sum"]``/``["<key>_pairs"]``, are aggregated as VBench
                            does: all terms over all frame pairs, resampled by video)
``bestmatch_coverage_mean`` distinct ground-truth frames matched by the paper's best match / target
                            length; ``bestmatch_ordered_{lpips,psnr,ssim}_mean`` the
                            order-preserving best match (``magbench.metrics.bestmatch``)
``fps_mean``                mean over samples of generated frames per second, with
                            ``fps_ci_low``/``fps_ci_high``
``e2e_fps_mean``            mean over samples of end-to-end FPS: target frames over all of the
                            method's time for the sample (reset + memorize + generate + memory
                            accounting), with ``e2e_fps_ci_low``/``e2e_fps_ci_high``
``first_block_s_mean``      mean time to the first generated block, seconds
``block_p50_s``             median latency of a generated block, pooled over every block of every
                            sample; ``block_p95_s`` its 95th percentile
``peak_vram_bytes``         max over samples of peak device memory (``peak_device_bytes``);
                            NaN when not recorded (CPU runs)
``peak_reserved_bytes``     max over samples of peak device memory reserved by the allocator
``device_growth_bytes_mean`` mean over samples of device memory allocated at the end beyond what
                            the loaded method held (measured; compare with ``kv_bytes_end_mean``)
``peak_rss_bytes``          max over samples of peak host memory
``kv_bytes_end_mean``       mean over samples of the method's memory (KV cache) at the end
``kv_bytes_peak``           max over samples of that memory's peak
``host_bytes_end_mean``     mean over samples of the memory the method holds in host RAM at the
                            end (``Method.host_memory_bytes``; 0 for device-only memories, NaN in
                            records written before it was recorded)
``<key>_mean_all_finished`` mean over every sample the row finished (``n_samples``), for reference
                            only: rows with different failures are not comparable on it
==========================  ==========================================================================

``df.attrs`` carries ``primary`` (the sort key; ``primaries`` the one of each
"dataset / protocol"), ``key_info`` (``higher_is_better``/``best`` per
key, from the manifests), ``metric_keys``, ``notes`` and ``problems`` (damaged lines as
"file:line: reason").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd

from magbench.reports import fmt
from magbench.reports.errors import UnknownMetricError
from magbench.errors import MagbenchError
from magbench.record import MemoryUsage, SampleRecord, Timing
from magbench.reports.runs import (
    PRIMARY_PREFERENCE,
    Run,
    choose_primary,
    fatal_line,
    higher_is_better,
    load_runs,
    merged_key_info,
    metric_keys,
    protocol_labels,
    stopped_without_manifest,
    task_primary_metric,
)
from magbench.reports.stats import N_RESAMPLES, SEED, bootstrap_ci, clean
from magbench.reports.verdict import Entry, Verdict, verdict
from magbench.store import atomic_write_text

if TYPE_CHECKING:
    from rich.table import Table


def video_check(record: SampleRecord) -> dict[str, Any] | None:
    """The replay task's 16 fps / duration check of the record's video (None for other tasks)."""
    return getattr(record.part, "video_check", None)

ID_COLUMNS = [
    "task", "method", "kind", "method_config", "dataset", "dataset_revision", "protocol", "memory_source", "n_runs",
    "run_ids", "n_samples", "n_common", "n_failed", "n_corrupt_lines", "n_video_flags", "status", "cause",
]
TERMINAL_KEYS = ("lpips", "psnr", "ssim")
EFFICIENCY_COLUMNS = [
    "fps_mean", "fps_ci_low", "fps_ci_high", "first_block_s_mean", "block_p50_s", "block_p95_s",
    "peak_vram_bytes", "peak_rss_bytes", "kv_bytes_end_mean", "kv_bytes_peak", "host_bytes_end_mean",
    "e2e_fps_mean", "e2e_fps_ci_low", "e2e_fps_ci_high", "peak_reserved_bytes", "device_growth_bytes_mean",
]


@dataclass
class Group:
    """The runs pooled into one leaderboard row."""

    runs: list[Run]
    protocol_label: str
    # Samples every ranked row of this dataset/protocol finished (set by ``build``); None: all own.
    common_ids: list[str] | None = None

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def records(self) -> list[SampleRecord]:
        return [r for run in self.runs for r in run.records]

    @property
    def ok_records(self) -> list[SampleRecord]:
        return [r for run in self.runs for r in run.ok_records()]

    @property
    def ranked_records(self) -> list[SampleRecord]:
        """The finished records the row is ranked on: those of the common samples."""
        if self.common_ids is None:
            return self.ok_records
        common = set(self.common_ids)
        return [r for r in self.ok_records if r.sample_id in common]

    @property
    def flagged_records(self) -> list[SampleRecord]:
        """Records (any status) whose video failed the protocol's frame-rate check."""
        return [r for r in self.records if (video_check(r) or {}).get("flags")]

    @property
    def ok_ids(self) -> list[str]:
        return list(dict.fromkeys(r.sample_id for r in self.ok_records))

    @property
    def status(self) -> str:
        """"ok", "partial" (some samples failed), "failed" (all failed) or "empty" (no records)."""
        records = self.records
        ok = len(self.ok_records)
        if not records:
            return "empty"
        if ok == 0:
            return "failed"
        return "ok" if ok == len(records) else "partial"

    def cause(self) -> str:
        """Why the row is not "ok": fatal errors of its runs, then its most frequent sample error."""
        parts: list[str] = []
        for run in self.runs:
            fatal = run.fatal()
            if fatal is not None:
                where = f"{run.run_id} " if len(self.runs) > 1 else ""
                parts.append(f"{where}run stopped: {fatal_line(fatal)}")
        errors = [str(r.error or r.error_type or "unknown error") for r in self.records if not r.ok]
        if errors:
            counts: dict[str, int] = {}
            for e in errors:
                line = e.strip().splitlines()[0] if e.strip() else "unknown error"
                counts[line] = counts.get(line, 0) + 1
            top, n = max(counts.items(), key=lambda kv: kv[1])
            others = len(errors) - n
            parts.append(f"{n} sample(s) failed: {top}" + (f" (+{others} with other errors)" if others else ""))
        if not self.records and not parts:
            parts.append("no sample records: the run stopped before its first sample, or has not finished one yet")
        return "; ".join(parts)

    @property
    def comparison(self) -> tuple[str, str]:
        """(dataset, protocol label): rows are only comparable within one of these."""
        return (self.first.dataset, self.protocol_label)


@dataclass
class Leaderboard:
    """The leaderboard with what reports need besides the table itself."""

    frame: pd.DataFrame
    groups: list[Group]  # aligned with frame rows
    runs: list[Run]
    primary: str | None
    key_info: dict[str, dict[str, Any]]
    metric_keys: list[str]
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Per (dataset, protocol label): the metric its rows are ranked by, and what may be said of its top row.
    primaries: dict[tuple[str, str], str | None] = field(default_factory=dict)
    verdicts: dict[tuple[str, str], Verdict] = field(default_factory=dict)

    def entries(self, comparison: tuple[str, str]) -> list[Entry]:
        """The rows of one dataset/protocol, in rank order, as :mod:`magbench.reports.verdict` sees them."""
        return [entry_of(g, self.frame.iloc[i].to_dict()) for i, g in enumerate(self.groups) if g.comparison == comparison]


def entry_of(group: Group, values: dict[str, Any]) -> Entry:
    """A leaderboard row (``values``) of ``group`` as :mod:`magbench.reports.verdict` sees it."""
    return Entry(_name(group), group.first.kind, values, group.first.manifest.get("method") or {},
                 random_weights=group.first.random_method_weights)


def group_runs(runs: Sequence[Run]) -> list[Group]:
    labels = protocol_labels(runs)
    groups: dict[tuple[str, ...], Group] = {}
    for run in runs:
        key = run.group_key()
        if key not in groups:
            groups[key] = Group([], labels[key[-1]])
        groups[key].runs.append(run)
    return list(groups.values())


def build(
    run_dirs: Iterable[Path | str | Any],
    primary: str | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Leaderboard:
    """Load ``run_dirs`` and compute the leaderboard (see the module docstring for columns)."""
    run_dirs = list(run_dirs)
    stopped = stopped_without_manifest(run_dirs)
    try:
        runs = load_runs(run_dirs)
    except MagbenchError as exc:
        if not stopped:
            raise
        listed = "; ".join(f"{p}: {fatal_line(f)}" for p, f in stopped)
        raise MagbenchError(f"{exc}; runs that stopped before writing their manifest: {listed}") from None
    keys = metric_keys(runs)
    info = merged_key_info(runs)
    if primary is not None and primary not in keys:
        raise UnknownMetricError(
            f"--primary {primary!r}: no loaded run reports it; choose one of {', '.join(keys) or '(none)'}"
        )
    groups = group_runs(runs)
    cut = set_common_samples(groups)
    rows = [_row(g, keys, n_resamples, seed) for g in groups]
    frame = pd.DataFrame(rows, columns=_columns(keys))
    valued = _keys_with_values(frame, keys)
    if primary is not None and primary not in valued:
        raise UnknownMetricError(
            f"--primary {primary!r}: no run has a value for it (its metric was skipped or failed); "
            f"choose one of {', '.join(k for k in keys if k in valued) or '(none)'}"
        )
    comparisons = list(dict.fromkeys(g.comparison for g in groups))
    primaries: dict[tuple[str, str], str | None] = {}
    tasks = {c: next(g.first.task for g in groups if g.comparison == c) for c in comparisons}  # one per comparison (its protocol)
    for c in comparisons:
        here = _keys_with_values(frame[[g.comparison == c for g in groups]], keys)
        primaries[c] = primary if primary in here else choose_primary(keys, None, here, task=tasks[c])
    chosen = set(primaries.values())
    overall = primary or (chosen.pop() if len(chosen) == 1 else choose_primary(keys, None, valued))
    order = _sort_order(frame, [primaries[g.comparison] for g in groups], info)
    frame = frame.iloc[order].reset_index(drop=True)
    groups = [groups[i] for i in order]

    notes: list[str] = _ranking_notes(comparisons, primaries, primary, tasks) + _skipped_notes(runs, keys, valued)
    if len(comparisons) > 1:
        listed = "; ".join(f"{d} / {p}" for d, p in comparisons)
        notes.append(
            f"These runs use {len(comparisons)} different dataset/protocol combinations ({listed}). "
            "They are kept in separate rows and never averaged together; compare rows only within "
            "one dataset and protocol."
        )
    for key, n_common in cut.items():
        ranked = [g for g in groups if g.first.comparison_key() == key and g.ok_records]
        dataset, protocol = ranked[0].comparison
        most = max(len(g.ok_ids) for g in ranked)
        short = [f"{_name(g)} ({len(g.ok_ids)} finished, {len(g.records) - len(g.ok_records)} failed)"
                 for g in ranked if len(g.ok_ids) < most]
        cut_rows = [f"{_name(g)} ({len(g.ok_ids)})" for g in ranked if len(g.ok_ids) > n_common]
        notes.append(
            f"{dataset} / {protocol}: every row is ranked on the {n_common} sample(s) all ranked rows finished, "
            f"because of {', '.join(short) if short else 'rows that finished different samples'}; "
            f"rows cut to them from their own: {', '.join(cut_rows)}. "
            "Means over each row's own samples are in <key>_mean_all_finished."
            + ("" if n_common else " No sample was finished by every row, so none has a mean: run them on the same "
               "samples, or use `magbench compare` on two of them.")
        )
    for g in groups:
        flagged = g.flagged_records
        if flagged:
            shown = "; ".join(
                f"{r.sample_id}: {', '.join(video_check(r).get('problems') or video_check(r)['flags'])} "
                f"({video_check(r).get('action')})"
                for r in flagged[:3]
            )
            notes.append(f"{_name(g)} on {g.first.dataset}: {len(flagged)} sample(s) with video flags ({shown}"
                         + ("; ..." if len(flagged) > 3 else "") + ")")
        if g.status in ("failed", "empty"):
            notes.append(f"{_name(g)} on {g.first.dataset} is not ranked ({g.status}): {g.cause()}")
    for folder, fatal in stopped:
        notes.append(f"{folder} stopped before writing its manifest: {fatal_line(fatal)}")
    problems = [str(p) for run in runs for p in run.problems]
    lb = Leaderboard(frame, groups, runs, overall, info, keys, notes, problems, primaries)
    for c in comparisons:
        if primaries[c] is None:
            continue
        v = lb.verdicts[c] = verdict(lb.entries(c), primaries[c], info)
        if v.best is not None and v.checks:
            where = f"{c[0]} / {c[1]}: " if len(comparisons) > 1 else ""
            notes.append(
                f"{where}{v.best.label} ranks first of the {v.what}s on {v.primary}"
                + (", but no verdict: " if v.withheld else ", but ") + "; ".join(ch.text for ch in v.checks) + "."
            )
    frame.attrs.update(primary=overall, primaries={f"{d} / {p}": k for (d, p), k in primaries.items()},
                       key_info=info, metric_keys=keys, notes=notes, problems=problems)
    return lb


def _keys_with_values(frame: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The metric keys with at least one value (a mean) among ``frame``'s rows."""
    return [k for k in keys if f"{k}_mean" in frame and frame[f"{k}_mean"].notna().any()]


def _ranking_notes(comparisons, primaries, requested, tasks) -> list[str]:
    """Which metric ranks each comparison, where it is not the paper's best-match LPIPS."""
    notes = []
    for c in comparisons:
        k = primaries[c]
        where = f"{c[0]} / {c[1]}: " if len(comparisons) > 1 else ""
        own = task_primary_metric(tasks[c])
        if k is None:
            notes.append(f"{where}no metric has a value: the rows are not ranked.")
        elif k == own and k != requested and k != PRIMARY_PREFERENCE[0]:
            notes.append(f"{where}{'r' if where else 'R'}anked by {k}, the {tasks[c]} task's primary metric (--primary picks another).")
        elif k != requested and k != PRIMARY_PREFERENCE[0]:
            before = PRIMARY_PREFERENCE[: PRIMARY_PREFERENCE.index(k)] if k in PRIMARY_PREFERENCE else PRIMARY_PREFERENCE
            notes.append(
                f"{where}{'r' if where else 'R'}anked by {k}, the first with values of {', '.join(PRIMARY_PREFERENCE)}"
                f" ({_join(before)} {'has' if len(before) == 1 else 'have'} none here; --primary picks another)."
            )
    return notes


def _skipped_notes(runs: Sequence[Run], keys: Sequence[str], valued: Sequence[str]) -> list[str]:
    """What the runs did not measure: skipped metrics (and why), values without a single number,
    random metric weights and random method weights."""
    notes = []
    # why -> metric -> (ran in part, run ids)
    by_reason: dict[str, dict[str, tuple[bool, list[str]]]] = {}
    for run in runs:
        ran = set(map(str, run.manifest.get("metrics") or []))
        for name, why in run.skipped_metrics().items():
            entry = by_reason.setdefault(why.split(" (ran without them")[0], {}).setdefault(name, (name in ran, []))
            entry[1].append(run.run_id)
    for why, items in by_reason.items():
        run_ids = sorted({r for _, ids in items.values() for r in ids})
        skipped = [n for n, (part, _) in items.items() if not part]
        partial = [n for n, (part, _) in items.items() if part]
        parts = ([f"{_join(skipped)} skipped"] if skipped else []) + (
            [f"{_join(partial)} ran without {'its' if len(partial) == 1 else 'their'} weights (only the values that need none)"] if partial else [])
        notes.append(f"Not measured in {_runs_text(run_ids, len(runs))}: {', and '.join(parts)}; {why}.")
    empty = [k for k in keys if k not in valued]
    if empty:
        notes.append(f"No values for {_join(empty)}: left out of the tables and the ranking.")
    random = {r.run_id: r.random_weight_metrics() for r in runs if r.random_weight_metrics()}
    if random:
        names = sorted({m for ms in random.values() for m in ms})
        notes.append(f"{', '.join(names)} computed with random backbone weights (a test setting) in {_runs_text(sorted(random), len(runs))}: "
                     "such values only compare runs made the same way, never published numbers.")
    untimed = [r for r in runs if any(rec.timing is not None and not rec.timing.measured for rec in r.records)]
    if untimed:
        notes.append(f"Not timed: {_join(sorted({r.run_id for r in untimed}))} scored videos made elsewhere "
                     "(--method videos:DIR), so they have no speed or memory figures.")
    smoke = sorted({r.method for r in runs if r.random_method_weights})
    if smoke:
        notes.append(f"{', '.join(smoke)} ran with random weights (random_weights=true): a smoke test of the pipeline, not a result.")
    return notes


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _runs_text(run_ids: Sequence[str], total: int) -> str:
    if len(run_ids) == total and total > 1:
        return f"all {total} runs"
    return ("run " if len(run_ids) == 1 else "runs ") + ", ".join(run_ids)


def set_common_samples(groups: Sequence[Group]) -> dict[tuple[str, ...], int]:
    """Give each group the samples every ranked group of its dataset (and revision) and protocol
    finished.

    Groups with no finished sample are not ranked and leave the set alone. Returns, for each
    comparison key (``Run.comparison_key``) where some row was cut to fewer samples than it
    finished, the common count.
    """
    cut: dict[tuple[str, ...], int] = {}
    for key in dict.fromkeys(g.first.comparison_key() for g in groups):
        members = [g for g in groups if g.first.comparison_key() == key]
        ranked = [g for g in members if g.ok_records]
        common = ranked[0].ok_ids if ranked else []
        for g in ranked[1:]:
            ids = set(g.ok_ids)
            common = [s for s in common if s in ids]
        for g in members:
            g.common_ids = common
        if any(len(g.ok_ids) > len(common) for g in ranked):
            cut[key] = len(common)
    return cut


def _name(group: Group) -> str:
    run = group.first
    return run.method + ("" if run.method_config == "default" else f" {run.method_config}")


def leaderboard(
    run_dirs: Iterable[Path | str | Any],
    primary: str | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> pd.DataFrame:
    """One row per (method, method config, dataset, protocol); see the module docstring."""
    return build(run_dirs, primary, n_resamples, seed).frame


def write_leaderboard(df: pd.DataFrame, path: Path | str) -> Path:
    """Write ``df`` as CSV, atomically (a reader never sees half a file)."""
    path = Path(path)
    atomic_write_text(path, df.to_csv(index=False))
    return path


def _columns(keys: Sequence[str]) -> list[str]:
    cols = list(ID_COLUMNS)
    for k in keys:
        cols += [f"{k}_mean", f"{k}_ci_low", f"{k}_ci_high"]
    return cols + EFFICIENCY_COLUMNS + [f"{k}_mean_all_finished" for k in keys]


def _row(group: Group, keys: Sequence[str], n_resamples: int, seed: int) -> dict[str, Any]:
    run = group.first
    finished = group.ok_records
    ok = group.ranked_records  # what the row is ranked on: the common samples
    status = group.status
    row: dict[str, Any] = {
        "task": run.task,
        "method": run.method,
        "kind": run.kind,
        "method_config": run.method_config,
        "dataset": run.dataset,
        "dataset_revision": run.dataset_revision,
        "protocol": group.protocol_label,
        "memory_source": run.memory_source,
        "n_runs": len(group.runs),
        "run_ids": ";".join(r.run_id for r in group.runs),
        "n_samples": len(finished),
        "n_common": len(ok),
        "n_failed": len(group.records) - len(finished),
        "n_corrupt_lines": sum(len(r.problems) for r in group.runs),
        "n_video_flags": len(group.flagged_records),
        "status": status,
        "cause": "" if status == "ok" else group.cause(),
    }
    for k in keys:
        weighted = _pair_weighted(ok, k)
        if weighted is not None:
            mean, low, high = pair_weighted_ci(*weighted, n_resamples=n_resamples, seed=seed)
        else:
            mean, low, high = bootstrap_ci([r.metrics.get(k) for r in ok], n_resamples, seed=seed)
        row.update({f"{k}_mean": mean, f"{k}_ci_low": low, f"{k}_ci_high": high})

    timing = [r.timing if r.timing is not None else Timing() for r in ok]
    memory = [r.memory if r.memory is not None else MemoryUsage() for r in ok]
    fps, fps_low, fps_high = bootstrap_ci([t.fps for t in timing], n_resamples, seed=seed)
    blocks = clean([b for t in timing for b in t.block_s])
    # For reference only: each metric over every sample the row finished, not just the common ones.
    row.update({f"{k}_mean_all_finished": _mean([r.metrics.get(k) for r in finished]) for k in keys})
    row.update(
        fps_mean=fps,
        fps_ci_low=fps_low,
        fps_ci_high=fps_high,
        first_block_s_mean=_mean([t.first_block_s for t in timing]),
        block_p50_s=float(np.quantile(blocks, 0.5)) if blocks.size else math.nan,
        block_p95_s=float(np.quantile(blocks, 0.95)) if blocks.size else math.nan,
        peak_vram_bytes=_max([m.peak_device_bytes for m in memory]),
        peak_rss_bytes=_max([m.peak_rss_bytes for m in memory]),
        kv_bytes_end_mean=_mean([m.kv_bytes_end for m in memory]),
        kv_bytes_peak=_max([m.kv_bytes_peak for m in memory]),
        host_bytes_end_mean=_mean([m.host_bytes_end for m in memory]),
    )
    e2e, e2e_low, e2e_high = bootstrap_ci([t.e2e_fps for t in timing], n_resamples, seed=seed)
    row.update(
        e2e_fps_mean=e2e, e2e_fps_ci_low=e2e_low, e2e_fps_ci_high=e2e_high,
        peak_reserved_bytes=_max([m.peak_device_reserved_bytes for m in memory]),
        device_growth_bytes_mean=_mean([m.device_growth_bytes for m in memory]),
    )
    return row


def _pair_weighted(records: list[SampleRecord], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(term sums, pair counts) per record when every record carries them for ``key``."""
    extras = [r.extra for r in records]
    if not extras or any(f"{key}_sum" not in e or f"{key}_pairs" not in e for e in extras):
        return None
    return (np.asarray([float(e[f"{key}_sum"]) for e in extras]),
            np.asarray([float(e[f"{key}_pairs"]) for e in extras]))


def pair_weighted_ci(
    sums: np.ndarray, pairs: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED, confidence: float = 0.95
) -> tuple[float, float, float]:
    """VBench's dimension score (sum of all terms / all pairs) with a percentile bootstrap interval
    over videos (NaN with fewer than two videos or no pairs)."""
    total = pairs.sum()
    if total <= 0:
        return math.nan, math.nan, math.nan
    value = float(sums.sum() / total)
    if sums.size < 2:
        return value, math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, sums.size, size=(n_resamples, sums.size))
    num, den = sums[idx].sum(axis=1), pairs[idx].sum(axis=1)
    ratios = num[den > 0] / den[den > 0]
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(ratios, [alpha, 1.0 - alpha])
    return value, float(low), float(high)


def _mean(values: list[Any]) -> float:
    x = clean(values)
    return float(x.mean()) if x.size else math.nan


def _max(values: list[Any]) -> float:
    x = clean(values)
    return float(x.max()) if x.size else math.nan


def _sort_order(frame: pd.DataFrame, primaries: Sequence[str | None], info: dict[str, dict[str, Any]]) -> list[int]:
    """Row order: dataset, protocol, then each row's own comparison's primary metric."""

    def key(i: int) -> tuple:
        row = frame.iloc[i]
        primary = primaries[i]
        col = f"{primary}_mean" if primary else None
        hib = higher_is_better(primary, info) if primary else None
        v = row[col] if col else math.nan
        missing = fmt.is_missing(v)
        score = 0.0 if missing else (-float(v) if hib else float(v))
        # On a tie a row with failures goes below: it never outranks one that finished everything.
        return (row["dataset"], row["protocol"], missing, score, int(row["n_failed"]) > 0, row["method"], row["method_config"])

    return sorted(range(len(frame)), key=key)


def rich_table(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> "Table":
    """The leaderboard for the terminal: metrics as "mean [95% CI]", sanity methods marked."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    derived = [c[: -len("_ci_low")] for c in df.columns if c.endswith("_ci_low") and c not in ("fps_ci_low", "e2e_fps_ci_low")]
    # Only keys with a value: a column of dashes says nothing (the notes say what was skipped).
    available = _keys_with_values(df, list(df.attrs.get("metric_keys") or derived))
    primary = df.attrs.get("primary")
    if metrics:
        keys = list(metrics)
    else:
        # A terminal is narrow: the ranking metric and the headline reconstruction metrics;
        # the CSV (--out) and the HTML report carry every key.
        keys = [k for k in dict.fromkeys([primary, *TERMINAL_KEYS]) if k in available] or available[:4]
    info = df.attrs.get("key_info") or {}
    multi = df[["dataset", "protocol"]].drop_duplicates().shape[0] > 1
    # The memory source decides what a row measures (history vs GT context): always visible when set.
    sources = set(df["memory_source"]) if "memory_source" in df else {"generated"}
    show_source = sources != {"generated"}
    ranked = sorted({k for k in (df.attrs.get("primaries") or {}).values() if k}) or ([primary] if primary else [])
    # End-to-end FPS first: work moved out of generate() cannot flatter it. No speed columns where
    # nothing was timed (scored videos, `--method videos:DIR`).
    timed = bool(df["e2e_fps_mean"].notna().any() or df["fps_mean"].notna().any()) if len(df) else False
    table = Table(title="MAG-Bench leaderboard" + (f", ranked by {' / '.join(ranked)}" if ranked else ""),
                  caption="mean [95% bootstrap CI] over the samples every ranked method finished (n); ↑ higher / ↓ lower is better"
                          + ("; e2e FPS: target frames / all of the method's time, gen FPS: / its generate() time" if timed else ""),
                  box=box.SIMPLE_HEAD, pad_edge=False)
    longest = max([len(str(m)) for m in df["method"]] + [6])
    table.add_column("method", overflow="fold", min_width=min(longest, 24))
    if multi:
        table.add_column("dataset / protocol", overflow="fold")
    if show_source:
        table.add_column("memory source")
    table.add_column("n", justify="right")
    for k in keys:
        arrow = {True: " ↑", False: " ↓"}.get(higher_is_better(k, info), "")
        table.add_column(("* " if k == primary else "") + k + arrow, justify="right", overflow="fold", min_width=9)
    vram = bool(df["peak_vram_bytes"].notna().any()) if len(df) else False  # CPU runs record none
    speed = ["e2e FPS", "gen FPS", "p50 block"] if timed else []
    for col in (*speed, *(["peak VRAM"] if vram else []), "KV end"):
        table.add_column(col, justify="right", overflow="fold")
    for _, r in df.iterrows():
        name = escape(r["method"] + ("" if r["method_config"] == "default" else f" {r['method_config']}"))
        if r["kind"] != "method":
            name += f"\n[dim]({r['kind']})[/]"
        cells = [name]
        if multi:
            cells.append(f"{r['dataset']} / {r['protocol']}")
        if show_source:
            cells.append(str(r["memory_source"]))
        if r["status"] in ("failed", "empty"):  # the cause is in the notes printed above the table
            cells[0] += f"\n[red]not ranked ({r['status']})[/]"
        n = str(int(r["n_common"]))
        if int(r["n_samples"]) != int(r["n_common"]):
            n += f" [dim]of {int(r['n_samples'])}[/]"
        if r["n_failed"]:
            n += f"\n[red]⚠ {int(r['n_failed'])} failed[/]"
        cells.append(n)
        for k in keys:
            # The interval on its own line keeps columns narrow enough for a terminal.
            cells.append(fmt.ci(r.get(f"{k}_mean"), r.get(f"{k}_ci_low"), r.get(f"{k}_ci_high")).replace(" [", "\n[", 1))
        if timed:
            cells += [fmt.num(r.get("e2e_fps_mean")), fmt.num(r["fps_mean"]), fmt.seconds(r["block_p50_s"])]
        cells += [*([fmt.nbytes(r["peak_vram_bytes"])] if vram else []), fmt.nbytes(r["kv_bytes_end_mean"])]
        table.add_row(*cells, style="dim" if r["kind"] != "method" else None)
    return table
