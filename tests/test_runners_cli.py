"""Scale-out as a user drives it: torchrun (gloo, CPU processes), submitit's local executor
(real processes, no SLURM), killed ranks, world-size changes, damaged shard files, status,
dry run. Every run is on the small synthetic set."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TEST_METRIC_OPTS, TEST_METRICS, wait_for_file
from magbench.locking import holder_pid
from magbench.determinism import record_differences, tolerance
from magbench.store import RunDir

PLUGINS = Path(__file__).parent / "plugins"
IDS = ["synthetic_000_pan", "synthetic_001_tilt", "synthetic_002_dolly"]
# crc32(id) % 2: pan -> 0, tilt and dolly -> 1.  % 3: pan and dolly -> 0, tilt -> 1, shard 2 empty.


def magbench(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "magbench", *map(str, args)], capture_output=True, text=True, env=_env(env), timeout=timeout
    )


def cli(*args):
    """The same command line, in this process (no interpreter start-up): for quick commands."""
    from typer.testing import CliRunner

    from magbench.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _env(extra=None):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), e.get("PYTHONPATH", "")])
    e.update(extra or {})
    return e


def _full_metrics():
    args = ["--metrics", TEST_METRICS]
    for o in TEST_METRIC_OPTS:
        args += ["--metric-opt", o]
    return args


def _comparable(records):
    """Records minus what legitimately differs between runs: timings, memory, wall clock."""
    return {r.sample_id: {k: v for k, v in r.to_json().items() if k not in ("timing", "memory", "finished_at")} for r in records}


def _assert_same_results(a_dir, b_dir, metric=None):
    a, b = _comparable(RunDir(a_dir).records()), _comparable(RunDir(b_dir).records())
    assert a.keys() == b.keys() == set(IDS)
    # CPU processes agree to rounding; GPU records of different devices within GPU_RTOL (magbench/determinism.py).
    rel = tolerance(RunDir(a_dir).manifest().get("device"))
    for sid in a:
        if metric:  # runs with different metric sets: compare the one they share
            assert a[sid]["metrics"][metric] == pytest.approx(b[sid]["metrics"][metric], rel=rel), sid
            assert a[sid]["per_frame"][metric] == pytest.approx(b[sid]["per_frame"][metric], rel=rel), sid
            continue
        assert a[sid]["metrics"] == pytest.approx(b[sid]["metrics"], rel=rel), sid
        for key in a[sid]["per_frame"]:
            assert a[sid]["per_frame"][key] == pytest.approx(b[sid]["per_frame"][key], rel=rel, abs=1e-9), (sid, key)
        assert record_differences(a[sid]["extra"], b[sid]["extra"], rtol=rel) == [], sid
        rest = lambda r: {k: v for k, v in r.items() if k not in ("metrics", "per_frame", "extra")}  # noqa: E731
        assert rest(a[sid]) == rest(b[sid]), sid


def _flat(text):
    """Output without rich's line wrapping (it wraps at 80 columns when not on a terminal)."""
    return " ".join(text.split())


def _lines_per_id(run):
    """How many times each sample was written, over every record file (a redo counts twice)."""
    counts: dict[str, int] = {}
    for f in Path(run).glob("samples*.jsonl"):
        for line in f.read_text().splitlines():
            try:
                counts[json.loads(line)["sample_id"]] = counts.get(json.loads(line)["sample_id"], 0) + 1
            except ValueError:
                pass
    return counts


@pytest.fixture(scope="module")
def reference(synth_dir, tmp_path_factory):
    """One process, the whole set, the test metrics (random-weight LPIPS backbones included)."""
    out = tmp_path_factory.mktemp("ref") / "run"
    p = magbench("run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", *_full_metrics())
    assert p.returncode == 0, p.stderr
    return out


def test_two_torchrun_processes_give_the_records_of_one_process(synth_dir, reference, tmp_path):
    out = tmp_path / "tr"
    # Started the way a user starts torchrun themselves; ranks are found from the environment.
    p = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "magbench",
         "run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", str(out), "--device", "cpu", "-q",
         *_full_metrics()],
        capture_output=True, text=True, env=_env({"NCCL_NVLS_ENABLE": "0"}), timeout=180,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "3 ok, 0 failed" in _flat(p.stdout) and p.stdout.count("3 ok") == 1  # only rank 0 reports
    assert sorted(f.name for f in out.glob("samples*.jsonl")) == ["samples.0-of-2.jsonl", "samples.1-of-2.jsonl"]
    assert _lines_per_id(out) == {i: 1 for i in IDS}
    _assert_same_results(reference, out)


