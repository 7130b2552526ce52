"""Ranking and verdicts that respect what the runs have and what the validity checks say (issue
20): never ranked by an empty column, the ranking metric named, the summary verdict withheld or
qualified when a check fires for the would-be winner, tags that never contradict each other,
end-to-end FPS first."""

from __future__ import annotations

import html as htmllib
import json
import re
from pathlib import Path

import pytest

from magbench.reports.compare import compare
from magbench.reports.errors import UnknownMetricError
from magbench.reports.html import report
from magbench.reports.leaderboard import build, rich_table

from _reports_fixtures import make_run

EXTRA_KEYS = {
    "bestmatch_coverage": {"higher_is_better": True, "best": None},
    "bestmatch_ordered_lpips": {"higher_is_better": False, "best": 0.0},
    "corr_lpips": {"higher_is_better": False, "best": None},
    "corr_psnr": {"higher_is_better": True, "best": None},
}


def set_metric(run: Path, key: str, values, timing: dict | None = None) -> Path:
    """Give every finished record of ``run`` the value ``values[i]`` (or ``values``) for ``key``
    (None: the key is declared but has no value), declaring the key in the manifest."""
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["key_info"][key] = EXTRA_KEYS.get(key, {"higher_is_better": True, "best": None})
    (run / "manifest.json").write_text(json.dumps(manifest))
    lines = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines() if line.strip()]
    for i, rec in enumerate(lines):
        if rec.get("status") == "ok":
            v = values[i] if isinstance(values, (list, tuple)) else values
            if v is None:
                rec["metrics"].pop(key, None)
            else:
                rec["metrics"][key] = v
            rec["timing"].update(timing or {})
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return run


def _summary_text(page: str) -> str:
    part = page[page.index('class="summary"'):page.index("<h3>Leaderboard")]
    return htmllib.unescape(re.sub(r"<[^>]+>", " ", part))


def _three(root: Path, metrics=("psnr", "ssim")) -> dict[str, Path]:
    return {
        "alpha-mem": make_run(root, "alpha-mem", quality=0.3, metrics=metrics),
        "zeta-mem": make_run(root, "zeta-mem", quality=0.8, metrics=metrics),
        "replay": make_run(root, "replay", kind="floor", quality=0.5, metrics=metrics),
    }


def test_default_ranking_never_uses_a_column_without_values_and_names_the_metric_it_ranks_by(tmp_path):
    runs = _three(tmp_path)
    for run in runs.values():
        set_metric(run, "corr_lpips", None)  # declared by its metric, never computed (no weights)
    lb = build([tmp_path])
    assert lb.primary == "psnr" and list(lb.frame["method"][:2]) == ["zeta-mem", "replay"]
    assert any("Ranked by psnr, the first with values of bestmatch_lpips, lpips, psnr" in n for n in lb.notes)
    assert any("No values for corr_lpips" in n for n in lb.notes)
    table = rich_table(lb.frame)
    assert "ranked by psnr" in str(table.title) and all("corr_lpips" not in str(c.header) for c in table.columns)


def test_primary_asked_for_without_values_is_refused_naming_those_with_values(tmp_path):
    for run in _three(tmp_path).values():
        set_metric(run, "corr_lpips", None)
    with pytest.raises(UnknownMetricError, match="--primary 'corr_lpips': no run has a value for it.*psnr"):
        build([tmp_path], primary="corr_lpips")


def test_skipped_metrics_and_partial_metrics_are_a_note_of_the_leaderboard_and_at_the_top_of_the_report(tmp_path):
    runs = _three(tmp_path)
    for run in runs.values():
        m = json.loads((run / "manifest.json").read_text())
        m["skipped_metrics"] = {"lpips": "weights alexnet-torchvision missing: run `magbench download --metrics`",
                                "correspondence": "weights alexnet-torchvision missing: run `magbench download --metrics` (ran without them: lpips=False)"}
        m["metrics"] = ["psnr", "ssim", "correspondence"]
        (run / "manifest.json").write_text(json.dumps(m))
    note = next(n for n in build([tmp_path]).notes if n.startswith("Not measured"))
    assert "all 3 runs: lpips skipped, and correspondence ran without its weights" in note and "magbench download --metrics" in note
    page = report([tmp_path], tmp_path / "r.html").read_text()
    top = htmllib.unescape(page[: page.index('class="summary"')])
    assert "Not measured in all 3 runs: lpips skipped" in top


def test_summary_verdict_is_withheld_when_the_would_be_winner_best_match_covers_few_frames(tmp_path):
    runs = _three(tmp_path, metrics=("psnr", "bestmatch_lpips"))
    set_metric(runs["zeta-mem"], "bestmatch_coverage", 0.04)  # a frozen video: one frame matched
    set_metric(runs["alpha-mem"], "bestmatch_coverage", 0.8)
    text = _summary_text(report([tmp_path], tmp_path / "r.html").read_text())
    assert "No verdict on bestmatch_lpips: zeta-mem would rank first" in text
    assert "covers only 0.0400 of the ground-truth target frames" in text and "remembers best of" not in text


