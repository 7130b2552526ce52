"""The MAG paper's published MAG-Bench table beside measured rows: shipped with its source, in the
paper's layout, labelled as reported, and never part of any measured statistic."""

import math

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from magbench.reports.leaderboard import build
from magbench.reports.paper import COLUMNS, MEASURED, load_paper_figures, reported_frame, side_by_side

from _reports_fixtures import PROTOCOL, make_run, read_records

LABEL = "reported in the paper (not measured)"
METRICS = ("psnr", "ssim", "lpips", "bestmatch_lpips")
HISTORY = {**PROTOCOL, "memory_source": "generated"}
GT = {**PROTOCOL, "id": PROTOCOL["id"] + "-gtmem", "memory_source": "ground-truth"}
MAGBENCH = {"id": "magbench", "revision": "main", "num_samples": 6}


def _runs(root):
    return {
        "mag": make_run(root, "mag-history", method="mag", quality=0.6, protocol=HISTORY, dataset=MAGBENCH, metrics=METRICS),
        "mag-gt": make_run(root, "mag-gt", method="mag", quality=0.8, protocol=GT, dataset=MAGBENCH, metrics=METRICS),
        "sf": make_run(root, "sf-history", method="self-forcing", quality=0.4, protocol=HISTORY, dataset=MAGBENCH, metrics=METRICS),
        "mine": make_run(root, "mine", method="my-method", quality=0.5, protocol=HISTORY, dataset=MAGBENCH, metrics=METRICS),
    }


def test_shipped_figures_are_the_papers_table_with_its_source():
    figs = load_paper_figures()
    assert figs.source["arxiv"] == "2512.18741" and "MAG-Bench" in figs.source["table"]
    assert figs.label == LABEL
    df = reported_frame()
    assert list(df["paper_method"]) == ["MAG", "LongLive", "CausVid", "Self Forcing"]  # the paper's order
    mag = df[df["method"] == "mag"].iloc[0]
    assert (mag["history_psnr"], mag["history_ssim"], mag["history_lpips"]) == (18.99, 0.60, 0.23)
    assert (mag["gt_psnr"], mag["gt_ssim"], mag["gt_lpips"]) == (20.77, 0.66, 0.17)
    sf = df[df["method"] == "self-forcing"].iloc[0]
    assert (sf["history_psnr"], sf["gt_lpips"]) == (14.46, 0.42)
    assert set(df["source"]) == {LABEL}


def test_data_file_is_package_data():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "paper_mag_bench.json" in pyproject["tool"]["setuptools"]["package-data"]["magbench.reports"]


def test_measured_rows_pair_the_two_memory_sources_beside_the_reported_row(tmp_path):
    runs = _runs(tmp_path)
    lb = build(runs.values(), n_resamples=50)
    df = side_by_side(lb)
    assert list(df.columns) == COLUMNS
    assert list(zip(df["method"], df["source"])) == [
        ("mag", LABEL), ("mag", MEASURED), ("longlive", LABEL), ("causvid", LABEL),
        ("self-forcing", LABEL), ("self-forcing", MEASURED), ("my-method", MEASURED),
    ]
    mean = lambda run, key: float(np.mean([r["metrics"][key] for r in read_records(run) if r["status"] == "ok"]))  # noqa: E731
    mag = df[(df["method"] == "mag") & (df["source"] == MEASURED)].iloc[0]
    assert mag["history_lpips"] == pytest.approx(mean(runs["mag"], "bestmatch_lpips"))
    assert mag["gt_lpips"] == pytest.approx(mean(runs["mag-gt"], "bestmatch_lpips"))
    assert mag["run_ids"] == "mag-history;mag-gt" or mag["run_ids"] == "mag-gt;mag-history"
    sf = df[(df["method"] == "self-forcing") & (df["source"] == MEASURED)].iloc[0]
    assert not math.isnan(sf["history_lpips"]) and math.isnan(sf["gt_lpips"])  # GT context not measured
    assert math.isnan(mag["history_psnr"])  # no bestmatch_psnr in these runs: left empty, never filled in


def test_rows_of_another_dataset_or_protocol_setting_are_not_paired(tmp_path):
    make_run(tmp_path, "mag-history", method="mag", protocol=HISTORY, dataset=MAGBENCH, metrics=METRICS)
    make_run(tmp_path, "mag-gt-other", method="mag", protocol={**GT, "switch_fraction": 0.5}, dataset=MAGBENCH, metrics=METRICS)
    df = side_by_side(build([tmp_path], n_resamples=20))
    measured = df[df["source"] == MEASURED]
    assert len(measured) == 2
    assert sorted(measured["gt_lpips"].isna()) == [False, True]


def test_reported_figures_never_enter_the_leaderboard_statistics(tmp_path):
    runs = _runs(tmp_path)
    lb = build(runs.values(), n_resamples=50)
    side_by_side(lb)  # building the paper table changes nothing in the leaderboard
    assert len(lb.frame) == 4 and set(lb.frame["run_ids"]) == {"mag-history", "mag-gt", "sf-history", "mine"}
    for run in runs.values():
        row = lb.frame[lb.frame["run_ids"] == run.name].iloc[0]
        expect = np.mean([r["metrics"]["bestmatch_lpips"] for r in read_records(run) if r["status"] == "ok"])
        assert row["bestmatch_lpips_mean"] == pytest.approx(expect, rel=1e-12)
        assert row["n_samples"] == 6
    assert not lb.frame.astype(str).apply(lambda c: c.str.contains("reported")).any().any()


def test_html_report_shows_the_reported_rows_labelled_beside_measured_ones(tmp_path):
    from magbench.reports.html import render

    _runs(tmp_path / "runs")
    make_run(tmp_path / "runs", "evil", method="<script>x</script>", protocol=HISTORY, dataset=MAGBENCH, metrics=METRICS)
    html = render(build([tmp_path / "runs"], n_resamples=20))
    section = html[html.index('<section id="paper">') : html.index("</section>", html.index('<section id="paper">'))]
    assert section.count(LABEL) >= 4 and "2512.18741" in section
    assert "20.77" in section and "0.17" in section and "history context" in section and "GT context" in section
    assert section.count('class="measured"') == 4 and section.count('class="reported"') == 4
    assert "<script>x" not in html and "&lt;script&gt;x" in section  # method names are text, never markup
    assert '<section id="paper">' not in render(build([tmp_path / "runs"], n_resamples=20), paper=False)


def test_leaderboard_with_paper_writes_a_separate_csv_and_leaves_the_leaderboard_alone(tmp_path):
    from magbench.reports.cli import register

    app = typer.Typer()
    register(app)
    _runs(tmp_path / "runs")
    runner = CliRunner()
    plain = runner.invoke(app, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "a.csv")])
    assert plain.exit_code == 0, plain.output
    res = runner.invoke(app, ["leaderboard", str(tmp_path / "runs"), "--with-paper", "--out", str(tmp_path / "b.csv")],
                        env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert LABEL in res.output and "2512.18741" in res.output
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    paper = pd.read_csv(tmp_path / "b.paper.csv")
    assert list(paper.columns) == COLUMNS and (paper["source"] == LABEL).sum() == 4
