"""The leaderboard: rows, CIs, sorting, pooling, separation of protocols, bad input."""

import math

import numpy as np
import pandas as pd
import pytest

import magbench.reports.leaderboard as lbmod
from magbench.errors import MagbenchError
from magbench.reports.errors import UnknownMetricError
from magbench.reports.leaderboard import build, leaderboard, rich_table, write_leaderboard
from magbench.reports.stats import bootstrap_ci

from _reports_fixtures import PROTOCOL, corrupt_line, make_run, read_records, sanity_trio


def test_one_row_per_method_with_mean_and_ci_of_every_metric(tmp_path):
    runs = sanity_trio(tmp_path)
    df = leaderboard([tmp_path])
    assert len(df) == 3 and set(df["method"]) == {"oracle", "zeta-mem", "repeat-last"}
    row = df.set_index("method").loc["zeta-mem"]
    values = [r["metrics"]["psnr"] for r in read_records(runs["zeta-mem"])]
    assert row["psnr_mean"] == pytest.approx(np.mean(values))
    assert (row["psnr_ci_low"], row["psnr_ci_high"]) == pytest.approx(bootstrap_ci(values)[1:])
    assert row["psnr_ci_low"] < row["psnr_mean"] < row["psnr_ci_high"]
    assert row["n_samples"] == 6 and row["n_failed"] == 0
    for key in ("psnr", "ssim", "lpips", "bestmatch_lpips"):
        assert {f"{key}_mean", f"{key}_ci_low", f"{key}_ci_high"} <= set(df.columns)


def test_every_fixed_column_is_documented_in_the_module_docstring(tmp_path):
    sanity_trio(tmp_path)
    df = leaderboard([tmp_path])
    for col in df.columns:
        documented = col if not col.endswith(("_mean", "_ci_low", "_ci_high")) or col.startswith(("fps_", "kv_", "first_block")) else "<key>_"
        if col in ("dataset_revision", "run_ids", "fps_ci_low", "fps_ci_high"):
            continue  # documented beside their partner column
        assert f"``{documented}" in lbmod.__doc__, col


def test_run_dir_objects_and_paths_give_the_same_table(tmp_path):
    from magbench.store import RunDir

    runs = sanity_trio(tmp_path)
    by_path = leaderboard([tmp_path])
    by_dir = leaderboard([RunDir(p) for p in runs.values()])
    pd.testing.assert_frame_equal(by_path, by_dir)


def test_sorted_by_bestmatch_lpips_ascending_by_default(tmp_path):
    sanity_trio(tmp_path)
    df = leaderboard([tmp_path])
    assert df.attrs["primary"] == "bestmatch_lpips"
    assert list(df["method"]) == ["oracle", "zeta-mem", "repeat-last"]
    assert df["bestmatch_lpips_mean"].is_monotonic_increasing


def test_primary_falls_back_to_lpips_then_to_the_first_metric(tmp_path):
    sanity_trio(tmp_path / "a", metrics=("psnr", "lpips"))
    assert leaderboard([tmp_path / "a"]).attrs["primary"] == "lpips"
    sanity_trio(tmp_path / "b", metrics=("ssim", "psnr"))
    # The first key of the manifest's key_info, which the store writes sorted.
    assert leaderboard([tmp_path / "b"]).attrs["primary"] == "psnr"


def test_higher_is_better_primary_sorts_descending(tmp_path):
    sanity_trio(tmp_path)
    df = leaderboard([tmp_path], primary="psnr")
    assert df["psnr_mean"].is_monotonic_decreasing


def test_unknown_primary_is_a_clear_error(tmp_path):
    sanity_trio(tmp_path)
    with pytest.raises(UnknownMetricError, match="--primary 'fvd'.*psnr"):
        leaderboard([tmp_path], primary="fvd")