def test_summary_verdict_is_qualified_when_the_order_preserving_best_match_ranks_another_first(tmp_path):
    runs = _three(tmp_path, metrics=("psnr", "bestmatch_lpips"))
    set_metric(runs["zeta-mem"], "bestmatch_ordered_lpips", 0.5)
    set_metric(runs["alpha-mem"], "bestmatch_ordered_lpips", 0.2)
    text = _summary_text(report([tmp_path], tmp_path / "r.html").read_text())
    assert "zeta-mem remembers best" in text
    assert "Qualified (order): the order-preserving best match (bestmatch_ordered_lpips) ranks alpha-mem first" in text


def test_summary_verdict_is_qualified_on_an_exact_tie_naming_the_tied_row(tmp_path):
    runs = _three(tmp_path, metrics=("psnr",))
    tied = [json.loads(line)["metrics"]["psnr"] for line in (runs["zeta-mem"] / "samples.jsonl").read_text().splitlines()]
    set_metric(runs["alpha-mem"], "psnr", tied)  # a shuffled replay ties the faithful one, say
    text = _summary_text(report([tmp_path], tmp_path / "r.html").read_text())
    assert re.search(r"Qualified \(tie\): (alpha|zeta)-mem ties it exactly on psnr", text)


def test_a_sanity_row_that_is_a_floor_of_some_keys_and_a_ceiling_of_others_is_tagged_sanity_never_floor(tmp_path):
    runs = _three(tmp_path, metrics=("psnr",))
    set_metric(runs["replay"], "corr_psnr", 98.96)
    for name in ("alpha-mem", "zeta-mem"):
        set_metric(runs[name], "corr_psnr", 11.5)
    m = json.loads((runs["replay"] / "manifest.json").read_text())
    m["method"]["bounds"] = {"psnr": "floor", "corr_*": "ceiling"}
    (runs["replay"] / "manifest.json").write_text(json.dumps(m))
    page = report([tmp_path], tmp_path / "r.html", primary="corr_psnr").read_text()
    row = re.search(r'<tr class="kind-floor" data-method="replay">(.*?)</tr>', page, re.S).group(1)
    assert 'badge badge-sanity' in row and 'badge badge-floor' in row and 'badge badge-ceiling' in row
    name_cell = row[: row.index("</th>")]
    assert "badge-floor" not in name_cell and "badge-ceiling" not in name_cell
    assert "replay (ceiling of corr_psnr) 98.96" in _summary_text(page)


def test_speed_chart_and_first_speed_column_use_end_to_end_fps_with_generation_fps_beside(tmp_path):
    runs = _three(tmp_path, metrics=("psnr",))
    for run in runs.values():  # work moved into memorize: generation FPS flatters, end-to-end does not
        set_metric(run, "psnr", None, timing={"fps": 359_870.0, "e2e_fps": 20.0})
        set_metric(run, "psnr", [30.0 + i for i in range(6)])
    lb = build([tmp_path])
    headers = [str(c.header) for c in rich_table(lb.frame).columns]
    assert headers.index("e2e FPS") + 1 == headers.index("gen FPS")
    page = report([tmp_path], tmp_path / "r.html").read_text()
    eff = page[page.index('id="cmp0-efficiency"'):]
    assert eff.index(">e2e FPS<") < eff.index(">gen FPS<") and "359,870" in eff
    assert "against end-to-end FPS (target frames over all of the method" in page


def test_compare_notes_a_low_coverage_run_and_an_order_preserving_disagreement_and_calls_exact_ties_ties(tmp_path):
    a = make_run(tmp_path, "faithful", quality=0.8, metrics=("psnr", "bestmatch_lpips"))
    b = make_run(tmp_path, "frozen", quality=0.9, metrics=("psnr", "bestmatch_lpips"))
    set_metric(a, "bestmatch_coverage", 0.9)
    set_metric(b, "bestmatch_coverage", 0.04)
    set_metric(a, "bestmatch_ordered_lpips", [0.1, 0.11, 0.12, 0.1, 0.11, 0.12])
    set_metric(b, "bestmatch_ordered_lpips", [0.5, 0.52, 0.51, 0.5, 0.52, 0.51])
    set_metric(b, "ssim", 0.5)
    set_metric(a, "ssim", 0.5)
    c = compare(a, b)
    notes = " ".join(c.notes)
    assert "B (frozen)'s best match covers only 0.0400" in notes
    assert "the verdict on bestmatch_lpips (B is better) is not confirmed by the order-preserving best match" in notes
    ssim = next(d for d in c.diffs if d.key == "ssim")
    assert ssim.better is None and "exactly the same on ssim on all 6 shared samples" in ssim.verdict
