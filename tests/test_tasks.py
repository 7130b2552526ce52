"""The task registry and the typed record: `magbench tasks`, `--task`, refusal of methods
without the capabilities a task needs, and run folders written before tasks existed."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from magbench import cli
from magbench.errors import MagbenchError
from magbench.harness import Harness, RunConfig
from magbench.record import SCHEMA_VERSION, SampleRecord
from magbench.reports.leaderboard import leaderboard
from magbench.store import RunDir
from magbench.tasks import TASKS
from magbench.tasks.replay import ReplayPart

from _reports_fixtures import make_run

RUNS_V1 = Path(__file__).parent / "data" / "runs_v1"  # written by magbench at a4ed7dd (before tasks)
sys.path.insert(0, str(Path(__file__).parent / "plugins"))  # magbench_test_methods


def run_cli(capsys, *args):
    """``magbench ARGS`` in this process: (exit code, stdout + stderr)."""
    old, sys.argv = sys.argv, ["magbench", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out + out.err


def test_tasks_command_lists_the_replay_task_with_what_a_method_needs(capsys):
    code, out = run_cli(capsys, "tasks")
    assert code == 0, out
    assert "magbench-replay" in out and "replay" in out


def test_an_unknown_task_is_one_line_naming_the_list_command(capsys, tmp_path):
    code, out = run_cli(capsys, "run", "--method", "repeat-last", "--task", "nope", "--out", tmp_path / "r")
    assert code == 2
    assert "unknown task 'nope'" in out and "magbench tasks" in out
    assert len(out.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_a_method_lacking_a_capability_the_task_needs_is_refused_before_any_work(tmp_path):
    cfg = RunConfig(method="repeat-last", task="magbench_test_methods:NeedsRecall", out=tmp_path / "r", device="cpu")
    with pytest.raises(MagbenchError, match=r"cannot run task .*lacks recall.*Method.recall"):
        Harness(cfg)
    assert not (tmp_path / "r").exists()


def test_a_task_without_options_refuses_task_options():
    cfg = RunConfig(method="repeat-last", task_options={"frames": 10}, device="cpu")
    with pytest.raises(MagbenchError, match="takes no options"):
        Harness(cfg)


def test_a_schema_1_record_reads_as_the_replay_task_and_writes_back_every_field_it_had():
    line = (RUNS_V1 / "repeat-last" / "samples.jsonl").read_text().splitlines()[0]
    old = json.loads(line)
    rec = SampleRecord.from_json(old)
    assert rec.task == "magbench-replay" and rec.schema == 1 and rec.ok
    assert isinstance(rec.part, ReplayPart) and rec.part.num_target == old["num_target"]
    assert rec.timing.block_s == old["timing"]["block_s"] and rec.memory.kv_bytes_end == old["memory"]["kv_bytes_end"]
    back = rec.to_json()
    for key, value in old.items():
        if key in ("timing", "memory"):
            assert {k: v for k, v in back[key].items() if k in value} == value, key
        else:
            assert back[key] == value, key


def test_a_record_round_trips_through_json_with_unknown_keys_kept():
    rec = SampleRecord(sample_id="a", status="ok", metrics={"psnr": 30.0}, part=ReplayPart(num_target=12))
    data = rec.to_json() | {"from_a_newer_writer": [1, 2]}
    again = SampleRecord.from_json(data)
    assert again.schema == SCHEMA_VERSION and again.part.num_target == 12
    assert again.to_json() == data


def test_run_folders_written_before_tasks_rank_in_the_leaderboard_unchanged(tmp_path):
    runs = [shutil.copytree(RUNS_V1 / m, tmp_path / m) for m in ("repeat-last", "replay-context")]
    board = leaderboard(runs)
    assert set(board["method"]) == {"repeat-last", "replay-context"} and set(board["task"]) == {"magbench-replay"}
    for run in runs:
        old = [json.loads(l) for l in (run / "samples.jsonl").read_text().splitlines()]
        row = board[board["method"] == run.name].iloc[0]
        assert row["psnr_mean"] == pytest.approx(np.mean([r["metrics"]["psnr"] for r in old]))
    assert board.iloc[0]["method"] == "replay-context"  # the floor/ceiling order the records imply


def test_a_run_folder_written_before_tasks_resumes_without_redoing_its_samples(tmp_path):
    run = shutil.copytree(RUNS_V1 / "repeat-last", tmp_path / "rl")
    before = (run / "samples.jsonl").read_text()
    cfg = RunConfig(
        method="repeat-last", dataset="synthetic", out=run, device="cpu", limit=2,
        metrics=["psnr", "ssim", "bestmatch"], metric_options={"bestmatch": {"random_weights": True}},
    )
    h = Harness(cfg)
    assert h.manifest()["fingerprint"] == json.loads((run / "manifest.json").read_text())["fingerprint"]
    s = h.run(progress=False)
    assert s.done_before == 2 and s.ok == 2 and (run / "samples.jsonl").read_text() == before


def test_the_task_is_a_leaderboard_column_and_runs_of_two_tasks_are_never_pooled(tmp_path):
    a = make_run(tmp_path, "a", method="m")
    b = make_run(tmp_path, "b", method="m")
    m = json.loads((b / "manifest.json").read_text())
    m["task"] = {"name": "other-task", "protocol": "other-task-v1"}
    (b / "manifest.json").write_text(json.dumps(m))
    board = leaderboard([a, b])
    assert len(board) == 2 and set(board["task"]) == {"magbench-replay", "other-task"}


def test_new_records_name_their_task_and_schema(synth_dir, tmp_path):
    cfg = RunConfig(method="repeat-last", dataset=f"synthetic:{synth_dir}", out=tmp_path / "r", device="cpu",
                    limit=1, metrics=["psnr"])
    Harness(cfg).run(progress=False)
    line = json.loads((tmp_path / "r" / "samples.jsonl").read_text().splitlines()[0])
    assert line["task"] == "magbench-replay" and line["schema"] == SCHEMA_VERSION
    assert RunDir(tmp_path / "r").manifest()["task"]["name"] == "magbench-replay"
    assert "magbench-replay" in TASKS