def test_same_method_config_in_two_folders_is_pooled_other_options_are_not(tmp_path):
    make_run(tmp_path, "m-shard0", method="m", n=3)
    make_run(tmp_path, "m-shard1", method="m", n=3, sample_offset=3)
    make_run(tmp_path, "m-big", method="m", n=3, options={"window": 8})
    df = leaderboard([tmp_path])
    assert len(df) == 2
    pooled = df[df["method_config"] == "default"].iloc[0]
    assert pooled["n_runs"] == 2 and pooled["n_samples"] == 6 and pooled["run_ids"] == "m-shard0;m-shard1"
    assert df[df["method_config"] != "default"].iloc[0]["method_config"] == '{"window":8}'


def test_runs_with_different_protocols_or_datasets_are_never_averaged(tmp_path):
    make_run(tmp_path, "a", method="m")
    make_run(tmp_path, "b", method="m", protocol={**PROTOCOL, "switch_fraction": 0.5})
    make_run(tmp_path, "c", method="m", dataset={"id": "magbench", "revision": "v1", "num_samples": 6})
    lb = build([tmp_path])
    assert len(lb.frame) == 3 and set(lb.frame["n_runs"]) == {1}
    assert "switch_fraction=0.5" in " ".join(lb.frame["protocol"])
    assert lb.notes and "never averaged" in lb.notes[0]
    assert lb.frame.attrs["notes"] == lb.notes


def test_failed_samples_are_counted_and_left_out_of_the_means(tmp_path):
    run = make_run(tmp_path, "m", n=6, failed=2)
    row = leaderboard([run]).iloc[0]
    ok = [r["metrics"]["psnr"] for r in read_records(run) if r["status"] == "ok"]
    assert row["n_samples"] == 4 and row["n_failed"] == 2
    assert row["psnr_mean"] == pytest.approx(np.mean(ok))


def test_corrupt_line_is_reported_with_file_and_line_and_the_rest_is_used(tmp_path):
    run = make_run(tmp_path, "m", n=6)
    line = corrupt_line(run, after_line=2)
    lb = build([run])
    assert lb.frame.iloc[0]["n_samples"] == 6 and lb.frame.iloc[0]["n_corrupt_lines"] == 1
    assert lb.problems == [p for p in lb.problems if f"samples.jsonl:{line}:" in p] and len(lb.problems) == 1


def test_efficiency_columns_come_from_timing_and_memory(tmp_path):
    run = make_run(tmp_path, "m", n=4)
    recs = read_records(run)
    row = leaderboard([run]).iloc[0]
    assert row["fps_mean"] == pytest.approx(np.mean([r["timing"]["fps"] for r in recs]))
    assert row["block_p50_s"] == pytest.approx(np.median([b for r in recs for b in r["timing"]["block_s"]]))
    assert row["kv_bytes_peak"] == max(r["memory"]["kv_bytes_peak"] for r in recs)
    assert row["kv_bytes_end_mean"] == pytest.approx(np.mean([r["memory"]["kv_bytes_end"] for r in recs]))
    assert math.isnan(row["peak_vram_bytes"])  # CPU runs record no device memory: NaN, not 0


def test_folder_without_runs_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MagbenchError, match="no runs found in .*empty.*magbench run"):
        leaderboard([tmp_path / "empty"])


def test_csv_is_written_atomically_and_reads_back(tmp_path):
    sanity_trio(tmp_path / "runs")
    df = leaderboard([tmp_path / "runs"])
    out = write_leaderboard(df, tmp_path / "out" / "leaderboard.csv")
    back = pd.read_csv(out)
    assert list(back.columns) == list(df.columns) and list(back["method"]) == list(df["method"])
    assert [p.name for p in out.parent.iterdir()] == ["leaderboard.csv"]  # no temporary left behind


def test_terminal_table_marks_sanity_methods(tmp_path):
    from rich.console import Console

    sanity_trio(tmp_path)
    console = Console(record=True, width=160)
    console.print(rich_table(leaderboard([tmp_path])))
    text = console.export_text()
    assert "(ceiling)" in text and "(floor)" in text and "zeta-mem" in text
    assert "bestmatch_lpips" in text
