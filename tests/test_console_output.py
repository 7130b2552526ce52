"""What the command line prints (issue 20): redirected output keeps whole tables; each failed
sample is printed once while the run goes and once in its summary; a metric that ran without its
weights is not called skipped."""

from __future__ import annotations

import sys
from pathlib import Path

from test_cli import main

from _reports_fixtures import sanity_trio

sys.path.insert(0, str(Path(__file__).parent / "plugins"))


def test_redirected_leaderboard_keeps_every_table_row_whole(tmp_path, monkeypatch, capsys):
    sanity_trio(tmp_path / "runs")
    monkeypatch.delenv("COLUMNS", raising=False)  # no terminal, no width asked for: rich would use 80
    code, out, _ = main("leaderboard", tmp_path / "runs", capsys=capsys)
    assert code == 0
    header = next(line for line in out.splitlines() if "method" in line and "n" in line.split())
    for col in ("bestmatch_lpips", "lpips", "psnr", "ssim", "e2e FPS", "gen FPS", "p50 block", "KV end"):
        assert col in header, (col, header)
    row = next(line for line in out.splitlines() if line.lstrip().startswith("zeta-mem"))
    assert len(row.split()) >= 8, row  # name, n, four metrics, speed and memory on one line


def test_a_failed_sample_is_printed_once_as_the_run_goes_and_once_in_the_summary(synth_dir, tmp_path, capsys):
    import shutil

    root = tmp_path / "set"
    shutil.copytree(synth_dir, root)
    next(root.rglob("synthetic_001_tilt.mp4")).unlink()
    code, out, err = main("run", "-m", "hold-first", "-d", f"synthetic:{root}", "--out", tmp_path / "r", "--device", "cpu",
                          "--metrics", "psnr", capsys=capsys)
    assert code == 3
    both = out + err
    failure = next(line for line in err.splitlines() if "synthetic_001_tilt: failed:" in line)
    message = failure.split("failed: ", 1)[1]
    assert both.count(message) == 2, both  # the progress line and the summary, nothing else
    assert "[2/3] hold-first synthetic_001_tilt: failed: load:" in err


def test_a_metric_that_ran_without_its_weights_is_not_called_skipped(synth_dir, tmp_path, capsys):
    code, _, err = main("run", "-m", "hold-first", "-d", f"synthetic:{synth_dir}", "--out", tmp_path / "r", "--device", "cpu",
                        "-q", "--limit", "1", capsys=capsys)
    assert code == 0
    assert "metric correspondence ran without its weights (lpips=False): only its values that need none" in err
    assert "metric correspondence skipped" not in err and "metric lpips skipped" in err
