"""The HTML report: one self-contained file that works opened from disk, offline.

Everything is inline: CSS and the table-sorting script are read from ``templates/`` and written
into the page; charts (PNG), still frames (PNG) and animated previews (GIF) are embedded as
base64 ``data:`` URIs. That makes the file larger than a folder of images, but it is a single
artefact that can be mailed, attached to an issue or archived with no broken links, and it
fetches nothing (no CDN, no fonts). The drill-down is capped at ``max_samples`` samples per
dataset/protocol to keep the file small.

Rendering uses jinja2 with autoescape on: captions, paths, method names and manifests are
user-controlled text and always appear as text, never as markup.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import jinja2
from markupsafe import Markup

import magbench
from magbench.record import SampleRecord
from magbench.reports import fmt, plots
from magbench.reports import memory as memory_report
from magbench.reports.leaderboard import Group, Leaderboard, build, entry_of
from magbench.reports.paper import html_context as paper_section
from magbench.reports.previews import PreviewError, load_preview, png_uri, side_by_side_gif_uri
from magbench.reports.runs import Run, higher_is_better
from magbench.reports.stats import N_RESAMPLES, SEED
from magbench.reports.verdict import Entry, Verdict, bound_of, row_tag, tied_pairs, verdict
from magbench.store import atomic_write_text

TEMPLATES = Path(__file__).parent / "templates"
MAX_SAMPLES = 12
RETENTION_EXTRA_KEY = "psnr"
MAX_FLATTERED = 8  # rank inversions listed under the validity table  # shown beside the primary metric when both have per-frame values


def report(
    run_dirs: Iterable[Path | str | Any],
    out: Path | str,
    primary: str | None = None,
    max_samples: int = MAX_SAMPLES,
    title: str = "MAG-Bench report",
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Path:
    """Write the report over ``run_dirs`` (run folders or folders of runs) to ``out``."""
    lb = build(run_dirs, primary=primary, n_resamples=n_resamples, seed=seed)
    html = render(lb, title=title, max_samples=max_samples)
    out = Path(out)
    atomic_write_text(out, html)
    return out


def render(lb: Leaderboard, title: str = "MAG-Bench report", max_samples: int = MAX_SAMPLES, paper: bool = True) -> str:
    """``paper``: add the MAG paper's published table beside the measured rows (reports/paper.py)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,  # every {{ }} is escaped; only our own CSS/JS is marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt.num
    env.filters["nbytes"] = fmt.nbytes
    env.filters["seconds"] = fmt.seconds
    warnings: list[str] = [f"Damaged record skipped: {p} (the rest of the file was used)" for p in lb.problems]
    sections = []
    for comparison in dict.fromkeys(g.comparison for g in lb.groups):
        rows = [i for i, g in enumerate(lb.groups) if g.comparison == comparison]
        sections.append(_section(lb, rows, len(sections), max_samples, warnings))
    # What was skipped, random weights, how the ranking metric was chosen: lb.notes, shown at the top.
    page = env.get_template("report.html.j2").render(
        title=title,
        generated_at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=magbench.__version__,
        n_runs=len(lb.runs),
        primary=" / ".join(dict.fromkeys(s["primary"] for s in sections if s["primary"])) or None,
        notes=lb.notes,
        warnings=warnings,
        sections=sections,
        manifests=[_manifest(r) for r in lb.runs],
        paper=paper_section(lb) if paper else None,
        css=Markup((TEMPLATES / "report.css").read_text(encoding="utf-8")),
        js=Markup((TEMPLATES / "report.js").read_text(encoding="utf-8")),
    )
    return page


# -- one dataset/protocol ---------------------------------------------------------------------------
@dataclass
class _Row:
    label: str
    kind: str
    group: Group
    values: dict[str, Any]

    @property
    def tag(self) -> str:
        """The tag beside the row's name (never contradicting its cells' floor/ceiling tags)."""
        return row_tag(self.kind, self.group.first.manifest.get("method") or {})


def _label(values: dict[str, Any]) -> str:
    cfg = values["method_config"]
    return values["method"] if cfg == "default" else f"{values['method']} {cfg}"


