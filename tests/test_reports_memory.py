"""The memory tasks in the report: age curves, rate-distortion, the per-block table with the
paper's reported row (labelled, never averaged with measured rows)."""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from magbench.record import SampleRecord
from magbench.reports import memory as memory_report
from magbench.reports.html import report
from magbench.store import RecordWriter, atomic_write_json
from magbench.tasks.memory import KEY_INFO, MemoryPart

BLOCKS = 5


def _write_run(root: Path, method: str, kind: str, task: str, psnr_by_index, bytes_per_frame: float, n: int = 3) -> Path:
    run = root / f"{method}__{task}"
    run.mkdir(parents=True)
    atomic_write_json(run / "manifest.json", {
        "run_id": run.name, "fingerprint": f"fp-{run.name}",
        "method": {"name": method, "kind": kind, "description": method, "config": {"name": method, "options": {}}, "bounds": {}},
        "dataset": {"id": "synthetic:test", "revision": "abc"}, "protocol": {"id": "magbench-replay-v1"},
        "task": {"name": task, "protocol": f"{task}-v1", "options": {}}, "metrics": [], "key_info": KEY_INFO,
        "seed": 0, "device": "cpu", "dtype": "float32", "config": {"method": {"name": method, "options": {}}},
    })
    writer = RecordWriter(run / "samples.jsonl")
    for i in range(n):
        psnr = [float(v) + 0.1 * i for v in psnr_by_index]
        frames = 12 * BLOCKS - 3
        part = MemoryPart(
            num_frames=frames, height=32, width=48, prompt="p", block_index=list(range(BLOCKS)),
            block_start=[0] + [12 * b - 3 for b in range(1, BLOCKS)], block_frames=[9] + [12] * (BLOCKS - 1),
            block_age=list(range(BLOCKS - 1, -1, -1)), block_psnr=psnr, block_ssim=[0.5] * BLOCKS,
            block_latent_mse=[0.1] * BLOCKS, memory_bytes=int(bytes_per_frame * frames), memory_bytes_per_frame=bytes_per_frame,
        )
        rec = SampleRecord(sample_id=f"s{i}", task=task, status="ok", part=part,
                           metrics={"recall_psnr": float(np.mean(psnr)), "memory_bytes_per_frame": bytes_per_frame})
        writer.append(rec.to_json())
    return run


@pytest.fixture()
def runs(tmp_path):
    task = "memory-reconstruction"
    _write_run(tmp_path, "mag", "method", task, [30, 29, 28, 27, 26], 500.0)
    _write_run(tmp_path, "vae-roundtrip", "ceiling", task, [35] * BLOCKS, 2000.0)
    _write_run(tmp_path, "mean-frame", "floor", task, [12] * BLOCKS, 10.0)
    return tmp_path


def test_block_table_is_the_papers_shape_with_the_reported_row_apart(runs):
    recs = [SampleRecord.from_json(json.loads(line)) for line in (runs / "mag__memory-reconstruction" / "samples.jsonl").read_text().splitlines()]
    table = memory_report.block_table("memory-reconstruction", [("mag", "method", recs)])
    assert table["columns"] == [f"block {i}" for i in range(1, BLOCKS + 1)]
    mag, paper = table["rows"]
    assert mag["source"] == "measured" and [c["n"] for c in mag["cells"]] == [3] * BLOCKS
    assert mag["cells"][0]["text"] == "30.10"  # mean of 30.0, 30.1, 30.2: measured records only
    assert paper["kind"] == "reported" and "reported in the paper" in paper["source"]
    assert [c["text"] for c in paper["cells"]] == ["34.81", "", "31.73", "29.89", "28.64"]


def test_age_curves_run_from_the_last_memorised_block(runs):
    recs = [SampleRecord.from_json(json.loads(line)) for line in (runs / "mag__memory-reconstruction" / "samples.jsonl").read_text().splitlines()]
    (curve,) = memory_report.age_curves([("mag", recs)], "psnr")
    np.testing.assert_allclose(curve.mean, [26.1, 27.1, 28.1, 29.1, 30.1])  # age 0 = block index 4


def test_report_shows_curves_rate_distortion_and_block_table(runs, tmp_path):
    out = report([runs], tmp_path / "r.html")
    page = out.read_text()
    assert page.count("What each memory gives back") == 1
    assert "Rate-distortion" in page and "recall PSNR against memory bytes per memorised frame" in page
    assert "recall_psnr by block age" in page
    table = page[page.index('class="leaderboard memory-blocks"'):]
    table = html_lib.unescape(re.sub(r"<[^>]+>", " ", table[: table.index("</table>")]))
    assert "MAG memory model alone" in table and "reported in the paper (not measured)" in table
    assert "34.81" in table and "35" in table


def test_the_leaderboard_ranks_a_memory_task_by_its_own_primary_metric_recall_psnr(tmp_path):
    """The CLI's leaderboard and the HTML agree: a memory task ranks by recall PSNR (the task's
    ``primary_metric``), not by whichever key a record happens to list first."""
    from magbench.reports.leaderboard import leaderboard

    task = "memory-recall"
    # memory_bytes_per_frame first in every record: the fewest bytes would win if it ranked.
    for method, psnr, nbytes in (("small", 12.0, 10.0), ("big", 30.0, 5000.0)):
        run = _write_run(tmp_path, method, "method", task, [psnr] * BLOCKS, nbytes)
        lines = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
        for rec in lines:
            rec["metrics"] = {"memory_bytes_per_frame": nbytes, "recall_psnr": rec["metrics"]["recall_psnr"]}
        (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    df = leaderboard(sorted(tmp_path.iterdir()))
    assert df.attrs["primary"] == "recall_psnr"
    assert list(df["method"]) == ["big", "small"]
