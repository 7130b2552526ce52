"""The leaderboard: one row per (method, method config, dataset, protocol).

Runs that share all four are pooled (shards, or the same config run in several folders); runs
that differ in dataset (id or revision) or protocol (any setting) get separate rows and are
**never averaged together**. Rows are sorted by dataset, then protocol, then the primary metric,
best first (NaN last). A note in ``df.attrs["notes"]`` says when more than one dataset/protocol
is present.

Columns (stable; names only ever get added):

==========================  ==========================================================================
``method``                  method name from the manifest
``kind``                    "method", or "floor" / "ceiling" for sanity methods
``method_config``           the method's options as compact JSON, "default" when none
``dataset``                 dataset id; ``dataset_revision`` its revision
``protocol``                protocol id, plus the settings that differ between loaded runs sharing it
``n_runs``, ``run_ids``     how many run folders were pooled into the row, and their ids (";"-joined)
``n_samples``               successfully scored samples (status "ok")
``n_failed``                samples recorded as failed
``n_corrupt_lines``         damaged lines skipped in the rows' ``samples*.jsonl`` files
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
``first_block_s_mean``      mean time to the first generated block, seconds
``block_p50_s``             median latency of a generated block, pooled over every block of every
                            sample; ``block_p95_s`` its 95th percentile
``peak_vram_bytes``         max over samples of peak device memory (``peak_device_bytes``);
                            NaN when not recorded (CPU runs)
``peak_rss_bytes``          max over samples of peak host memory
``kv_bytes_end_mean``       mean over samples of the method's memory (KV cache) at the end
``kv_bytes_peak``           max over samples of that memory's peak
==========================  ==========================================================================

``df.attrs`` carries ``primary`` (the sort key), ``key_info`` (``higher_is_better``/``best`` per
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
from magbench.reports.runs import (
    Run,
    choose_primary,
    higher_is_better,
    load_runs,
    merged_key_info,
    metric_keys,
    protocol_labels,
)
from magbench.reports.stats import N_RESAMPLES, SEED, bootstrap_ci, clean
from magbench.store import atomic_write_text

if TYPE_CHECKING:
    from rich.table import Table

ID_COLUMNS = [
    "method", "kind", "method_config", "dataset", "dataset_revision", "protocol", "n_runs", "run_ids",
    "n_samples", "n_failed", "n_corrupt_lines",
]
TERMINAL_KEYS = ("lpips", "psnr", "ssim")
EFFICIENCY_COLUMNS = [
    "fps_mean", "fps_ci_low", "fps_ci_high", "first_block_s_mean", "block_p50_s", "block_p95_s",
    "peak_vram_bytes", "peak_rss_bytes", "kv_bytes_end_mean", "kv_bytes_peak",
]


@dataclass
class Group:
    """The runs pooled into one leaderboard row."""

    runs: list[Run]
    protocol_label: str

    @property
    def first(self) -> Run:
        return self.runs[0]

    @property
    def records(self) -> list[dict[str, Any]]:
        return [r for run in self.runs for r in run.records]

    @property
    def ok_records(self) -> list[dict[str, Any]]:
        return [r for run in self.runs for r in run.ok_records()]

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
    runs = load_runs(run_dirs)
    keys = metric_keys(runs)
    info = merged_key_info(runs)
    if primary is not None and primary not in keys:
        raise UnknownMetricError(
            f"--primary {primary!r}: no loaded run reports it; choose one of {', '.join(keys) or '(none)'}"
        )
    primary = choose_primary(keys, primary)
    groups = group_runs(runs)
    rows = [_row(g, keys, n_resamples, seed) for g in groups]
    frame = pd.DataFrame(rows, columns=_columns(keys))
    order = _sort_order(frame, primary, info)
    frame = frame.iloc[order].reset_index(drop=True)
    groups = [groups[i] for i in order]

    notes: list[str] = []
    comparisons = list(dict.fromkeys(g.comparison for g in groups))
    if len(comparisons) > 1:
        listed = "; ".join(f"{d} / {p}" for d, p in comparisons)
        notes.append(
            f"These runs use {len(comparisons)} different dataset/protocol combinations ({listed}). "
            "They are kept in separate rows and never averaged together; compare rows only within "
            "one dataset and protocol."
        )
    problems = [str(p) for run in runs for p in run.problems]
    lb = Leaderboard(frame, groups, runs, primary, info, keys, notes, problems)
    frame.attrs.update(primary=primary, key_info=info, metric_keys=keys, notes=notes, problems=problems)
    return lb


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
    return cols + EFFICIENCY_COLUMNS


def _row(group: Group, keys: Sequence[str], n_resamples: int, seed: int) -> dict[str, Any]:
    run = group.first
    ok = group.ok_records
    row: dict[str, Any] = {
        "method": run.method,
        "kind": run.kind,
        "method_config": run.method_config,
        "dataset": run.dataset,
        "dataset_revision": run.dataset_revision,
        "protocol": group.protocol_label,
        "n_runs": len(group.runs),
        "run_ids": ";".join(r.run_id for r in group.runs),
        "n_samples": len(ok),
        "n_failed": len(group.records) - len(ok),
        "n_corrupt_lines": sum(len(r.problems) for r in group.runs),
    }
    for k in keys:
        weighted = _pair_weighted(ok, k)
        if weighted is not None:
            mean, low, high = pair_weighted_ci(*weighted, n_resamples=n_resamples, seed=seed)
        else:
            mean, low, high = bootstrap_ci([(r.get("metrics") or {}).get(k) for r in ok], n_resamples, seed=seed)
        row.update({f"{k}_mean": mean, f"{k}_ci_low": low, f"{k}_ci_high": high})

    timing = [r.get("timing") or {} for r in ok]
    memory = [r.get("memory") or {} for r in ok]
    fps, fps_low, fps_high = bootstrap_ci([t.get("fps") for t in timing], n_resamples, seed=seed)
    blocks = clean([b for t in timing for b in (t.get("block_s") or [])])
    row.update(
        fps_mean=fps,
        fps_ci_low=fps_low,
        fps_ci_high=fps_high,
        first_block_s_mean=_mean([t.get("first_block_s") for t in timing]),
        block_p50_s=float(np.quantile(blocks, 0.5)) if blocks.size else math.nan,
        block_p95_s=float(np.quantile(blocks, 0.95)) if blocks.size else math.nan,
        peak_vram_bytes=_max([m.get("peak_device_bytes") for m in memory]),
        peak_rss_bytes=_max([m.get("peak_rss_bytes") for m in memory]),
        kv_bytes_end_mean=_mean([m.get("kv_bytes_end") for m in memory]),
        kv_bytes_peak=_max([m.get("kv_bytes_peak") for m in memory]),
    )
    return row


def _pair_weighted(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(term sums, pair counts) per record when every record carries them for ``key``."""
    extras = [r.get("extra") or {} for r in records]
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