def test_submitit_local_array_gives_the_records_of_one_process(synth_dir, reference, tmp_path):
    out = tmp_path / "sl"
    p = magbench(
        "run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q",
        *_full_metrics(), "--launcher", "slurm", "--submitit-cluster", "local", "--shards", 2,
        "--gpus-per-task", 0, "--time", 10, "--wait", timeout=180,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "submitted 2 task(s) for shards [0, 1] of 2" in _flat(p.stdout) and "3 ok, 0 failed" in _flat(p.stdout)
    assert _lines_per_id(out) == {i: 1 for i in IDS}
    _assert_same_results(reference, out)
    plan = json.loads((out / "shards.json").read_text())
    assert plan["launcher"] == "slurm" and len(plan["extra"]["job_ids"]) == 2


def test_killed_rank_then_rerun_finishes_without_redoing_and_a_busy_run_is_refused(synth_dir, reference, tmp_path):
    out, gate = tmp_path / "killed", tmp_path / "gate"
    gate.mkdir()
    ds = ["-d", f"synthetic:{synth_dir}", "--out", str(out), "--device", "cpu", "-q", "--metrics", "psnr"]
    args = ["run", "-m", "magbench_test_methods:GatedReplay", *ds, "--launcher", "torchrun", "--shards", "2"]
    # Rank 1 (tilt, dolly) stops in dolly's second block until the test says so: it never will.
    proc = subprocess.Popen([sys.executable, "-m", "magbench", *args],
                            env=_env({"MAGBENCH_TEST_GATE": str(gate), "MAGBENCH_TEST_GATE_SAMPLE": "synthetic_002_dolly"}),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(gate / "reached-synthetic_002_dolly", proc)
        # While the sharded run works, neither a whole run nor a shard of another split may start.
        whole = cli("run", "-m", "magbench_test_methods:GatedReplay", *ds)
        assert "another magbench process" in str(whole.exception), whole.output
        one = cli("run", "-m", "magbench_test_methods:GatedReplay", *ds, "--shard", 0, "--shards", 3)
        assert "another magbench process" in str(one.exception), one.output

        os.kill(holder_pid(out, "samples.1-of-2.jsonl"), signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "synthetic_002_dolly" not in {r.sample_id for r in RunDir(out).records()}
    before = _lines_per_id(out)

    again = magbench(*args, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"({len(before)} already done before this invocation)" in _flat(again.stdout)
    assert _lines_per_id(out) == {i: 1 for i in IDS}, "finished samples must not be redone"
    _assert_same_results(reference, out, metric="psnr")


def test_world_size_change_keeps_earlier_shard_files_and_idle_ranks_finish(synth_dir, reference, tmp_path):
    out = tmp_path / "resized"
    ds = ["run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", "--metrics", "psnr"]
    first = magbench(*ds, "--shard", 0, "--shards", 2)  # one shard of a 2-way split: pan
    assert first.returncode == 0, first.stderr
    old = (out / "samples.0-of-2.jsonl").read_text()
    assert [json.loads(l)["sample_id"] for l in old.splitlines()] == ["synthetic_000_pan"]

    second = magbench(*ds, "--launcher", "torchrun", "--shards", 3, timeout=180)  # rank 2 has no sample
    assert second.returncode == 0, second.stderr[-3000:]
    assert "3 ok, 0 failed (1 already done" in _flat(second.stdout)
    assert (out / "samples.0-of-2.jsonl").read_text() == old
    ids = lambda name: [json.loads(l)["sample_id"] for l in (out / name).read_text().splitlines()]  # noqa: E731
    assert ids("samples.0-of-3.jsonl") == ["synthetic_002_dolly"]  # pan is rank 0's too, but done
    assert ids("samples.1-of-3.jsonl") == ["synthetic_001_tilt"]
    assert not (out / "samples.2-of-3.jsonl").exists()
    _assert_same_results(reference, out, metric="psnr")

    st = cli("status", out)
    assert st.exit_code == 0 and "3 shard(s), launcher torchrun" in _flat(st.output)
    assert "samples.0-of-2.jsonl: 1 records" in _flat(st.output)  # the earlier launch's file, still merged
    data = json.loads(cli("status", out, "--json").output)
    assert [(s["assigned"], s["ok"], s["pending"]) for s in data["shards"]] == [(2, 2, 0), (1, 1, 0), (0, 0, 0)]


def test_truncated_shard_line_is_reported_and_its_sample_redone(synth_dir, tmp_path):
    out = tmp_path / "cut"
    ds = ["run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", "--metrics", "psnr"]
    assert magbench(*ds, "--shard", 1, "--shards", 2).returncode == 0  # tilt, dolly
    shard = out / "samples.1-of-2.jsonl"
    lines = shard.read_text().splitlines(keepends=True)
    assert len(lines) == 2
    cut_id = json.loads(lines[1])["sample_id"]
    shard.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # a write cut by a kill

    st = cli("status", out)
    assert st.exit_code == 0, st.output
    assert "samples.1-of-2.jsonl:2: truncated line" in st.output.replace("\n", "")
    data = json.loads(cli("status", out, "--json").output)
    assert data["shards"][1]["pending_ids"] == [cut_id] and data["shards"][0]["pending"] == 1

    again = magbench(*ds, "--shard", 1, "--shards", 2)
    assert again.returncode == 0, again.stderr
    assert "damaged record" in again.stderr and "samples.1-of-2.jsonl:2" in again.stderr
    assert "1 already done" in again.stdout  # the intact line's sample was skipped
    recs = {r.sample_id: r for r in RunDir(out).records()}
    assert recs[cut_id].status == "ok" and len(recs) == 2
    data = json.loads(cli("status", out, "--json").output)
    assert data["shards"][1]["pending"] == 0 and data["pending"] == 1  # shard 0 (pan) never ran


def test_slurm_dry_run_prints_shards_and_sbatch_script_and_writes_nothing(synth_dir, tmp_path):
    out = tmp_path / "dry"
    p = magbench(
        "run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", out, "--launcher", "slurm",
        "--shards", 4, "--partition", "gpu", "--time", "1:30:00", "--cpus-per-task", 8,
        "--slurm", "account=abc", "--slurm", "reservation=r1", "--dry-run",
    )
    assert p.returncode == 0, p.stderr
    o = p.stdout
    # 3 samples over 4 shards: tilt+dolly in shard 1, pan in shard 2, shards 0 and 3 empty.
    assert "array tasks: 2" in o and "array index i runs shard [1, 2]" in o
    assert "shard 0: 0 samples, 0 left -> samples.0-of-4.jsonl [empty]" in o
    assert "shard 1: 2 samples, 2 left -> samples.1-of-4.jsonl [submit]" in o
    for flag in ("--array=0-1%2", "--partition=gpu", "--time=90", "--cpus-per-task=8", "--gpus-per-task=1",
                 "--account=abc", "--reservation=r1", "--signal=USR2@120", "submitit.core._submit"):
        assert flag in o, flag
    assert not out.exists()


def test_bad_launcher_options_are_one_line_errors(synth_dir, tmp_path):
    ds = ["run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", tmp_path / "r"]
    from magbench.errors import MagbenchError

    for extra, msg in [
        (["--shards", 2], "add --shard K"),
        (["--launcher", "torchrun"], "give --gpus N"),
        (["--gpus", 2, "--device", "cpu"], "no CUDA device"),
        (["--launcher", "slurm"], "give --shards N"),
        (["--shard", 2, "--shards", 2], "must be in [0, 2)"),
        (["--dry-run"], "for --launcher slurm"),
        (["--launcher", "slurm", "--shards", 2], "no sbatch/srun here"),
    ]:
        r = cli(*ds, *extra)  # `magbench` prints a MagbenchError as one line and exits 2
        assert isinstance(r.exception, MagbenchError) and msg in str(r.exception), (extra, r.exception)
    assert not (tmp_path / "r").exists()
    p = magbench(*ds, "--launcher", "torchrun")
    assert p.returncode == 2 and "give --gpus N" in p.stderr and "Traceback" not in p.stderr
