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


def test_failed_and_empty_runs_show_their_cause_in_the_terminal_csv_and_report(app, tmp_path):
    import json

    make_run(tmp_path / "runs", "good", n=3)
    empty = make_run(tmp_path / "runs", "wan-smoke", n=0)
    (empty / "fatal.json").write_text(json.dumps({"error": "No module named 'diffusers': pip install -e '.[wan]'",
                                                  "error_type": "ModuleNotFoundError", "traceback": "", "at": "2025-01-01T00:00:00+00:00"}))
    res = runner.invoke(app, ["leaderboard", str(tmp_path / "runs"), "--out", str(tmp_path / "lb.csv")], terminal_width=250)
    assert res.exit_code == 0, res.output
    assert "wan-smoke on synthetic:test is not ranked (empty): run stopped: ModuleNotFoundError: No module named 'diffusers'" in res.output
    assert "not ranked (empty)" in res.output
    row = pd.read_csv(tmp_path / "lb.csv").set_index("method").loc["wan-smoke"]
    assert row["status"] == "empty" and "diffusers" in row["cause"]
    res = runner.invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r.html"), "--samples", "1"])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r.html").read_text()
    assert "wan-smoke on synthetic:test (empty): run stopped: ModuleNotFoundError: No module named &#39;diffusers&#39;" in html
    assert '<div class="config">not ranked (empty): run stopped: ModuleNotFoundError' in html  # in the row itself


def test_compare_notes_the_samples_a_run_failed(app, tmp_path):
    a = make_run(tmp_path, "a", n=6, failed=2)
    b = make_run(tmp_path, "b", n=6)
    res = runner.invoke(app, ["compare", str(a), str(b)], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "4 shared samples" in res.output and "A (a) failed 2 sample(s)" in res.output


def test_report_flags_samples_whose_video_is_not_at_16_fps(app, tmp_path):
    import json

    run = make_run(tmp_path / "runs", "m", n=2)
    lines = [json.loads(l) for l in (run / "samples.jsonl").read_text().splitlines()]
    lines[0]["video_check"] = {"flags": ["fps"], "problems": ["container frame rate 25 fps, the protocol needs 16 fps"],
                               "action": "resampled", "container_fps": 25.0}
    (run / "samples.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    res = runner.invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r.html"), "--samples", "1"])
    assert res.exit_code == 0, res.output
    assert "m on synthetic:test: 1 sample(s) whose video is not at the protocol&#39;s 16 fps" in (tmp_path / "r.html").read_text()