def _section(lb: Leaderboard, idx: list[int], n: int, max_samples: int, warnings: list[str]) -> dict[str, Any]:
    rows = [_Row(_label(lb.frame.iloc[i].to_dict()), lb.groups[i].first.kind, lb.groups[i], lb.frame.iloc[i].to_dict()) for i in idx]
    styles = plots.styles_for([(r.label, r.kind) for r in rows])
    keys = [k for k in lb.metric_keys if any(not fmt.is_missing(r.values.get(f"{k}_mean")) for r in rows)]
    primary = lb.primaries.get(rows[0].group.comparison) if lb.primaries else (lb.primary if lb.primary in keys else None)
    task = str(lb.frame.iloc[idx[0]].to_dict().get("task") or "magbench-replay")
    if task in memory_report.MEMORY_TASKS and memory_report.PRIMARY in keys:
        primary = memory_report.PRIMARY  # the replay's primary (LPIPS) is not what these tasks rank by
    if primary:
        keys.remove(primary)
        keys.insert(0, primary)
    info = lb.key_info
    dataset, protocol = rows[0].group.comparison
    for r in rows:
        if r.values["status"] != "ok":  # failed samples, or a run that failed or stopped: with the cause
            ranked = ("not ranked" if r.values["status"] in ("failed", "empty")
                      else f"every row here is ranked on the {int(r.values['n_common'])} samples all ranked rows finished")
            warnings.append(f"{r.label} on {dataset} ({r.values['status']}): {r.values['cause']}; {ranked}.")
        if r.values.get("n_video_flags"):  # the protocol's 16 fps check (records' video_check)
            warnings.append(f"{r.label} on {dataset}: {int(r.values['n_video_flags'])} sample(s) whose video is not at "
                            "the protocol's 16 fps (container frame rate, or frame count against the CSV duration); "
                            "each record's video_check says what was found and done.")
    return {
        "anchor": f"cmp{n}",
        "dataset": dataset,
        "dataset_revision": rows[0].values["dataset_revision"],
        "protocol": protocol,
        "primary": primary,
        "summary": _summary(rows, primary, info, lb.verdicts.get(rows[0].group.comparison)),
        "tables": _tables(rows, keys, primary, info),
        "bars": [
            {"key": k, "uri": plots.bar_chart([r.label for r in rows], [r.values[f"{k}_mean"] for r in rows],
                                              [r.values[f"{k}_ci_low"] for r in rows], [r.values[f"{k}_ci_high"] for r in rows],
                                              k, higher_is_better(k, info), styles)}
            for k in keys
        ],
        "scatter": _scatter(rows, keys, info, styles),
        # The memory tasks' curves are by block age, not by frames since a switch (reports/memory.py).
        "retention": [] if task in memory_report.MEMORY_TASKS else _retention(rows, primary, info, styles),
        "memory": memory_report.section(task, [(r.label, r.kind, r.group.ok_records) for r in rows])
        if task in memory_report.MEMORY_TASKS else None,
        "kv": plots.kv_chart(
            {r.label: [((rec.memory.frames_per_block if rec.memory else []), (rec.memory.kv_bytes_per_block if rec.memory else []))
                       for rec in r.group.ok_records] for r in rows},
            styles,
        ),
        "samples": _samples(rows, primary, max_samples, warnings),
        "validity": _validity(rows, info),
    }


def _bound(row: _Row, key: str) -> str | None:
    """"floor"/"ceiling" where the row's sanity method bounds ``key`` (magbench.reports.verdict)."""
    return bound_of(row.group.first.manifest.get("method") or {}, row.kind, key)


# The paper's best match beside the scores a frozen or shuffled video cannot flatter.
VALIDITY_COLUMNS = [
    ("bestmatch_lpips", "best-match LPIPS (paper)"),
    ("bestmatch_ordered_lpips", "order-preserving LPIPS"),
    ("lpips", "frame-aligned LPIPS"),
    ("bestmatch_psnr", "best-match PSNR (paper)"),
    ("bestmatch_ordered_psnr", "order-preserving PSNR"),
    ("psnr", "frame-aligned PSNR"),
    ("bestmatch_coverage", "GT coverage"),
]


