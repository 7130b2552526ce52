"""Leaderboard and report: VBench's pair-weighted consistency, the best-match columns, the
validity section and per-metric floor/ceiling labels."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from magbench.reports.html import render
from magbench.reports.leaderboard import build, leaderboard, pair_weighted_ci

from _reports_fixtures import make_run, read_records

BM = ("psnr", "ssim", "lpips", "bestmatch_lpips")


def _rewrite(run, edit) -> None:
    recs = read_records(run)
    for i, r in enumerate(recs):
        edit(i, r)
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))


def _with_manifest(run, **method) -> None:
    m = json.loads((run / "manifest.json").read_text())
    m["method"].update(method)
    (run / "manifest.json").write_text(json.dumps(m))


def test_consistency_is_pair_weighted_across_videos_as_vbench(tmp_path):
    run = make_run(tmp_path, "m", n=3, metrics=("psnr",))
    videos = [(0.9, 10), (0.5, 2), (0.7, 40)]  # (per-video score, frame pairs)

    def edit(i, r):
        score, pairs = videos[i]
        r["metrics"]["subject_consistency"] = score
        r["extra"].update(subject_consistency_sum=score * pairs, subject_consistency_pairs=pairs)

    _rewrite(run, edit)
    row = leaderboard([run]).iloc[0]
    expected = (0.9 * 10 + 0.5 * 2 + 0.7 * 40) / 52
    assert row["subject_consistency_mean"] == pytest.approx(expected)
    assert row["subject_consistency_mean"] != pytest.approx(np.mean([v for v, _ in videos]))
    assert row["subject_consistency_ci_low"] <= expected <= row["subject_consistency_ci_high"]


def test_records_without_term_sums_keep_the_mean_over_samples(tmp_path):
    run = make_run(tmp_path, "m", n=2, metrics=("psnr",))
    _rewrite(run, lambda i, r: r["metrics"].update(subject_consistency=[0.2, 0.4][i]))
    assert leaderboard([run]).iloc[0]["subject_consistency_mean"] == pytest.approx(0.3)
    assert math.isnan(pair_weighted_ci(np.array([1.0]), np.array([0.0]))[0])  # no pairs


def _validity_runs(tmp_path):
    """A faithful method and a frozen probe that the paper's best match ranks first."""
    runs = {
        "faithful": make_run(tmp_path, "faithful", quality=0.7, metrics=BM),
        "hold-first": make_run(tmp_path, "hold-first", kind="floor", quality=0.9, metrics=BM),
    }
    scores = {"faithful": (0.20, 1.0), "hold-first": (0.45, 1 / 24)}  # (ordered lpips, coverage)

    for name, run in runs.items():
        def edit(i, r, name=name):
            ordered, cov = scores[name]
            r["metrics"].update(bestmatch_ordered_lpips=ordered, bestmatch_ordered_psnr=30 - 20 * ordered,
                                bestmatch_coverage=cov)
        _rewrite(run, edit)
    _with_manifest(runs["hold-first"], bounds={"psnr": "floor", "lpips": "floor", "bestmatch_ordered_*": "floor"})
    return runs


def test_leaderboard_has_the_best_match_coverage_and_ordered_columns(tmp_path):
    _validity_runs(tmp_path)
    df = leaderboard([tmp_path])
    assert {"bestmatch_coverage_mean", "bestmatch_ordered_lpips_mean", "bestmatch_ordered_psnr_ci_low"} <= set(df.columns)


def test_report_validity_section_shows_when_best_match_flatters_a_frozen_video(tmp_path):
    _validity_runs(tmp_path)
    html = render(build([tmp_path]))
    section = html[html.index("Validity of best match"): html.index("<h3>Samples</h3>")]
    assert re.findall(r'data-method="([^"]+)"', section) == ["hold-first", "faithful"]
    assert "order-preserving LPIPS" in section and "GT coverage" in section
    assert "ranks hold-first above faithful" in section
    # floor only where the probe bounds the metric: not on the paper's best match
    row = section[section.index('data-method="hold-first"'):]
    row = row[: row.index("</tr>")]
    cells = re.findall(r"<td>(.*?)</td>", row)
    assert "badge-floor" not in cells[0] and "badge-floor" in cells[1]  # bestmatch_lpips, ordered


def test_no_validity_section_without_the_ordered_best_match(tmp_path):
    make_run(tmp_path, "m", metrics=BM)
    assert "Validity of best match" not in render(build([tmp_path]))
