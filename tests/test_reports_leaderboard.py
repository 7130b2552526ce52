"""The leaderboard: rows, CIs, sorting, pooling, separation of protocols, bad input."""

import math

import numpy as np
import pandas as pd
import pytest

import magbench.reports.leaderboard as lbmod
from magbench.baselines.sanity import RepeatLast
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
        if col.endswith("_mean_all_finished"):
            documented = "<key>_mean_all_finished"
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


# -- failures cannot distort the table -------------------------------------------------------------
def _copy_run_as(src, root, name, method, failed_ids=()):
    """A plugin whose frames equal ``src``'s (same records) except that it failed ``failed_ids``."""
    import json

    from magbench.store import RecordWriter, atomic_write_json

    dst = root / name
    dst.mkdir(parents=True)
    manifest = json.loads((src / "manifest.json").read_text())
    manifest["run_id"] = name
    manifest["method"] = {**manifest["method"], "name": method, "kind": "method"}
    atomic_write_json(dst / "manifest.json", manifest)
    writer = RecordWriter(dst / "samples.jsonl")
    for rec in read_records(src):
        if rec["sample_id"] in failed_ids:
            rec = {k: rec[k] for k in ("sample_id", "caption", "seed")} | {
                "status": "failed", "error": "generate: RuntimeError: CUDA error", "error_type": "RuntimeError"}
        writer.append(rec)
    return dst


def test_plugin_failing_the_hard_samples_never_ranks_above_the_floor_it_copies(tmp_path):
    """The issue's case: failed 3 of 6, identical to repeat-last on the other 3."""
    floor = make_run(tmp_path, "repeat-last", kind="floor", quality=0.3, n=6)
    recs = read_records(floor)
    # It fails exactly the samples where the floor does worst: on its own subset it would win.
    hard = [r["sample_id"] for r in sorted(recs, key=lambda r: r["metrics"]["bestmatch_lpips"])[3:]]
    _copy_run_as(floor, tmp_path, "plugin", "sneaky", failed_ids=hard)
    lb = build([tmp_path])
    df = lb.frame.set_index("method")
    assert df.loc["sneaky", "bestmatch_lpips_mean_all_finished"] < df.loc["repeat-last", "bestmatch_lpips_mean_all_finished"]
    assert df.loc["sneaky", "bestmatch_lpips_mean"] == df.loc["repeat-last", "bestmatch_lpips_mean"]
    assert list(lb.frame["method"]) == ["repeat-last", "sneaky"]  # a tie goes to the row without failures
    for key in ("psnr", "lpips", "ssim"):
        assert df.loc["sneaky", f"{key}_mean"] == pytest.approx(df.loc["repeat-last", f"{key}_mean"])
    assert set(df["n_common"]) == {3} and df.loc["repeat-last", "n_samples"] == 6
    assert df.loc["sneaky", "status"] == "partial" and df.loc["repeat-last", "status"] == "ok"
    assert "3 sample(s) failed: generate: RuntimeError: CUDA error" in df.loc["sneaky", "cause"]
    assert any("ranked on the 3 sample(s) all ranked rows finished, because of sneaky (3 finished, 3 failed); "
               "rows cut to them from their own: repeat-last (6)" in n for n in lb.notes)


def test_means_and_efficiency_are_over_the_common_samples(tmp_path):
    a = make_run(tmp_path, "a", n=6)
    make_run(tmp_path, "b", n=6, failed=2)  # s000, s001 failed
    row = leaderboard([tmp_path]).set_index("method").loc["a"]
    recs = [r for r in read_records(a) if r["sample_id"] not in ("s000", "s001")]
    assert row["n_common"] == 4 and row["n_samples"] == 6 and row["status"] == "ok"
    assert row["psnr_mean"] == pytest.approx(np.mean([r["metrics"]["psnr"] for r in recs]))
    assert row["psnr_mean_all_finished"] == pytest.approx(np.mean([r["metrics"]["psnr"] for r in read_records(a)]))
    assert row["fps_mean"] == pytest.approx(np.mean([r["timing"]["fps"] for r in recs]))


def test_rows_of_other_protocols_do_not_shrink_the_common_samples(tmp_path):
    make_run(tmp_path, "a", method="m", n=6)
    make_run(tmp_path, "b", method="m", n=2, protocol={**PROTOCOL, "switch_fraction": 0.5})
    df = leaderboard([tmp_path])
    assert sorted(df["n_common"]) == [2, 6]


def test_failed_and_empty_runs_are_listed_with_their_cause_not_ranked(tmp_path):
    import json

    make_run(tmp_path, "good", n=4)
    make_run(tmp_path, "broken", n=4, failed=4)
    empty = make_run(tmp_path, "empty", n=0)
    (empty / "fatal.json").write_text(json.dumps({
        "error": "No module named 'diffusers'", "error_type": "ModuleNotFoundError", "traceback": "...",
        "at": "2025-01-01T00:00:00+00:00"}))
    lb = build([tmp_path])
    df = lb.frame.set_index("method")
    assert df.loc["good", "n_common"] == 4  # the all-failed and empty rows do not empty the common set
    assert df.loc["broken", "status"] == "failed" and "4 sample(s) failed: generate: RuntimeError: boom" in df.loc["broken", "cause"]
    assert df.loc["empty", "status"] == "empty"
    assert df.loc["empty", "cause"] == "run stopped: ModuleNotFoundError: No module named 'diffusers'"
    assert list(lb.frame["method"])[0] == "good"
    assert any("empty on" in n and "diffusers" in n for n in lb.notes)
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(rich_table(lb.frame))
    assert "not ranked (empty)" in console.export_text()