def _validity(rows: list[_Row], info: dict[str, Any]) -> dict[str, Any] | None:
    """Where the paper's best match flatters: each row's best-match next to the order-preserving
    and frame-aligned scores and the coverage, and every pair of rows the two best matches rank
    in opposite orders (a frozen or shuffled video ranked above a faithful one)."""
    cols = [(k, t) for k, t in VALIDITY_COLUMNS if any(not fmt.is_missing(r.values.get(f"{k}_mean")) for r in rows)]
    if not any(k == "bestmatch_ordered_lpips" for k, _ in cols):
        return None
    table = []
    for r in rows:
        cells = [{"text": fmt.ci_parts(r.values.get(f"{k}_mean"), r.values.get(f"{k}_ci_low"), r.values.get(f"{k}_ci_high"))[0],
                  "bound": _bound(r, k)} for k, _ in cols]
        table.append({"label": r.label, "kind": r.kind, "tag": r.tag, "cells": cells})
    flattered = []
    paper, ordered = "bestmatch_lpips", "bestmatch_ordered_lpips"
    for a in rows:
        for b in rows:
            pa, pb = a.values.get(f"{paper}_mean"), b.values.get(f"{paper}_mean")
            oa, ob = a.values.get(f"{ordered}_mean"), b.values.get(f"{ordered}_mean")
            if any(fmt.is_missing(v) for v in (pa, pb, oa, ob)):
                continue
            if pa < pb and oa > ob:  # lower is better for both
                flattered.append(
                    f"The paper's best match ranks {a.label} above {b.label} (LPIPS {fmt.num(pa)} vs {fmt.num(pb)}); "
                    f"the order-preserving best match ranks it below ({fmt.num(oa)} vs {fmt.num(ob)})."
                )
    entries = [_entry(r) for r in rows]
    for a, b in tied_pairs(entries, paper):
        if fmt.is_missing(a.values.get(f"{ordered}_mean")) or fmt.is_missing(b.values.get(f"{ordered}_mean")) or a.mean(ordered) != b.mean(ordered):
            flattered.append(
                f"{a.label} and {b.label} tie exactly on the paper's best match (LPIPS {fmt.num(a.mean(paper))}); "
                f"the order-preserving best match tells them apart ({fmt.num(a.mean(ordered))} vs {fmt.num(b.mean(ordered))})."
            )
    return {"columns": [t for _, t in cols], "rows": table, "flattered": flattered[:MAX_FLATTERED],
            "more": max(0, len(flattered) - MAX_FLATTERED)}


def _entry(row: _Row) -> Entry:
    return entry_of(row.group, row.values)


