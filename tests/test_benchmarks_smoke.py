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
