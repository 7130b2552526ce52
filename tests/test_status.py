"""`magbench status`: a folder that is not a run folder, and a run that stopped with an error."""

import json

import pytest
from typer.testing import CliRunner

from magbench.errors import MagbenchError
from magbench.runners.status import run_status

from _reports_fixtures import make_run


def _status(*args):
    from magbench.cli import app

    return CliRunner().invoke(app, ["status", *map(str, args)])


def test_parent_folder_is_not_a_run_folder_and_its_runs_are_listed(tmp_path):
    make_run(tmp_path / "runs", "mag__magbench", n=1)
    make_run(tmp_path / "runs", "self-forcing__magbench", n=1)
    (tmp_path / "runs" / "notes").mkdir()
    res = _status(tmp_path / "runs")
    assert res.exit_code != 0 and isinstance(res.exception, MagbenchError)
    msg = str(res.exception)
    assert "runs is not a run folder but holds 2: mag__magbench, self-forcing__magbench" in msg
    assert f"magbench status {tmp_path / 'runs' / 'mag__magbench'}" in msg and "\n" not in msg
    assert "no shard plan" not in msg


def test_empty_folder_is_not_a_run_folder(tmp_path):
    with pytest.raises(MagbenchError, match="is not a run folder .* and holds none"):
        run_status(tmp_path)


def test_status_shows_why_the_run_stopped(tmp_path):
    run = make_run(tmp_path, "r", n=2)
    (run / "fatal.json").write_text(json.dumps({
        "error": "No module named 'diffusers': pip install -e '.[wan]'", "error_type": "ModuleNotFoundError",
        "traceback": "Traceback ...", "at": "2025-01-02T00:00:00+00:00"}))
    st = run_status(run)
    assert st.fatal["error_type"] == "ModuleNotFoundError" and st.to_dict()["fatal"]["traceback"] == "Traceback ..."
    res = _status(run)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "the run stopped at 2025-01-02T00:00:00+00:00: ModuleNotFoundError: No module named 'diffusers'" in text
    assert "fix that cause first" in text and "fatal.json" in text


def test_folder_holding_only_a_fatal_error_is_a_run_that_stopped_before_it_started(tmp_path):
    (tmp_path / "fatal.json").write_text(json.dumps({"error": "boom", "error_type": "ValueError", "at": "x"}))
    st = run_status(tmp_path)
    assert st.ok == st.failed == 0 and st.fatal["error"] == "boom"


def test_a_damaged_line_is_tracked_as_redone_once_its_sample_has_a_whole_record(tmp_path):
    run = make_run(tmp_path, "r", n=3)
    path = run / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    cut = lines[2][: lines[2].index('"sample_id"') + 25]  # still names its sample
    # A kill cut the last record (s002) short; the resume appended it again, whole.
    path.write_text("".join(lines[:2]) + cut + "\n" + lines[2])
    st = run_status(run)
    assert [(d.sample_id, d.redone) for d in st.damaged] == [("s002", True)]
    text = " ".join(_status(run).output.split())
    assert "damaged record line (s002), redone since:" in text and "will be redone" not in text
    path.write_text("".join(lines[:2]) + cut + "\n")  # not redone yet
    assert [(d.sample_id, d.redone) for d in run_status(run).damaged] == [("s002", False)]
    assert "that sample will be redone" in " ".join(_status(run).output.split())


def test_a_damaged_line_that_no_longer_names_its_sample_is_redone_when_no_planned_sample_is_pending(tmp_path):
    from magbench.runners.sharding import ShardPlan

    run = make_run(tmp_path, "r", n=3)
    ShardPlan.build(["s000", "s001", "s002"], 1, "local").write(run)
    path = run / "samples.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:40] + "\n" + lines[2])
    assert [(d.sample_id, d.redone) for d in run_status(run).damaged] == [(None, True)]
    path.write_text("".join(lines[:2]) + lines[2][:40] + "\n")
    assert [(d.sample_id, d.redone) for d in run_status(run).damaged] == [(None, False)]
