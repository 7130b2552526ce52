"""The pipelined harness (``RunConfig.pipeline``, ``--pipeline/--no-pipeline``): the next sample is
read and the previous one written while a sample runs, and the records are those of the serial
harness, byte for byte outside timing, in the same order."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from magbench.harness import Harness, RunConfig
from magbench.store import RunDir, record_line

sys.path.insert(0, str(Path(__file__).parent / "plugins"))  # magbench_test_methods

# What may differ between two runs of the same configuration: time, and the method's self-timed
# parts of the timing (decode_s, ...) that live inside it.
VARIABLE = ("timing", "memory", "finished_at")
METRICS = ["psnr", "ssim", "lpips", "bestmatch"]
METRIC_OPTS = {"lpips": {"random_weights": True}, "bestmatch": {"random_weights": True}}


def _break_middle_video(data: Path) -> None:
    broken = sorted((data / "videos").glob("*.mp4"))[1]
    broken.write_bytes(broken.read_bytes()[:200])  # the middle sample fails while it is read


def _lines(run: Path) -> list[str]:
    out = []
    for rec in RunDir(run).records():
        data = json.loads(record_line(rec))
        for k in VARIABLE:
            data.pop(k, None)
        out.append(json.dumps(data, sort_keys=True))
    return out


def _files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for sub in ("frames", "previews") for p in sorted((run / sub).glob("*"))}


def _compare(data: Path, tmp_path: Path, method: str, options: dict, ok: int) -> None:
    runs = {}
    for pipeline in (True, False):
        out = tmp_path / f"{method}_pipeline_{pipeline}"
        cfg = RunConfig(
            method=method, dataset=f"synthetic:{data}", out=out, device="cpu", method_options=options,
            metrics=METRICS, metric_options=METRIC_OPTS, pipeline=pipeline,
        )
        order: list[str] = []
        s = Harness(cfg).run(progress=False, on_sample=lambda r: order.append(r.sample_id))
        assert (s.ok, s.failed) == (ok, 1), [r.error for r in s.records]
        runs[pipeline] = (out, order)
    (a, order_a), (b, order_b) = runs[True], runs[False]
    assert order_a == order_b == [x["sample_id"] for x in map(json.loads, _lines(b))]
    assert _lines(a) == _lines(b)
    failed = [json.loads(x) for x in _lines(a) if json.loads(x)["status"] != "ok"]
    assert len(failed) == 1 and failed[0]["error"].startswith("load: ")  # named by the reader's stage
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb) and len(fa) == 2 * ok and all(fa[k] == fb[k] for k in fa)


def test_pipelined_and_serial_runs_write_the_same_records_and_files(synth_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    _break_middle_video(data)
    _compare(data, tmp_path, "replay-context", {}, ok=2)


@pytest.mark.slow
def test_pipelined_and_serial_runs_of_a_wan_method_write_the_same_records(tmp_path):
    """The tiny random mag (a real generator, VAE and KV memory) generating while the writer
    thread scores and saves the sample before: the same bytes."""
    from magbench.data.synthetic import SynthConfig, generate

    data = tmp_path / "data"
    generate(data, SynthConfig(n=3, height=32, width=48, seconds=6.0, seed=0))  # 81 context + 12 target frames
    _break_middle_video(data)
    _compare(data, tmp_path, "mag", {"config": "tiny", "random_weights": True}, ok=2)


def test_the_next_sample_is_read_and_the_previous_one_saved_while_a_sample_runs(synth_dir, tmp_path):
    import magbench_test_methods as plugins

    plugins.Neighbours.clear()
    plugins.WaitsForNeighbours.seen = 0
    cfg = RunConfig(
        method="magbench_test_methods:WaitsForNeighbours", dataset=f"synthetic:{synth_dir}", out=tmp_path / "r",
        device="cpu", metrics=["psnr"], limit=3,
    )
    s = Harness(cfg, stage_hook=plugins.Neighbours.hook).run(progress=False)
    assert s.ok == 3, [r.error for r in s.records]


def test_a_serial_run_is_asked_for_with_pipeline_false(synth_dir, tmp_path):
    order: list[str] = []

    def hook(stage: str, seconds: float) -> None:
        if stage in ("input", "reset", "save"):
            order.append(stage)

    cfg = RunConfig(method="replay-context", dataset=f"synthetic:{synth_dir}", out=tmp_path / "r", device="cpu",
                    metrics=["psnr"], limit=3, pipeline=False)
    Harness(cfg, stage_hook=hook).run(progress=False)
    assert order == ["input", "reset", "save"] * 3  # one sample after another


def test_the_warm_up_takes_the_first_sample_as_the_reader_prepared_it(synth_dir, tmp_path, monkeypatch):
    from magbench.data.dataset import VideoSample

    reads: list[str] = []
    own = VideoSample.load_frames_checked

    def counted(self, *args, **kwargs):
        reads.append(self.sample_id)
        return own(self, *args, **kwargs)

    monkeypatch.setattr(VideoSample, "load_frames_checked", counted)
    for pipeline, expected in ((True, 2), (False, 3)):  # serial: the warm-up reads the first video again
        reads.clear()
        cfg = RunConfig(method="replay-context", dataset=f"synthetic:{synth_dir}", out=tmp_path / f"r{pipeline}",
                        device="cpu", metrics=["psnr"], limit=2, pipeline=pipeline)
        assert Harness(cfg).run(progress=False).ok == 2
        assert len(reads) == expected and reads.count(reads[0]) == expected - 1
