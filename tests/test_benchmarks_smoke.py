"""The GPU benchmark scripts keep working: each runs its tiny CPU mode and writes its JSON.
(Their timings on CPU mean nothing; what is checked is that the code paths and outputs exist.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str, out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_wan_benchmark_tiny_mode_reports_every_policy_with_cuda_graphs_flag(tmp_path):
    res = _run("bench_wan.py", "--tiny", "--device", "cpu", "--blocks", "1", "--cuda-graphs", "--no-vae", out=tmp_path / "w.json")
    rows = res["rows"] if isinstance(res, dict) else res
    assert {r["policy"] for r in rows} == {"mag", "self-forcing", "full-history"}
    assert all(r["transformer_block_s"] > 0 and r["kv_bytes"] > 0 for r in rows)


def test_vae_benchmark_tiny_mode_measures_errors_against_float32(tmp_path):
    pytest.importorskip("diffusers")
    res = _run("bench_vae.py", "--tiny", "--device", "cpu", "--blocks", "1", out=tmp_path / "v.json")
    names = [r["variant"] for r in res["rows"]]
    assert names == ["fp32-reference", "default", "channels-last", "channels-last+fused-norms"]
    # On the CPU every variant runs in float32: the same numbers up to summation order.
    assert all(r["decode_max_abs_err_vs_fp32"] < 1e-4 for r in res["rows"])


def test_throughput_benchmark_tiny_mode_splits_a_sample_by_stage(tmp_path):
    res = _run("bench_throughput.py", "--tiny", "--method", "mag", "--samples", "1", "--warmup", "0", "--seconds", "6",
               "--metrics", "psnr", out=tmp_path / "t.json")
    assert res["samples_timed"] == 1 and res["samples_per_hour"] > 0
    stages = res["mean_stage_s"]
    assert {"text", "memorize", "generate", "decode", "input", "metrics", "save", "other"} <= set(stages)
    assert res["method_load_s"] > 0 and res["harness_warmup_s"] > 0


def test_table_cost_benchmark_tiny_mode_estimates_the_table_in_both_memory_sources(tmp_path):
    res = _run("bench_table_cost.py", "--opt", "config=tiny", "--opt", "random_weights=true", "--device", "cpu",
               "--size", "32x48", "--seconds", "6", "--methods", "mag", "--metrics", "psnr", out=tmp_path / "c.json")
    assert [(r["method"], r["source"]) for r in res["runs"]] == [("mag", "generated"), ("mag", "ground-truth")]
    assert all(r["failed"] == 0 and r["mean_steady_s"] > 0 for r in res["runs"])
    est = res["estimate"]
    assert set(est) == {"1", "2", "4", "8"} and est["1"]["hours"] > est["2"]["hours"] > est["8"]["hours"] > 0
    assert res["profile"]["method"] == "mag" and "memorize" in res["profile"]["stages_s"]
