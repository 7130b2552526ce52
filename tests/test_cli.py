"""The command line as a user drives it: exit codes, one-line errors, resume, locks, rescoring.

Most commands run in this process through ``magbench.cli.main`` (the same code as the console
script, without an interpreter start). Only what needs a second process starts one: a run killed
with SIGKILL, and a run holding the folder's locks while a second invocation is refused. Those
synchronise on files the method under test writes when it reaches a block, never on sleeps.
"""

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_for_file, wait_for_lines
from magbench.record import SampleRecord
from magbench.store import RunDir

PLUGINS = Path(__file__).parent / "plugins"
sys.path.insert(0, str(PLUGINS))
METRICS = ["--metrics", "psnr,ssim"]


def main(*args, capsys=None):
    """``magbench ARGS`` in this process: (exit code, stdout, stderr)."""
    from magbench import cli

    old = sys.argv
    sys.argv = ["magbench", *map(str, args)]
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    if capsys is None:
        return code, "", ""
    out = capsys.readouterr()
    return code, out.out, out.err


def spawn(*args, env=None, **kw):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), e.get("PYTHONPATH", "")])
    e.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "magbench", *map(str, args)], env=e, text=True, **kw)


def _flat(text):
    return " ".join(text.split())


def _comparable(records):
    """Records minus what legitimately differs between runs: timings, memory, wall clock."""
    return {r.sample_id: {k: v for k, v in r.to_json().items() if k not in ("timing", "memory", "finished_at")} for r in records}


@pytest.fixture(scope="module")
def reference(synth_dir, tmp_path_factory):
    """replay-context over the 3 synthetic samples with psnr and ssim, in this process."""
    out = tmp_path_factory.mktemp("ref") / "run"
    code, _, _ = main("run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", *METRICS)
    assert code == 0
    return out


def test_unknown_method_exits_2_with_one_line_naming_the_closest(capsys, tmp_path):
    code, _, err = main("run", "--method", "oracel", "--out", tmp_path / "r", capsys=capsys)
    assert code == 2 and "unknown method 'oracel'" in err and "oracle" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_method_path_to_something_that_is_not_a_method_class_says_so(capsys, tmp_path):
    code, _, err = main("run", "--method", "magbench_test_methods:not_a_method", "--out", tmp_path / "r", capsys=capsys)
    assert code == 2 and "not a subclass of magbench.method.Method" in _flat(err)


def test_bad_csv_path_is_a_one_line_error(capsys):
    code, _, err = main("run", "--method", "oracle", "--dataset", "csv:/nowhere/at/all", capsys=capsys)
    assert code == 2 and "no such dataset folder" in err and "Traceback" not in err


def test_methods_lists_builtins_with_pattern(capsys):
    code, out, _ = main("methods", "repl", capsys=capsys)
    assert code == 0 and "replay-context" in out and "oracle" not in out


def test_help_documents_every_run_option(capsys):
    code, out, _ = main("run", "--help", capsys=capsys)
    for opt in ("--method", "--dataset", "--limit", "--out", "--device", "--dtype", "--seed", "--save-videos", "--metrics", "--no-keep-frames"):
        assert opt in out


def test_failed_samples_exit_3_and_a_non_tty_run_prints_a_line_per_sample(synth_dir, tmp_path, capsys):
    code, out, err = main(
        "run", "-m", "magbench_test_methods:Troublemaker", "-d", f"synthetic:{synth_dir}", "--out", tmp_path / "r",
        "--device", "cpu", "--metrics", "psnr", capsys=capsys,
    )
    assert code == 3, err
    assert "[1/3] magbench_test_methods:Troublemaker synthetic_000_pan: failed: generate: RuntimeError: boom" in _flat(err)
    assert "[3/3]" in err and "synthetic_002_dolly: ok, psnr" in _flat(err)
    assert "1 ok, 2 failed" in _flat(out) and "end-to-end fps" in out and "warm-up:" in out