def test_empty_run_without_a_recorded_cause_says_so(tmp_path):
    make_run(tmp_path, "empty", n=0)
    row = leaderboard([tmp_path]).iloc[0]
    assert row["status"] == "empty" and "no sample records" in row["cause"]


def test_stale_fatal_error_before_later_records_is_not_shown(tmp_path):
    import json

    run = make_run(tmp_path, "m", n=2)  # records finished 2025-01-01T00:00:00
    (run / "fatal.json").write_text(json.dumps({"error": "old", "error_type": "X", "at": "2024-12-31T00:00:00+00:00"}))
    assert leaderboard([run]).iloc[0]["cause"] == ""


def test_folder_that_stopped_before_its_manifest_is_named_with_its_cause(tmp_path):
    import json

    make_run(tmp_path, "good", n=2)
    (tmp_path / "crashed").mkdir()
    (tmp_path / "crashed" / "fatal.json").write_text(json.dumps({"error": "boom", "error_type": "ValueError", "at": "x"}))
    assert any("crashed stopped before writing its manifest: ValueError: boom" in n for n in build([tmp_path]).notes)
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x").mkdir()
    (tmp_path / "only" / "x" / "fatal.json").write_text(json.dumps({"error": "boom", "error_type": "ValueError"}))
    with pytest.raises(MagbenchError, match="no runs found.*stopped before writing their manifest: .*x: ValueError: boom"):
        build([tmp_path / "only"])


def test_memory_source_is_its_own_column_and_settings_are_never_pooled(tmp_path):
    make_run(tmp_path, "old", method="m", n=3)  # no memory_source in its protocol: generated
    make_run(tmp_path, "gen", method="m", n=3, sample_offset=3, protocol={**PROTOCOL, "memory_source": "generated"})
    make_run(tmp_path, "gt", method="m", n=6, protocol={**PROTOCOL, "id": "magbench-replay-v1-gtmem", "memory_source": "ground-truth"})
    lb = build([tmp_path])
    df = lb.frame
    assert len(df) == 2 and sorted(df["memory_source"]) == ["generated", "ground-truth"]
    pooled = df.set_index("memory_source").loc["generated"]
    assert pooled["run_ids"] == "gen;old" or pooled["run_ids"] == "old;gen"
    assert pooled["n_samples"] == 6 and pooled["n_common"] == 6  # the GT-context row is not compared with it
    assert "never averaged" in lb.notes[0]
    back = pd.read_csv(write_leaderboard(df, tmp_path / "lb.csv"))
    assert list(back["memory_source"]) == list(df["memory_source"])
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(rich_table(df))
    text = console.export_text()
    assert "memory source" in text and "ground-truth" in text and "magbench-replay-v1-gtmem" in text


def test_memory_source_comes_from_the_records_when_the_manifest_lacks_it(tmp_path):
    import json

    run = make_run(tmp_path, "m", n=2)
    lines = [json.loads(l) | {"memory_source": "ground-truth"} for l in (run / "samples.jsonl").read_text().splitlines()]
    (run / "samples.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    assert leaderboard([run]).iloc[0]["memory_source"] == "ground-truth"


class FailsWhereTheFloorIsWorst(RepeatLast):
    """repeat-last, except that it fails the samples in ``fail`` (set by the test below)."""

    kind = "method"
    fail: set = set()

    def reset(self, sample):
        if sample.sample_id in self.fail:
            raise RuntimeError("out of memory on the long clip")
        super().reset(sample)


def test_real_plugin_that_fails_the_hard_sample_does_not_outrank_repeat_last(synth_dir, tmp_path, monkeypatch):
    """The issue's case through the harness: identical frames to repeat-last where it finishes."""
    from magbench.harness import Harness, RunConfig

    def run(method, out):
        cfg = RunConfig(method=method, dataset=f"synthetic:{synth_dir}", out=tmp_path / out, device="cpu", metrics=["psnr", "ssim"])
        return Harness(cfg).run(progress=False)

    floor = run("repeat-last", "floor")
    worst = min(floor.records, key=lambda r: r.metrics["psnr"]).sample_id
    monkeypatch.setattr(FailsWhereTheFloorIsWorst, "fail", {worst})
    plugin = run(f"{__name__}:FailsWhereTheFloorIsWorst", "plugin")
    assert plugin.failed == 1 and plugin.ok == len(floor.records) - 1
    lb = build([tmp_path], primary="psnr")
    df = lb.frame.set_index("run_ids")
    assert df.loc["plugin", "psnr_mean_all_finished"] > df.loc["floor", "psnr_mean_all_finished"]  # it would have won
    assert df.loc["plugin", "psnr_mean"] == df.loc["floor", "psnr_mean"]
    assert list(lb.frame["run_ids"]) == ["floor", "plugin"]
    assert df.loc["plugin", "status"] == "partial" and "out of memory on the long clip" in df.loc["plugin", "cause"]


def test_rows_that_finished_different_samples_are_ranked_on_none_and_the_note_says_why(tmp_path):
    make_run(tmp_path, "a", n=3)
    make_run(tmp_path, "b", n=3, sample_offset=3)
    lb = build([tmp_path])
    assert list(lb.frame["n_common"]) == [0, 0] and lb.frame["psnr_mean"].isna().all()
    assert any("because of rows that finished different samples" in n and "No sample was finished by every row" in n for n in lb.notes)