def _sort_order(frame: pd.DataFrame, primary: str | None, info: dict[str, dict[str, Any]]) -> list[int]:
    col = f"{primary}_mean" if primary else None
    hib = higher_is_better(primary, info) if primary else None

    def key(i: int) -> tuple:
        row = frame.iloc[i]
        v = row[col] if col else math.nan
        missing = fmt.is_missing(v)
        score = 0.0 if missing else (-float(v) if hib else float(v))
        return (row["dataset"], row["protocol"], missing, score, row["method"], row["method_config"])

    return sorted(range(len(frame)), key=key)


def rich_table(df: pd.DataFrame, metrics: Sequence[str] | None = None) -> "Table":
    """The leaderboard for the terminal: metrics as "mean [95% CI]", sanity methods marked."""
    from rich import box
    from rich.table import Table

    derived = [c[: -len("_ci_low")] for c in df.columns if c.endswith("_ci_low") and c != "fps_ci_low"]
    available = list(df.attrs.get("metric_keys") or derived)
    primary = df.attrs.get("primary")
    if metrics:
        keys = list(metrics)
    else:
        # A terminal is narrow: the ranking metric and the headline reconstruction metrics;
        # the CSV (--out) and the HTML report carry every key.
        keys = [k for k in dict.fromkeys([primary, *TERMINAL_KEYS]) if k in available] or available[:4]
    info = df.attrs.get("key_info") or {}
    multi = df[["dataset", "protocol"]].drop_duplicates().shape[0] > 1
    table = Table(title="MAG-Bench leaderboard", caption="mean [95% bootstrap CI] over samples; ↑ higher / ↓ lower is better",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    longest = max([len(str(m)) for m in df["method"]] + [6])
    table.add_column("method", overflow="fold", min_width=min(longest, 24))
    if multi:
        table.add_column("dataset / protocol")
    table.add_column("n", justify="right")
    for k in keys:
        arrow = {True: " ↑", False: " ↓"}.get(higher_is_better(k, info), "")
        table.add_column(("* " if k == primary else "") + k + arrow, justify="right", overflow="fold", min_width=9)
    vram = bool(df["peak_vram_bytes"].notna().any()) if len(df) else False  # CPU runs record none
    for col in ("FPS", "p50 block", *(["peak VRAM"] if vram else []), "KV end"):
        table.add_column(col, justify="right", overflow="fold")
    for _, r in df.iterrows():
        name = r["method"] + ("" if r["method_config"] == "default" else f" {r['method_config']}")
        if r["kind"] != "method":
            name += f"\n[dim]({r['kind']})[/]"
        cells = [name]
        if multi:
            cells.append(f"{r['dataset']} / {r['protocol']}")
        n = str(int(r["n_samples"]))
        if r["n_failed"]:
            n += f" [red]+{int(r['n_failed'])} failed[/]"
        cells.append(n)
        for k in keys:
            # The interval on its own line keeps columns narrow enough for a terminal.
            cells.append(fmt.ci(r.get(f"{k}_mean"), r.get(f"{k}_ci_low"), r.get(f"{k}_ci_high")).replace(" [", "\n[", 1))
        cells += [fmt.num(r["fps_mean"]), fmt.seconds(r["block_p50_s"]), *([fmt.nbytes(r["peak_vram_bytes"])] if vram else []),
                  fmt.nbytes(r["kv_bytes_end_mean"])]
        table.add_row(*cells, style="dim" if r["kind"] != "method" else None)
    return table
