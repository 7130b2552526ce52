import json

import pytest

from magbench.errors import MagbenchError, RunConfigMismatchError
from magbench.store import RecordWriter, RunDir, atomic_write_json, find_runs


def _manifest(fp="a", **config):
    return {"fingerprint": fp, "config": config or {"method": "x"}}


def test_records_round_trip_and_last_record_per_sample_wins(tmp_path):
    run = RunDir(tmp_path / "run")
    run.init(_manifest())
    w = RecordWriter(run.path / "samples.jsonl")
    w.append({"sample_id": "a", "status": "failed"})
    w.append({"sample_id": "b", "status": "ok", "metrics": {"psnr": 1.0}})
    w.append({"sample_id": "a", "status": "ok"})
    recs = run.records()
    assert [r.sample_id for r in recs] == ["b", "a"]
    assert run.done_ids(include_failed=False) == {"a", "b"}


def test_non_finite_values_are_stored_as_null_so_every_line_parses(tmp_path):
    w = RecordWriter(tmp_path / "samples.jsonl")
    w.append({"sample_id": "a", "metrics": {"psnr": float("inf"), "x": float("nan")}})
    line = (tmp_path / "samples.jsonl").read_text()
    assert json.loads(line)["metrics"] == {"psnr": None, "x": None}


def test_truncated_last_line_is_reported_with_its_line_number_and_skipped(tmp_path):
    run = RunDir(tmp_path)
    run.init(_manifest())
    RecordWriter(tmp_path / "samples.jsonl").append({"sample_id": "a", "status": "ok"})
    with open(tmp_path / "samples.jsonl", "a") as f:
        f.write('{"sample_id": "b", "sta')
    assert [r.sample_id for r in run.records()] == ["a"]
    assert len(run.problems) == 1 and run.problems[0].line == 2
    assert "truncated" in str(run.problems[0])
    # A new writer ends the damaged line first, so the next record stays parseable.
    RecordWriter(tmp_path / "samples.jsonl").append({"sample_id": "c", "status": "ok"})
    assert [r.sample_id for r in run.records()] == ["a", "c"]


def test_records_from_several_shard_files_are_merged(tmp_path):
    run = RunDir(tmp_path)
    run.init(_manifest())
    RecordWriter(tmp_path / "samples.0.jsonl").append({"sample_id": "a", "status": "ok"})
    RecordWriter(tmp_path / "samples.1.jsonl").append({"sample_id": "b", "status": "ok"})
    assert {r.sample_id for r in run.records()} == {"a", "b"}


def test_run_folder_with_another_config_is_refused_naming_the_difference(tmp_path):
    run = RunDir(tmp_path)
    run.init(_manifest("a", seed=0))
    run.init(_manifest("a", seed=0))  # same config: fine
    with pytest.raises(RunConfigMismatchError, match="seed: 0 -> 1"):
        run.init(_manifest("b", seed=1))


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_find_runs_accepts_run_folders_and_folders_of_runs_and_rejects_empty(tmp_path):
    for name in ("r1", "r2"):
        RunDir(tmp_path / name).init(_manifest())
    assert len(find_runs([tmp_path])) == 2
    assert len(find_runs([tmp_path / "r1"])) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(MagbenchError, match="no runs found"):
        find_runs([tmp_path / "empty"])