def _summary(rows: list[_Row], primary: str | None, info: dict[str, Any], v: Verdict | None = None) -> dict[str, Any]:
    """Who remembers best, in words, with the sanity methods as the yardstick; withheld or
    qualified where a validity check fires for the would-be winner (magbench.reports.verdict)."""
    out: dict[str, Any] = {"lines": [], "alerts": [], "best": None, "withheld": None}
    if not primary:
        out["lines"].append("No metric values: nothing to rank.")
        return out
    hib = higher_is_better(primary, info)
    by_label = {r.label: r for r in rows}
    v = v or verdict([_entry(r) for r in rows], primary, info)
    if v.best is None:
        out["lines"].append(f"No run has a value for {primary}.")
        return out

    def ci(r: _Row) -> str:
        return fmt.ci(r.values[f"{primary}_mean"], r.values[f"{primary}_ci_low"], r.values[f"{primary}_ci_high"])

    def better(a: _Row, b: _Row) -> bool:
        x, y = a.values[f"{primary}_mean"], b.values[f"{primary}_mean"]
        return x > y if hib else x < y

    def tag(r: _Row) -> str:
        return _bound(r, primary) or r.tag

    pool = [by_label[e.label] for e in v.pool]
    best = pool[0]
    scored = [r for r in rows if not fmt.is_missing(r.values[f"{primary}_mean"])]
    contenders = [r for r in scored if r.kind == "method"]
    floors = [r for r in scored if _bound(r, primary) == "floor"]
    ceilings = [r for r in scored if _bound(r, primary) == "ceiling"]
    plural = "s" if len(pool) != 1 else ""
    if v.withheld:
        out["withheld"] = {"label": best.label, "value": ci(best)}
        out["lines"].append(
            f"No verdict on {primary}: {best.label} would rank first of the {len(pool)} {v.what}{plural} ({ci(best)}), but "
            + "; ".join(c.text for c in v.checks if c.withholds) + "."
        )
    else:
        out["best"] = {"label": best.label, "kind": tag(best), "value": ci(best)}
        out["lines"].append(f"{best.label} remembers best of the {len(pool)} {v.what}{plural} on {primary} ({plots.direction(hib) or 'direction unknown'}): {ci(best)}.")
    for c in v.checks:
        if not c.withholds:
            out["alerts"].append(f"Qualified ({c.kind}): {c.text}.")
    if len(pool) > 1 and not v.withheld:
        second = pool[1]
        lo_b, hi_b = best.values[f"{primary}_ci_low"], best.values[f"{primary}_ci_high"]
        lo_s, hi_s = second.values[f"{primary}_ci_low"], second.values[f"{primary}_ci_high"]
        if any(fmt.is_missing(x) for x in (lo_b, hi_b, lo_s, hi_s)):
            out["lines"].append(f"Runner-up: {second.label} at {ci(second)}.")
        elif hi_b < lo_s or hi_s < lo_b:
            out["lines"].append(f"Its 95% interval is clear of the runner-up, {second.label} ({ci(second)}).")
        else:
            out["lines"].append(
                f"Its 95% interval overlaps the runner-up's, {second.label} ({ci(second)}): not a clear win "
                "(`magbench compare` gives a paired test on shared samples)."
            )
    if not contenders:
        out["lines"].append("Only sanity methods are in this comparison: add a method run to rank it against them.")
    ref = [f"{r.label} ({_bound(r, primary)} of {primary}) {fmt.num(r.values[f'{primary}_mean'])}" for r in floors + ceilings if r is not best]
    if ref:
        out["lines"].append("Reference points: " + "; ".join(ref) + ".")
    if contenders and floors:
        top_floor = floors[0]
        for r in contenders:
            if not better(r, top_floor):
                out["alerts"].append(f"{r.label} does not beat the floor {top_floor.label} on {primary}.")
    target = (info.get(primary) or {}).get("best")
    for r in ceilings:
        val = r.values[f"{primary}_mean"]
        if target is not None and abs(val - float(target)) > 1e-3 * max(1.0, abs(float(target))):
            out["alerts"].append(
                f"The ceiling {r.label} scores {fmt.num(val)} on {primary}, not its best value {fmt.num(target)}: check the metric."
            )
    return out


EFFICIENCY = [
    # (title, column, first click, formatter, hint)
    # End-to-end first: a method that does its work in memorize() cannot flatter it.
    ("e2e FPS", "e2e_fps_mean", "desc", fmt.num, "end-to-end: target frames per second of all the method's time (reset + memorize + generate + memory accounting), mean over samples (95% CI)"),
    ("gen FPS", "fps_mean", "desc", fmt.num, "generation: target frames per second of generate() alone, mean over samples (95% CI)"),
    ("first block", "first_block_s_mean", "asc", fmt.seconds, "time to the first generated block, mean"),
    ("block p50", "block_p50_s", "asc", fmt.seconds, "median latency of a block, over all blocks"),
    ("block p95", "block_p95_s", "asc", fmt.seconds, "95th percentile latency of a block"),
    ("peak VRAM", "peak_vram_bytes", "asc", fmt.nbytes, "peak device memory (– when not recorded, e.g. CPU)"),
    ("VRAM growth", "device_growth_bytes_mean", "asc", fmt.nbytes, "device memory allocated at the end beyond the loaded method, mean (measured; compare KV end, self-reported)"),
    ("peak RSS", "peak_rss_bytes", "asc", fmt.nbytes, "peak host memory"),
    ("KV end", "kv_bytes_end_mean", "asc", fmt.nbytes, "memory (KV cache) held at the end, mean"),
    ("KV peak", "kv_bytes_peak", "asc", fmt.nbytes, "largest memory (KV cache) held"),
    ("host memory end", "host_bytes_end_mean", "asc", fmt.nbytes, "memory the method holds in host RAM at the end (offloaded or retrieval store), mean; 0 for memories on the device only"),
]


