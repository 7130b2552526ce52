"""The command line as a user drives it: real subprocesses, exit codes, one-line errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TEST_METRIC_OPTS, TEST_METRICS

PLUGINS = Path(__file__).parent / "plugins"


def magbench(*args, env=None, timeout=120, **kw):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), e.get("PYTHONPATH", "")])
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "magbench", *args], capture_output=True, text=True, env=e, timeout=timeout, **kw)


def _metric_args():
    args = ["--metrics", TEST_METRICS]
    for o in TEST_METRIC_OPTS:
        args += ["--metric-opt", o]
    return args


def _comparable(records):
    """Records minus what legitimately differs between runs: timings, memory, wall clock."""
    out = {}
    for r in records:
        r = {k: v for k, v in r.items() if k not in ("timing", "memory", "finished_at")}
        out[r["sample_id"]] = r
    return out


def test_unknown_method_exits_nonzero_with_one_line_naming_the_closest(tmp_path):
    p = magbench("run", "--method", "oracel", "--out", str(tmp_path / "r"))
    assert p.returncode == 2
    assert "unknown method 'oracel'" in p.stderr and "oracle" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_csv_path_is_a_one_line_error(tmp_path):
    p = magbench("run", "--method", "oracle", "--dataset", f"csv:{tmp_path / 'nowhere'}")
    assert p.returncode == 2 and "no such dataset folder" in p.stderr and "Traceback" not in p.stderr


def test_methods_lists_builtins_with_pattern():
    p = magbench("methods", "repl")
    assert p.returncode == 0 and "replay-context" in p.stdout and "oracle" not in p.stdout


def test_help_documents_every_run_option():
    p = magbench("run", "--help")
    for opt in ("--method", "--dataset", "--limit", "--out", "--device", "--dtype", "--seed", "--save-videos", "--metrics"):
        assert opt in p.stdout


def test_sigkill_mid_run_then_rerun_completes_without_redoing_finished_samples(synth_dir, tmp_path):
    ds = ["--dataset", f"synthetic:{synth_dir}"]
    full = magbench("run", "--method", "replay-context", *ds, "--out", str(tmp_path / "full"), "-q", *_metric_args())
    assert full.returncode == 0, full.stderr

    out = tmp_path / "killed"
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]), SLOW_REPLAY_SLEEP="1.0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "magbench", "run", "--method", "magbench_test_methods:SlowReplay", *ds, "--out", str(out), "-q", *_metric_args()],
        env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    records = out / "samples.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and not (records.exists() and records.read_text().count("\n") >= 1):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = records.read_text().count("\n")
    assert 1 <= done_before < 3, "the kill must land mid-run"

    again = magbench("run", "--method", "magbench_test_methods:SlowReplay", *ds, "--out", str(out), "-q", *_metric_args(), env={"SLOW_REPLAY_SLEEP": "0"})
    assert again.returncode == 0, again.stderr
    lines = [json.loads(l) for l in records.read_text().splitlines() if l.strip()]
    assert len(lines) == 3, "finished samples must not be redone"
    from magbench.store import RunDir

    a, b = _comparable(RunDir(tmp_path / "full").records()), _comparable(RunDir(out).records())
    assert a.keys() == b.keys()
    for sid in a:
        assert a[sid]["metrics"] == pytest.approx(b[sid]["metrics"], rel=1e-6), sid
        assert a[sid]["per_frame"] == b[sid]["per_frame"]
        assert a[sid]["extra"] == b[sid]["extra"]


def test_second_invocation_on_a_busy_run_folder_is_refused(synth_dir, tmp_path):
    ds = ["--dataset", f"synthetic:{synth_dir}"]
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]), SLOW_REPLAY_SLEEP="1.0")
    out = tmp_path / "busy"
    proc = subprocess.Popen(
        [sys.executable, "-m", "magbench", "run", "--method", "magbench_test_methods:SlowReplay", *ds, "--out", str(out), "-q", "--metrics", "psnr"],
        env=e, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / ".samples.jsonl.lock").exists():
            time.sleep(0.05)
        time.sleep(0.5)
        p = magbench("run", "--method", "magbench_test_methods:SlowReplay", *ds, "--out", str(out), "-q", "--metrics", "psnr")
        assert p.returncode == 2 and "another magbench process" in p.stderr
    finally:
        proc.kill()
        proc.wait()


def test_plugin_distribution_with_entry_point_is_listed_and_runs(synth_dir, tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "hold_first_method").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "hold-first-method"\nversion = "0.1"\n'
        '[project.entry-points."magbench.methods"]\nhold-first = "hold_first_method:HoldFirst"\n'
    )
    (pkg / "hold_first_method" / "__init__.py").write_text(
        "import torch\n"
        "from magbench.method import Method\n"
        "class HoldFirst(Method):\n"
        "    description = 'Shows the first context frame forever.'\n"
        "    def reset(self, sample):\n"
        "        super().reset(sample); self._first = None\n"
        "    def memorize(self, frames):\n"
        "        if self._first is None: self._first = frames[:1].to(self.device)\n"
        "    def generate(self, n):\n"
        "        for s in range(0, n, 4): yield self._first.expand(min(4, n - s), -1, -1, -1)\n"
    )
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "--target", str(site), str(pkg)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stderr
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = magbench("methods", env=env)
    assert "hold-first" in listed.stdout and "plugin" in listed.stdout
    ran = magbench("run", "--method", "hold-first", "--dataset", f"synthetic:{synth_dir}", "--out", str(tmp_path / "r"), "-q", "--metrics", "psnr", "--limit", "1", env=env)
    assert ran.returncode == 0, ran.stderr
    assert "1 ok" in ran.stdout
