"""`magbench leaderboard | report | compare` as registered on the main app."""

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from magbench.errors import MagbenchError
from magbench.reports.cli import register

from _reports_fixtures import PROTOCOL, make_run, sanity_trio

runner = CliRunner()


@pytest.fixture()
def app():
    a = typer.Typer()
    register(a)
    return a


def test_main_cli_has_the_report_commands():
    from magbench.cli import app as main_app

    names = set(typer.main.get_command(main_app).commands)
    assert {"leaderboard", "report", "compare"} <= names


def test_leaderboard_prints_the_table_and_writes_csv(app, tmp_path):
    sanity_trio(tmp_path / "runs")
    res = runner.invoke(app, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb.csv"), "--primary", "psnr"])
    assert res.exit_code == 0, res.output
    assert "zeta-mem" in res.output and "(floor)" in res.output
    df = pd.read_csv(tmp_path / "lb.csv")
    assert list(df["method"]) == ["oracle", "zeta-mem", "repeat-last"] and "psnr_ci_low" in df


def test_leaderboard_accepts_several_run_folders(app, tmp_path):
    runs = sanity_trio(tmp_path / "runs")
    res = runner.invoke(app, ["leaderboard", str(runs["oracle"]), str(runs["repeat-last"]), "--out", str(tmp_path / "lb.csv")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "lb.csv")) == 2


def test_report_writes_html(app, tmp_path):
    sanity_trio(tmp_path / "runs")
    res = runner.invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r.html"), "--samples", "1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")


def test_compare_prints_verdicts(app, tmp_path):
    a = make_run(tmp_path, "weak", quality=0.3)
    b = make_run(tmp_path, "strong", quality=0.8)
    res = runner.invoke(app, ["compare", str(a), str(b), "--metric", "lpips"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "B is better on lpips by" in res.output and "psnr" not in res.output


@pytest.mark.parametrize("args, message", [
    (["leaderboard", "{empty}"], "no runs found"),
    (["report", "{missing}"], "no such folder"),
    (["compare", "{a}", "{b}"], "different protocols"),
])
def test_bad_input_raises_a_one_line_magbench_error(app, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    a = make_run(tmp_path / "runs", "a")
    b = make_run(tmp_path / "runs", "b", protocol={**PROTOCOL, "fps": 8})
    paths = {"empty": tmp_path / "empty", "missing": tmp_path / "nope", "a": a, "b": b}
    res = runner.invoke(app, [x.format(**paths) for x in args])
    assert isinstance(res.exception, MagbenchError) and message in str(res.exception)
    assert "\n" not in str(res.exception)