def _head(title: str, hint: str, first: str, primary: bool = False) -> dict[str, Any]:
    return {"title": title, "hint": hint, "first": first, "primary": primary}


def _tables(rows: list[_Row], keys: list[str], primary: str | None, info: dict[str, Any]) -> list[dict[str, Any]]:
    """The quality leaderboard and the efficiency table: same rows, both sortable."""
    ident = [
        _head("#", "rank by the primary metric", "asc"),
        _head("method", "method and its options", "asc"),
        _head("samples", "samples every ranked row finished: the means are over these (this row's failures in red)", "desc"),
    ]
    quality = list(ident)
    for k in keys:
        hib = higher_is_better(k, info)
        arrow = {True: " ↑", False: " ↓"}.get(hib, "")
        quality.append(_head(k + arrow, f"mean and 95% bootstrap CI; {plots.direction(hib) or 'direction unknown'}",
                             "desc" if hib else "asc", k == primary))
    efficiency = ident + [_head(t, h, first) for t, _, first, _, h in EFFICIENCY]
    best_of: dict[str, float] = {}
    contenders = [r for r in rows if r.kind == "method"]
    for k in keys:
        vals = [r.values[f"{k}_mean"] for r in contenders if not fmt.is_missing(r.values[f"{k}_mean"])]
        hib = higher_is_better(k, info)
        if len(vals) > 1 and hib is not None:
            best_of[k] = max(vals) if hib else min(vals)
    q_rows, e_rows = [], []
    for rank, r in enumerate(rows, start=1):
        v = r.values
        cells = [
            _cell(str(rank), rank),
            _cell(v["method"], r.label.lower(), method=True, config=_config_note(v)),
            _cell(str(int(v["n_common"])), int(v["n_common"]), failed=int(v["n_failed"])),
        ]
        q = list(cells)
        for k in keys:
            m, lo, hi = v[f"{k}_mean"], v[f"{k}_ci_low"], v[f"{k}_ci_high"]
            text, interval = fmt.ci_parts(m, lo, hi)
            q.append(_cell(text, _sortable(m), ci=interval, best=k in best_of and r.kind == "method" and m == best_of[k],
                           bound=_bound(r, k)))
        e = list(cells)
        for _, col, _, f, _ in EFFICIENCY:
            stem = col[: -len("_mean")]
            interval = fmt.ci_parts(v[col], v[f"{stem}_ci_low"], v[f"{stem}_ci_high"])[1] if col in ("fps_mean", "e2e_fps_mean") else None
            e.append(_cell(f(v[col]), _sortable(v[col]), ci=interval))
        q_rows.append({"kind": r.kind, "tag": r.tag, "label": r.label, "cells": q})
        e_rows.append({"kind": r.kind, "tag": r.tag, "label": r.label, "cells": e})
    return [
        {"id": "quality", "title": "Leaderboard", "columns": quality, "rows": q_rows,
         "hint": "Click a column header to sort (best first, click again to reverse). Each metric cell: mean over "
                 "samples and its 95% interval; the best method in a column is in bold."},
        {"id": "efficiency", "title": "Efficiency", "columns": efficiency, "rows": e_rows,
         "hint": "Speed and memory, from the same runs. Block latencies are pooled over every block of every sample."},
    ]


def _config_note(v: dict[str, Any]) -> str | None:
    """Under the method name: its options, and for a run that cannot be ranked, why."""
    config = None if v["method_config"] == "default" else v["method_config"]
    if v.get("status") in ("failed", "empty"):
        config = (f"{config} · " if config else "") + f"not ranked ({v['status']}): {v['cause']}"
    return config


