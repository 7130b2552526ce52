"""The MAG paper's published MAG-Bench table, beside measured rows, in the paper's layout.

The figures ship in ``paper_mag_bench.json`` with their source (arXiv 2512.18741, the MAG-Bench
reconstruction table). They were not measured by magbench: every row built from them is marked
"reported in the paper (not measured)" and they never enter the leaderboard's statistics (they
are read only here, and only into this separate table).

Layout, as the paper's: methods down; history context (``--memory-source generated``) and GT
context (``--memory-source ground-truth``) across; best-match PSNR / SSIM / LPIPS in each.
Measured rows pair a leaderboard row of each memory source when method, method config, dataset
and every other protocol setting agree; a setting not measured is left empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from magbench.reports.leaderboard import Leaderboard

DATA_FILE = "paper_mag_bench.json"
MEASURED = "measured"
SETTINGS = (("generated", "history"), ("ground-truth", "gt"))  # memory source -> column prefix
METRICS = (("bestmatch_psnr", "psnr"), ("bestmatch_ssim", "ssim"), ("bestmatch_lpips", "lpips"))
VALUE_COLUMNS = [f"{prefix}_{short}" for _, prefix in SETTINGS for _, short in METRICS]
COLUMNS = ["method", "paper_method", "source", "kind", "method_config", "dataset", "run_ids", *VALUE_COLUMNS]


@dataclass(frozen=True)
class PaperFigures:
    """The published table: its source, the label its rows carry, and one entry per method."""

    source: dict[str, str]
    label: str
    setting_names: dict[str, str]
    rows: list[dict[str, Any]]

    def citation(self) -> str:
        return f"{self.source['paper']}, arXiv {self.source['arxiv']}: {self.source['table']}"


@lru_cache(maxsize=1)
def load_paper_figures() -> PaperFigures:
    data = json.loads(resources.files("magbench.reports").joinpath(DATA_FILE).read_text(encoding="utf-8"))
    return PaperFigures(source=data["source"], label=data["label"], setting_names=data["settings"], rows=data["rows"])


def reported_frame() -> pd.DataFrame:
    """The paper's rows alone, in the paper's layout and order."""
    figs = load_paper_figures()
    rows = []
    for r in figs.rows:
        row: dict[str, Any] = {"method": r["method"], "paper_method": r["paper_method"], "source": figs.label,
                               "kind": "method", "method_config": "", "dataset": "magbench (paper)", "run_ids": ""}
        for setting, prefix in SETTINGS:
            for key, short in METRICS:
                row[f"{prefix}_{short}"] = float(r[setting][key])
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _pairing_key(lb: "Leaderboard", i: int) -> tuple[str, ...]:
    """What must agree for two rows to be one measured row: all but the memory source."""
    g, row = lb.groups[i], lb.frame.iloc[i]
    protocol = {k: v for k, v in g.first.protocol.items() if k not in ("memory_source", "id")}
    return (str(row["method"]), str(row["method_config"]), str(row["dataset"]), str(row["dataset_revision"]),
            json.dumps(protocol, sort_keys=True, default=str))


def measured_frame(lb: "Leaderboard") -> pd.DataFrame:
    """The leaderboard's rows that report best-match metrics, one row per method setting."""
    paired: dict[tuple[str, ...], dict[str, Any]] = {}
    means = {key: f"{key}_mean" for key, _ in METRICS}
    if not any(c in lb.frame.columns for c in means.values()):
        return pd.DataFrame(columns=COLUMNS)
    paper_names = {r["method"]: r["paper_method"] for r in load_paper_figures().rows}
    for i in range(len(lb.frame)):
        row = lb.frame.iloc[i]
        source = str(lb.groups[i].first.protocol.get("memory_source") or "generated")
        prefix = dict(SETTINGS).get(source)
        if prefix is None:
            continue
        out = paired.setdefault(_pairing_key(lb, i), {
            "method": row["method"], "paper_method": paper_names.get(str(row["method"]), ""), "source": MEASURED,
            "kind": row["kind"], "method_config": row["method_config"], "dataset": row["dataset"], "run_ids": "",
            **{c: float("nan") for c in VALUE_COLUMNS},
        })
        out["run_ids"] = ";".join(x for x in (out["run_ids"], str(row["run_ids"])) if x)
        for key, short in METRICS:
            col = means[key]
            out[f"{prefix}_{short}"] = float(row[col]) if col in lb.frame.columns else float("nan")
    rows = [r for r in paired.values() if not all(pd.isna(r[c]) for c in VALUE_COLUMNS)]
    return pd.DataFrame(rows, columns=COLUMNS)


def side_by_side(lb: "Leaderboard | None" = None) -> pd.DataFrame:
    """Reported and measured rows together: the paper's methods in its order, each reported row
    followed by that method's measured rows; then measured methods the paper does not have."""
    reported, measured = reported_frame(), (measured_frame(lb) if lb is not None else pd.DataFrame(columns=COLUMNS))
    order = {m: i for i, m in enumerate(reported["method"])}
    parts = []
    for method in reported["method"]:
        parts.append(reported[reported["method"] == method])
        parts.append(measured[measured["method"] == method])
    rest = measured[~measured["method"].isin(list(order))]
    parts.append(rest)
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True)[COLUMNS] if parts else pd.DataFrame(columns=COLUMNS)


def _as_printed(v: Any) -> str:
    """A reported figure with the paper's two decimals (no invented precision)."""
    return "–" if pd.isna(v) else f"{float(v):.2f}"


def rich_table(df: pd.DataFrame):
    """The side-by-side table for the terminal."""
    from rich.table import Table

    from magbench.reports import fmt

    figs = load_paper_figures()
    table = Table(title=f"MAG-Bench, the paper's layout ({figs.citation()})", title_justify="left",
                  caption="history: --memory-source generated; GT: --memory-source ground-truth", caption_justify="left")
    table.add_column("method", no_wrap=True)
    table.add_column("source", min_width=12)
    table.add_column("dataset")
    for setting, prefix in SETTINGS:
        for _, short in METRICS:
            table.add_column(f"{'history' if setting == 'generated' else 'GT'} {short.upper()}", justify="right")
    for _, r in df.iterrows():
        label = r["method"] if not r["method_config"] or r["method_config"] == "default" else f"{r['method']} {r['method_config']}"
        style = "italic dim" if r["source"] != MEASURED else None
        values = (fmt.num(r[c]) if r["source"] == MEASURED else _as_printed(r[c]) for c in VALUE_COLUMNS)
        table.add_row(label, str(r["source"]), str(r["dataset"]), *values, style=style)
    return table


def html_context(lb: "Leaderboard | None") -> dict[str, Any]:
    """What the report's paper section shows (the template escapes every value)."""
    from magbench.reports import fmt

    figs = load_paper_figures()
    df = side_by_side(lb)
    rows = []
    for _, r in df.iterrows():
        cfg = r["method_config"]
        rows.append({
            "method": r["method"], "paper_method": r["paper_method"], "config": "" if cfg in ("", "default") else cfg,
            "reported": r["source"] != MEASURED, "source": r["source"], "dataset": r["dataset"], "kind": r["kind"],
            "values": [fmt.num(r[c]) if r["source"] == MEASURED else _as_printed(r[c]) for c in VALUE_COLUMNS],
        })
    return {
        "citation": figs.citation(),
        "label": figs.label,
        "settings": [figs.setting_names[s] for s, _ in SETTINGS],
        "metrics": [short.upper() for _, short in METRICS],
        "rows": rows,
    }
