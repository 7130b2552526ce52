"""The report over real runs of the harness (sanity methods on the synthetic set)."""

import re

import pytest

from magbench.harness import Harness, RunConfig
from magbench.reports.html import report
from magbench.reports.leaderboard import leaderboard


@pytest.fixture(scope="module")
def real_runs(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("real-runs")
    for method in ("oracle", "replay-context", "repeat-last"):
        cfg = RunConfig(method=method, dataset=f"synthetic:{synth_dir}", out=out / method, metrics=["psnr", "ssim", "bestmatch"],
                        metric_options={"bestmatch": {"random_weights": True}}, device="cpu", limit=2)
        Harness(cfg).run(progress=False)
    return out


def test_leaderboard_over_real_runs_ranks_ceiling_then_replay_then_repeat(real_runs):
    df = leaderboard([real_runs])
    assert list(df["method"]) == ["oracle", "replay-context", "repeat-last"]
    assert list(df["kind"]) == ["ceiling", "floor", "floor"]
    assert (df["n_samples"] == 2).all() and df.attrs["primary"] == "bestmatch_lpips"
    assert df.loc[0, "psnr_mean"] == pytest.approx(100.0)
    assert (df["kv_bytes_end_mean"] > 0).all() and (df["fps_mean"] > 0).all()


def test_report_over_real_runs_has_rows_charts_retention_and_frame_strips(real_runs, tmp_path):
    html = report([real_runs], tmp_path / "report.html").read_text()
    table = html[html.index('id="cmp0-quality"'):]
    assert re.findall(r'data-method="([^"]+)"', table[: table.index("</table>")]) == ["oracle", "replay-context", "repeat-last"]
    for heading in ("<h3>Metrics</h3>", "<h3>Quality vs speed</h3>", "<h3>Memory retention</h3>", "<h3>Memory footprint</h3>"):
        assert heading in html
    assert "psnr vs frames since the switch" in html and "vs seconds since the camera left" in html
    assert html.count("data:image/gif;base64,") == 2 * 3 and "best-match GT" in html
    assert "computed with random backbone weights" in html  # the test setting is disclosed