def _cell(text: str, sort: Any, method: bool = False, config: str | None = None, failed: int = 0,
          ci: str | None = None, best: bool = False, bound: str | None = None) -> dict[str, Any]:
    return {"text": text, "sort": sort, "method": method, "config": config, "failed": failed, "ci": ci, "best": best,
            "bound": bound}


def _sortable(v: Any) -> str:
    return "" if fmt.is_missing(v) else repr(float(v))


def _scatter(rows: list[_Row], keys: list[str], info: dict[str, Any], styles: dict[str, plots.Style]) -> dict[str, Any] | None:
    key = next((k for k in ("lpips", "bestmatch_lpips") if k in keys), keys[0] if keys else None)
    if key is None:
        return None
    vram = [r.values["peak_vram_bytes"] for r in rows]
    use_vram = any(not fmt.is_missing(v) for v in vram)
    sizes = vram if use_vram else [r.values["peak_rss_bytes"] for r in rows]
    size_label = "peak VRAM" if use_vram else "peak host RSS (no device memory recorded)"
    # End-to-end FPS (what a user waits for); runs recorded before it existed have generation FPS only.
    e2e = any(not fmt.is_missing(r.values.get("e2e_fps_mean")) for r in rows)
    speed_col, speed_label = ("e2e_fps_mean", "end-to-end FPS") if e2e else ("fps_mean", "generation FPS")
    uri = plots.speed_quality(
        [r.label for r in rows], [r.values[speed_col] for r in rows],
        [(r.values[f"{key}_mean"], r.values[f"{key}_ci_low"], r.values[f"{key}_ci_high"]) for r in rows],
        sizes, size_label, key, higher_is_better(key, info), styles, speed_label,
    )
    return None if uri is None else {"uri": uri, "key": key, "size_label": size_label, "speed_label": speed_label}


def _retention(rows: list[_Row], primary: str | None, info: dict[str, Any], styles: dict[str, plots.Style]) -> list[dict[str, str]]:
    charts: list[dict[str, str]] = []
    keys = [k for k in dict.fromkeys([primary, RETENTION_EXTRA_KEY]) if k]
    for k in keys:
        curves = [plots.mean_curve(r.label, [rec.per_frame.get(k) or [] for rec in r.group.ok_records]) for r in rows]
        uri = plots.curves_chart([c for c in curves if c], k, higher_is_better(k, info), "frames since the switch (target frame index)", styles,
                                 f"{k} vs frames since the switch")
        if uri:
            charts.append({"title": f"{k} vs frames since the switch", "uri": uri,
                           "caption": "Mean over samples; band: ±1.96 standard errors."})
    if primary:
        curves = []
        for r in rows:
            recs = [rec for rec in r.group.ok_records if rec.extra.get("seconds_since_leave")]
            curves.append(plots.binned_curve(r.label, [rec.extra["seconds_since_leave"] for rec in recs],
                                             [rec.per_frame.get(primary) or [] for rec in recs]))
        uri = plots.curves_chart([c for c in curves if c], primary, higher_is_better(primary, info),
                                 "seconds since the camera left the starting view", styles, f"{primary} vs time away")
        if uri:
            charts.append({"title": f"{primary} vs seconds since the camera left", "uri": uri,
                           "caption": "Samples with camera poses only; values averaged in time bins, band: ±1.96 standard errors."})
    return charts