def test_missing_optional_package_is_one_line_naming_the_extra_and_leaves_no_folder(synth_dir, tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = main("run", "-m", "magbench_test_methods:NeedsMissingPackage", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "--metrics", "psnr", capsys=capsys)
    assert code == 2 and "pip install -e '.[wan]'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists(), "a run that failed before its first sample leaves no empty folder"


def test_ctrl_c_prints_the_documented_line(synth_dir, tmp_path, capsys):
    code, _, err = main("run", "-m", "magbench_test_methods:Interrupted", "-d", f"synthetic:{synth_dir}", "--out", tmp_path / "r", "--device", "cpu", "--metrics", "psnr", "-q", capsys=capsys)
    assert code == 130 and "interrupted; re-run to finish" in err


def test_run_files_get_the_users_normal_mode(synth_dir, tmp_path):
    old = os.umask(0o002)
    try:
        code, _, _ = main("run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", tmp_path / "r", "--device", "cpu", "-q", "--metrics", "psnr", "--limit", "1")
    finally:
        os.umask(old)
    assert code == 0
    for name in ("manifest.json", "samples.jsonl", "shards.json"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == 0o664, name


def test_score_adds_metrics_to_a_finished_run_without_regenerating(synth_dir, reference, tmp_path, capsys):
    out = tmp_path / "r"
    code, _, _ = main("run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", "--metrics", "psnr")
    assert code == 0
    before = {r.sample_id: r for r in RunDir(out).records()}
    code, stdout, err = main("score", out, "--metrics", "ssim", "--device", "cpu", capsys=capsys)
    assert code == 0, err
    assert "scored 3 samples with ssim" in _flat(stdout)
    after = {r.sample_id: r for r in RunDir(out).records()}
    ref = {r.sample_id: r for r in RunDir(reference).records()}
    for sid, rec in after.items():
        assert rec.metrics["psnr"] == before[sid].metrics["psnr"]
        assert rec.metrics["ssim"] == pytest.approx(ref[sid].metrics["ssim"], abs=1e-7)  # as if scored in the run
        assert rec.timing == before[sid].timing and rec.finished_at == before[sid].finished_at
    manifest = RunDir(out).manifest()
    assert manifest["metrics"] == ["psnr", "ssim"] and manifest["rescored"][0]["records"] == 3


def test_a_run_made_without_lpips_weights_gains_lpips_from_score(synth_dir, tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = main("run", "-m", "repeat-last", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", "--limit", "1", capsys=capsys)
    assert code == 0 and "metric lpips skipped" in _flat(err)  # the default set, offline
    assert "lpips" not in RunDir(out).records()[0].metrics
    code, _, err = main("score", out, "--metrics", "lpips", "--metric-opt", "lpips.random_weights=true", "--device", "cpu", capsys=capsys)
    assert code == 0, err
    rec = RunDir(out).records()[0]
    assert 0 < rec.metrics["lpips"] < 1 and len(rec.per_frame["lpips"]) == rec.part.num_target
    assert "lpips" not in RunDir(out).manifest()["skipped_metrics"]


def test_sigkill_mid_run_then_rerun_completes_without_redoing_finished_samples(synth_dir, reference, tmp_path):
    out, gate = tmp_path / "killed", tmp_path / "gate"
    gate.mkdir()
    args = ["run", "-m", "magbench_test_methods:GatedReplay", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", *METRICS]
    proc = spawn(*args, env={"MAGBENCH_TEST_GATE": str(gate), "MAGBENCH_TEST_GATE_SAMPLE": "synthetic_001_tilt"},
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_file(gate / "reached-synthetic_001_tilt", proc)  # tilt half generated
        wait_for_lines(out / "samples.jsonl", 1, proc)  # pan recorded (by the writer thread, while tilt generates)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    records = out / "samples.jsonl"
    assert [json.loads(l)["sample_id"] for l in records.read_text().splitlines()] == ["synthetic_000_pan"]

    code, _, _ = main(*args)
    assert code == 0
    lines = [json.loads(l) for l in records.read_text().splitlines() if l.strip()]
    assert [r["sample_id"] for r in lines] == ["synthetic_000_pan", "synthetic_001_tilt", "synthetic_002_dolly"], "pan is not redone"
    a, b = _comparable(RunDir(reference).records()), _comparable([SampleRecord.from_json(l) for l in lines])
    for sid in a:
        assert a[sid]["metrics"] == pytest.approx(b[sid]["metrics"], rel=1e-6), sid
        assert a[sid]["per_frame"] == b[sid]["per_frame"] and a[sid]["extra"] == b[sid]["extra"]


def test_second_invocation_on_a_busy_run_folder_is_refused(synth_dir, tmp_path, capsys):
    out, gate = tmp_path / "busy", tmp_path / "gate"
    gate.mkdir()
    args = ["run", "-m", "magbench_test_methods:GatedReplay", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", "--metrics", "psnr", "--limit", "1"]
    proc = spawn(*args, env={"MAGBENCH_TEST_GATE": str(gate)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_file(gate / "reached-synthetic_000_pan", proc)  # it holds the run and record locks now
        code, _, err = main(*args, capsys=capsys)
        assert code == 2 and "another magbench process" in err and f"pid {proc.pid}" in err
        (gate / "release").touch()
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def test_plugin_distribution_with_entry_point_is_listed_and_runs(synth_dir, tmp_path, capsys, monkeypatch):
    from magbench.registry import METHODS

    site = tmp_path / "site"
    (site / "hold_first_method").mkdir(parents=True)
    (site / "hold_first_method" / "__init__.py").write_text(
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
    # What `pip install` of a distribution with this entry point leaves in site-packages.
    dist = site / "hold_first_method-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hold-first-method\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[magbench.methods]\nmy-hold-first = hold_first_method:HoldFirst\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(METHODS, "_entries", dict(METHODS._entries))  # forget the plugin afterwards
    monkeypatch.setattr(METHODS, "_loaded_plugins", False)

    code, out, _ = main("methods", capsys=capsys)
    assert code == 0 and "my-hold-first" in out and "plugin" in out
    code, out, err = main("run", "--method", "my-hold-first", "--dataset", f"synthetic:{synth_dir}", "--out", tmp_path / "r", "-q", "--metrics", "psnr", "--limit", "1", "--device", "cpu", capsys=capsys)
    assert code == 0, err
    assert "1 ok" in out and RunDir(tmp_path / "r").manifest()["method"]["name"] == "my-hold-first"


def test_metrics_all_names_every_metric_it_cannot_run_and_the_flag_to_skip_them(synth_dir, capsys):
    code, _, err = main("run", "-m", "replay-context", "-d", f"synthetic:{synth_dir}", "--metrics", "all", "--device", "cpu", capsys=capsys)
    err = _flat(err)
    assert code == 2 and "metrics" in err and "lpips" in err and "bestmatch" in err
    assert "leave them out with --metrics psnr" in err and "magbench download --metrics" in err




def test_a_run_folder_of_another_configuration_is_refused_naming_overwrite_and_left_as_it_was(synth_dir, tmp_path, capsys):
    out = tmp_path / "r"
    base = ("run", "-m", "hold-first", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", "--metrics", "psnr", "--limit", "1")
    assert main(*base)[0] == 0
    before = (out / "samples.jsonl").read_bytes()
    code, _, err = main(*base, "--opt", "block=6", capsys=capsys)
    assert code == 2 and "different configuration" in err and "--overwrite to replace it" in _flat(err)
    assert (out / "samples.jsonl").read_bytes() == before


def test_overwrite_replaces_a_run_folder_on_purpose_and_keeps_files_that_are_not_the_runs(synth_dir, tmp_path, capsys):
    out = tmp_path / "r"
    base = ("run", "-m", "hold-first", "-d", f"synthetic:{synth_dir}", "--out", out, "--device", "cpu", "-q", "--metrics", "psnr")
    assert main(*base, "--limit", "2", "--save-videos")[0] == 0
    (out / "notes.txt").write_text("mine")
    code, _, err = main(*base, "--limit", "1", "--opt", "block=6", "--overwrite", capsys=capsys)
    assert code == 0, err
    rd = RunDir(out)
    assert rd.manifest()["config"]["method"]["options"]["block"] == 6
    assert [r.sample_id for r in rd.records()] == ["synthetic_000_pan"]
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["synthetic_000_pan.npz"]
    assert not (out / "videos").exists() and (out / "notes.txt").read_text() == "mine"
