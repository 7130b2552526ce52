"""The long-video report: pooled VBench / VBench-Long beside the paper's reported rows, the
efficiency rows against length (a stopped sample shown up to its stop), and the three charts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from magbench.harness import Harness, RunConfig
from magbench.metrics.consistency import pair_weighted_score
from magbench.reports.long_video import at_length, load_run, pooled_scores, write_report

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
import magbench_test_methods as plugins  # noqa: E402

from test_task_long_video import CONSISTENCY_METRICS, STUB, tiny_backbones  # noqa: E402,F401


@pytest.fixture
def runs(tmp_path, tiny_backbones):  # noqa: F811
    opts = {m: {"random_weights": True} for m in CONSISTENCY_METRICS}
    ok = RunConfig(method=STUB, task="long-video", dataset="prompts", out=tmp_path / "ok", device="cpu",
                   metric_options=opts, limit=2, task_options={"frames": 96},
                   method_options={"memory": "growing"})
    stopped = RunConfig(method=STUB, task="long-video", dataset="prompts", out=tmp_path / "oom", device="cpu",
                        limit=1, task_options={"frames": 96, "score": False}, method_options={"oom_at": 40})
    for cfg in (ok, stopped):
        Harness(cfg, clock=plugins.CLOCK).run(progress=False)
    return tmp_path / "ok", tmp_path / "oom"


def test_report_pools_as_vbench_and_lists_paper_rows_as_reported(runs, tmp_path):
    ok, oom = runs
    run = load_run(ok)
    p = pooled_scores(run)
    recs = run.ok
    assert len(recs) == 2
    expect = pair_weighted_score([r.extra["subject_consistency_sum"] for r in recs],
                                 [r.extra["subject_consistency_pairs"] for r in recs])
    assert p["subject_consistency"] == pytest.approx(expect)
    assert {"subject_consistency_5s", "vbench_long_background_consistency"} <= set(p)
    md = write_report([ok, oom], tmp_path / "rep", every_seconds=2.0).read_text()
    assert "| MAG | MAG paper, arXiv 2512.18741 (reported, not measured) | 97.44 | 97.02 |" in md
    assert "99.18" in md and f"{100 * p['subject_consistency']:.2f}" in md
    assert "33 of 96 frames (2.1 s), stopped: generate: out of memory after 33 of 96 frames" in md
    for png in ("consistency_over_time.png", "fps_over_time.png", "memory_vs_length.png"):
        assert (tmp_path / "rep" / png).stat().st_size > 1000


def test_efficiency_rows_at_each_span_of_video(runs):
    rec = load_run(runs[0]).records[0]
    rows = at_length(rec, every_seconds=2.0)  # 32 frames a row: 32, 64, 96
    assert [r["frames"] for r in rows] == [32, 64, 96]
    assert all(r["gen_fps"] == pytest.approx(100.0) for r in rows)  # 0.01 s a frame on the fake clock
    # memory after the block that reached each length (blocks end at 9, 21, 33, ..., 69, ..., 96)
    assert [r["kv_bytes"] for r in rows] == [33000, 69000, 96000]