def _samples(rows: list[_Row], primary: str | None, max_samples: int, warnings: list[str]) -> dict[str, Any]:
    by_row: list[dict[str, SampleRecord]] = [{rec.sample_id: rec for rec in r.group.records} for r in rows]
    ids = list(dict.fromkeys(sid for recs in by_row for sid in recs))
    shown = ids[:max_samples]
    samples = []
    for sid in shown:
        gt: list[dict[str, Any]] | None = None
        gt_index = None
        methods = []
        caption = ""
        for r, recs in zip(rows, by_row):
            rec = recs.get(sid)
            if rec is None:
                continue
            caption = caption or str(rec.caption or "")
            entry: dict[str, Any] = {"label": r.label, "kind": r.kind, "tag": r.tag, "error": None, "frames": [], "gif": None, "own_gt": None}
            if not rec.ok:
                entry["error"] = str(rec.error or "failed")
                methods.append(entry)
                continue
            m = rec.metrics.get(primary) if primary else None
            entry["score"] = None if fmt.is_missing(m) else f"{primary} {fmt.num(m)}"
            try:
                pv = load_preview(_run_of(r.group, rec).path, rec)
            except PreviewError as exc:
                warnings.append(str(exc))
                pv = None
            if pv is None:
                entry["error"] = "no preview saved"
                methods.append(entry)
                continue
            per_frame = (rec.per_frame.get(primary) or []) if primary else []
            picks = pv.picks()
            own_gt = [{"label": name, "index": int(pv.frame_index[i]), "uri": png_uri(pv.target[i])} for name, i in picks]
            if gt is None:
                gt, gt_index = own_gt, pv.frame_index.tolist()
            elif pv.frame_index.tolist() != gt_index or own_gt[0]["uri"] != gt[0]["uri"]:
                entry["own_gt"] = own_gt  # another resolution or frame choice: show its own ground truth
            for name, i in picks:
                t = int(pv.frame_index[i])
                val = per_frame[t] if t < len(per_frame) else None
                entry["frames"].append({
                    "label": name, "index": t, "uri": png_uri(pv.generated[i]),
                    "score": None if fmt.is_missing(val) else f"{primary} {fmt.num(val)}",
                    "match": None if pv.bestmatch_target is None else png_uri(pv.bestmatch_target[i]),
                    "match_index": _match_index(rec, t),
                })
            entry["gif"] = side_by_side_gif_uri(pv.target, pv.generated)
            methods.append(entry)
        samples.append({"sample_id": sid, "caption": caption, "gt": gt or [], "methods": methods})
    return {"items": samples, "total": len(ids), "shown": len(shown)}


def _match_index(rec: SampleRecord, t: int) -> int | None:
    idx = rec.extra.get("bestmatch_indices")
    return int(idx[t]) if isinstance(idx, list) and t < len(idx) and isinstance(idx[t], (int, float)) else None


def _run_of(group: Group, rec: SampleRecord) -> Run:
    for run in group.runs:
        if any(r is rec for r in run.records):
            return run
    return group.first


# -- manifests ----------------------------------------------------------------------------------
def _manifest(run: Run) -> dict[str, Any]:
    m = run.manifest
    facts = [
        ("run folder", str(run.path)),
        ("method", f"{run.method} ({run.kind})"),
        ("method options", run.method_config),
        ("dataset", f"{run.dataset} @ {run.dataset_revision or '?'}, {((m.get('dataset') or {}).get('num_samples'))} samples"),
        ("protocol", json.dumps(run.protocol, sort_keys=True)),
        ("metrics", ", ".join(map(str, m.get("metrics") or []))),
        ("seed", str(m.get("seed"))),
        ("device / dtype", f"{m.get('device')} / {m.get('dtype')}"),
        ("git commit", str(m.get("git_commit") or "–")),
        ("created", str(m.get("created_at") or "–")),
        ("fingerprint", str(m.get("fingerprint") or "–")),
    ]
    if m.get("skipped_metrics"):
        facts.append(("skipped metrics", "; ".join(f"{k}: {v}" for k, v in m["skipped_metrics"].items())))
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "facts": facts,
        "hardware": _kv(m.get("hardware")),
        "versions": _kv(m.get("versions")),
        "config": json.dumps(m.get("config") or {}, indent=2, sort_keys=True, default=str),
        "json": json.dumps(m, indent=2, sort_keys=True, default=str),
        "n_records": len(run.records),
        "problems": [str(p) for p in run.problems],
    }


def _kv(d: Any) -> list[tuple[str, str]]:
    if not isinstance(d, dict):
        return []
    return [(str(k), json.dumps(v) if isinstance(v, (dict, list)) else str(v)) for k, v in sorted(d.items())]
