"""The memory tasks' part of the report (``memory-recall``, ``memory-reconstruction``).

Per task, from each row's finished records (their typed part, :class:`magbench.tasks.memory.MemoryPart`):

* a recall-by-age curve per method (mean over samples of each block's score at that age, with a
  normal 95% band; age = blocks since memorised) for PSNR, and SSIM / LPIPS / latent MSE where
  recorded;
* a rate-distortion chart: memory bytes per memorised frame against recall PSNR (mean over
  samples with its 95% interval), log bytes;
* the per-block table in the paper's shape (block index across, counted from 1 as the paper
  prints it; mean PSNR over samples in each cell), with the MAG paper's "memory model alone"
  figures (``paper_memory_model.json``) as a separate row labelled "reported in the paper (not
  measured)". Reported figures are never averaged with measured ones.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

import numpy as np

from magbench.reports import fmt, plots

PAPER_FILE = "paper_memory_model.json"
MEMORY_TASKS = ("memory-recall", "memory-reconstruction")
PRIMARY = "recall_psnr"  # what these tasks' sections rank by (the tasks' primary_metric)
AGE_KEYS = (("psnr", "recall_psnr", True), ("ssim", "recall_ssim", True), ("lpips", "recall_lpips", False),
            ("latent_mse", "recall_latent_mse", False))
MAX_TABLE_BLOCKS = 16


@lru_cache(maxsize=1)
def paper_memory_model() -> dict[str, Any]:
    return json.loads(resources.files("magbench.reports").joinpath(PAPER_FILE).read_text(encoding="utf-8"))


def _get(rec: Any, key: str) -> Any:
    """A task-part field of a record (a SampleRecord with its part, or its JSON dict)."""
    if isinstance(rec, dict):
        return rec.get(key)
    part = getattr(rec, "part", None)
    return getattr(part, key, None) if part is not None else None


def _mean_ci(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    v = np.array([x for x in values if not fmt.is_missing(x)], dtype=float)
    if not v.size:
        return None, None, None
    m = float(v.mean())
    if v.size < 2:
        return m, None, None
    h = 1.96 * float(v.std(ddof=1)) / np.sqrt(v.size)
    return m, m - h, m + h


def age_curves(rows: Sequence[tuple[str, Sequence[Any]]], short: str) -> list[plots.Curve]:
    """One curve per row: ``block_<short>`` by age (index = age), averaged over samples."""
    out = []
    for label, records in rows:
        series = []
        for rec in records:
            vals = _get(rec, f"block_{short}")
            if vals:
                series.append(list(reversed(vals)))  # stored by block index: age = last - index
        curve = plots.mean_curve(label, series)
        if curve is not None:
            out.append(curve)
    return out


def rate_points(rows: Sequence[tuple[str, Sequence[Any]]]) -> list[plots.RatePoint]:
    out = []
    for label, records in rows:
        bpf = [_get(r, "memory_bytes_per_frame") for r in records]
        psnr = [float(np.mean(v)) for r in records if (v := _get(r, "block_psnr"))]
        b, _, _ = _mean_ci([x for x in bpf if x is not None])
        m, lo, hi = _mean_ci(psnr)
        if b is not None and m is not None:
            out.append(plots.RatePoint(label, b, m, lo, hi))
    return out


def block_table(task: str, rows: Sequence[tuple[str, str, Sequence[Any]]]) -> dict[str, Any]:
    """The paper's shape: rows x block index (1-based), mean PSNR per cell (over the samples
    that have that block; their count beside it), and the paper's reported row."""
    measured = []
    width = 0
    for label, kind, records in rows:
        per_block: dict[int, list[float]] = {}
        for rec in records:
            for i, v in enumerate(_get(rec, "block_psnr") or []):
                if not fmt.is_missing(v):
                    per_block.setdefault(i, []).append(float(v))
        width = max(width, max(per_block, default=-1) + 1)
        measured.append((label, kind, per_block))
    paper = paper_memory_model()
    reported = {int(k): float(v) for k, v in paper["by_block"].items()}
    width = min(max(width, max(reported)), MAX_TABLE_BLOCKS)
    table = []
    for label, kind, per_block in measured:
        cells = []
        for i in range(width):
            vals = per_block.get(i, [])
            cells.append({"text": fmt.num(float(np.mean(vals))) if vals else "", "n": len(vals)})
        table.append({"label": label, "kind": kind, "source": "measured", "cells": cells})
    table.append({
        "label": paper["paper_method"], "kind": "reported", "source": paper["label"],
        "cells": [{"text": fmt.num(reported[i + 1]) if (i + 1) in reported else "", "n": None} for i in range(width)],
    })
    citation = f"{paper['source']['paper']}, arXiv {paper['source']['arxiv']}: {paper['source']['table']}"
    note = paper["note"] + ("" if task == paper["task"] else f" The paper's figures are from its {paper['task']} test, shown here for reference only.")
    return {"columns": [f"block {i + 1}" for i in range(width)], "rows": table, "citation": citation, "note": note}


def section(task: str, rows: Sequence[tuple[str, str, Sequence[Any]]]) -> dict[str, Any]:
    """Everything the report shows for one memory task: ``rows`` = (label, kind, ok records)."""
    styles = plots.styles_for([(label, kind) for label, kind, _ in rows])
    pairs = [(label, records) for label, _, records in rows]
    curves = []
    for short, key, hib in AGE_KEYS:
        uri = plots.curves_chart(age_curves(pairs, short), key, hib, "age (blocks since memorised)", styles,
                                 f"{key} by age: what each memory gives back")
        if uri:
            curves.append({"key": key, "uri": uri})
    return {
        "task": task,
        "curves": curves,
        "rate_distortion": plots.rate_distortion(rate_points(pairs), "recall_psnr", True, styles,
                                                 "Rate-distortion: recall PSNR vs memory per frame"),
        "blocks": block_table(task, rows),
    }
