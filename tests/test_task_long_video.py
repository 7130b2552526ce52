"""Task long-video: text-to-video from prompts with VBench / VBench-Long / drift scores, FPS per
window and memory against length; a stop (out of memory, time budget) is a per-sample failure
naming the length reached. Stub methods (tests/plugins) run on a fake clock; the memory test runs
the real Wan methods at the tiny config with random weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from magbench import cli
from magbench.errors import MagbenchError
from magbench.harness import Harness, RunConfig
from magbench.horizon import time_at_frame, window_fps
from magbench.metrics.consistency import BackgroundConsistency, ChunkedExtractor, SubjectConsistency, consistency_score
from magbench.tasks.long_video import DEFAULT_FRAMES, LongVideoPart, LongVideoTask

sys.path.insert(0, str(Path(__file__).parent / "plugins"))
import magbench_test_methods as plugins  # noqa: E402

STUB = "magbench_test_methods:TextToVideoStub"
CONSISTENCY_METRICS = ("subject_consistency", "background_consistency",
                       "vbench_long_subject_consistency", "vbench_long_background_consistency")


# -- efficiency over the horizon, by hand ------------------------------------------------------------
def test_window_fps_splits_frames_and_time_exactly():
    frames, secs = [9, 12, 12, 7], [1.0, 2.0, 3.0, 0.5]
    assert time_at_frame(frames, secs, 16) == pytest.approx(1.0 + 2.0 * 7 / 12)
    w = window_fps(frames, secs, fps=16.0, window_seconds=1.0)  # windows of 16 frames: 16, 16, 8
    assert w.start_frame == [0, 16, 32] and w.end_frame == [16, 32, 40]
    assert w.seconds == pytest.approx([1 + 2 * 7 / 12, 2 * 5 / 12 + 3 * 11 / 12, 3 / 12 + 0.5])
    assert sum(w.seconds) == pytest.approx(sum(secs))  # the windows' time is all the time
    pooled = sum(e - s for s, e in zip(w.start_frame, w.end_frame)) / sum(w.seconds)
    assert pooled == pytest.approx(40 / 6.5)
    assert w.gen_fps[2] == pytest.approx(8 / 0.75) and w.realtime_fraction == 0.0


# -- the task through the harness, on stub methods --------------------------------------------------
class Counting(torch.nn.Module):
    """A tiny fixed feature network that counts the frames it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 32, stride=32)
        self.frames = 0

    def forward(self, x):
        self.frames += x.shape[0]
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture
def tiny_backbones(monkeypatch):
    """DINO and CLIP replaced by tiny networks (their preprocessing kept), one per backbone."""
    torch.manual_seed(0)
    nets = {"subject": Counting(), "background": Counting()}

    from magbench.metrics.consistency import clip_preprocess, dino_preprocess

    class DinoLike(ChunkedExtractor):
        preprocess = staticmethod(dino_preprocess)

    class ClipLike(ChunkedExtractor):
        preprocess = staticmethod(clip_preprocess)

    def build(kind, ext):
        def _build(self, random_weights, weights_dir, chunk, antialias, quantize):
            return ext(nets[kind], chunk, antialias, quantize)
        return _build

    monkeypatch.setattr(SubjectConsistency, "_build", build("subject", DinoLike))
    monkeypatch.setattr(BackgroundConsistency, "_build", build("background", ClipLike))
    return nets


def _config(tmp_path, **kw) -> RunConfig:
    opts = {m: {"random_weights": True} for m in CONSISTENCY_METRICS}  # no weights needed (CI)
    base = dict(method=STUB, task="long-video", dataset="prompts", out=tmp_path / "run", device="cpu",
                metric_options=opts, limit=1)
    base.update(kw)
    return RunConfig(**base)


def test_a_record_has_vbench_long_drift_and_fps_per_window(tmp_path, tiny_backbones):
    plugins.CLOCK.now = 0.0
    h = Harness(_config(tmp_path, task_options={"seconds": 10}), clock=plugins.CLOCK)
    assert [m.name for m in h.metrics] == list(CONSISTENCY_METRICS)
    s = h.run(progress=False)
    r = s.records[0]
    assert r.ok, r.error
    part: LongVideoPart = r.part
    assert part.num_frames == part.frames_generated == 160 and part.stop_reason is None
    for key in ("subject_consistency", "background_consistency", "subject_consistency_5s",
                "vbench_long_subject_consistency", "vbench_long_background_consistency",
                "vbench_long_subject_consistency_inclip", "vbench_long_subject_consistency_clip2clip"):
        assert 0.0 <= r.metrics[key] <= 1.0, key
    assert not any(k.endswith("_target") for k in r.metrics)
    drift = r.extra["subject_consistency_drift"]
    assert drift["start_frame"] == [0, 80] and drift["pairs"] == [79, 80]
    assert r.extra["vbench_long_subject_consistency_clips"] == 5  # 2 s clips of 160 frames
    # on the fake clock every frame costs 0.01 s: 100 fps in every window, 9 frames to the first block
    assert r.timing.first_block_s == pytest.approx(0.09) and r.timing.fps == pytest.approx(100.0)
    assert part.window_start_frame == [0, 80] and part.window_gen_fps == pytest.approx([100.0, 100.0])
    assert part.realtime_fraction == 1.0 and r.memory.frames_per_block[:2] == [9, 21]
    # each backbone embedded the video once: the VBench-Long metric and the 5 s prefix reuse it
    assert tiny_backbones["subject"].frames == tiny_backbones["background"].frames == 160
    frames = torch.from_numpy(__import__("numpy").load(tmp_path / "run" / r.frames)["generated"])
    assert frames.shape == (160, 8, 8, 3)


def test_the_5s_prefix_is_vbench_on_the_first_81_frames(tmp_path, tiny_backbones):
    s = Harness(_config(tmp_path, task_options={"frames": 100}), clock=plugins.CLOCK).run(progress=False)
    r = s.records[0]
    video = torch.from_numpy(__import__("numpy").load(tmp_path / "run" / r.frames)["generated"])
    video = video.permute(0, 3, 1, 2).float() / 255
    ext = Harness(_config(tmp_path / "b"), clock=plugins.CLOCK).metrics[0].extractor
    feats = ext(video)
    assert r.metrics["subject_consistency_5s"] == pytest.approx(consistency_score(feats[:81]), abs=1e-6)
    assert r.metrics["subject_consistency"] == pytest.approx(consistency_score(feats), abs=1e-6)
    assert r.extra["subject_consistency_5s_pairs"] == 80


def test_samples_per_prompt_get_their_own_ids_and_seeds_and_are_recorded(tmp_path):
    cfg = _config(tmp_path, task_options={"frames": 12, "samples_per_prompt": 2, "score": False}, limit=2)
    h = Harness(cfg, clock=plugins.CLOCK)
    assert h.metrics == [] and h.manifest()["dataset"]["samples_per_prompt"] == 2
    s = h.run(progress=False)
    a, b = s.records
    assert (a.sample_id, b.sample_id) == ("p0000-0", "p0000-1") and a.seed != b.seed
    assert (a.part.prompt_index, a.part.seed_index, b.part.seed_index) == (0, 0, 1)
    assert h.manifest()["dataset"]["num_samples"] == 16


def test_out_of_memory_at_some_length_is_a_sample_failure_naming_it(tmp_path):
    cfg = _config(tmp_path, task_options={"frames": 48, "score": False}, method_options={"oom_at": 30}, limit=2)
    s = Harness(cfg, clock=plugins.CLOCK).run(progress=False)
    assert s.failed == 2 and not (tmp_path / "run" / "fatal.json").exists()  # the run went on
    r = s.records[0]
    assert r.error_type == "SampleError" and "out of memory after 21 of 48 frames (1.3 s of video)" in r.error
    assert "CUDA out of memory" in r.error
    assert r.part.frames_generated == 21 and r.part.stop_reason == "out of memory"
    assert r.memory.kv_bytes_per_block == [9000, 21000] and r.part.window_gen_fps  # curves up to the stop


def test_a_time_budget_stops_the_sample_where_it_got_to(tmp_path):
    plugins.CLOCK.now = 0.0
    cfg = _config(tmp_path, task_options={"frames": 100, "time_budget_s": 0.2, "score": False},
                  method_options={"memory": "growing"})
    r = Harness(cfg, clock=plugins.CLOCK).run(progress=False).records[0]
    assert not r.ok and r.part.stop_reason == "time budget" and r.part.frames_generated == 21
    assert "time budget after 21 of 100 frames" in r.error and r.memory.kv_bytes_per_block == [9000, 21000]


def test_bad_runs_are_refused_in_one_line_before_any_work(tmp_path, tiny_backbones):
    with pytest.raises(MagbenchError, match="lacks text-to-video"):
        Harness(_config(tmp_path, method="repeat-last"))
    with pytest.raises(MagbenchError, match="takes a text file"):
        Harness(_config(tmp_path, dataset="prompts:" + str(tmp_path)))  # a folder
    (tmp_path / "v.csv").write_text("video_path,raw_caption,duration(sec)\n")
    with pytest.raises(MagbenchError, match="not a prompt list"):
        Harness(_config(tmp_path, dataset=f"csv:{tmp_path / 'v.csv'}"))
    with pytest.raises(MagbenchError, match="not both"):
        Harness(_config(tmp_path, task_options={"frames": 10, "seconds": 2}))
    assert not (tmp_path / "run").exists()


def test_lengths_and_random_weight_metrics_follow_the_options(tmp_path):
    task = LongVideoTask(RunConfig(method=STUB, task="long-video"))
    assert task.num_frames == DEFAULT_FRAMES == 477
    assert LongVideoTask(RunConfig(method=STUB, task="long-video", task_options={"seconds": 10})).num_frames == 160

    class Random:
        options = {"random_weights": True}

    opts = task.metric_options({"subject_consistency": {"random_weights": False}}, Random())
    assert opts["subject_consistency"]["random_weights"] is False  # --metric-opt wins
    assert opts["vbench_long_background_consistency"] == {"window_seconds": 5.0, "random_weights": True}


def test_cli_run_long_video_on_the_builtin_prompts(tmp_path, tiny_backbones, capsys):
    args = ["magbench", "run", "--task", "long-video", "--method", STUB, "--seconds", "10", "--limit", "1",
            "--out", str(tmp_path / "cli"), "--device", "cpu", "-q"]
    for m in CONSISTENCY_METRICS:
        args += ["--metric-opt", f"{m}.random_weights=true"]
    old, sys.argv = sys.argv, args
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        sys.argv = old
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    from magbench.store import RunDir

    (rec,) = RunDir(tmp_path / "cli").records()
    assert rec.task == "long-video" and "vbench_long_subject_consistency" in rec.metrics
    assert rec.part.window_gen_fps and "background_consistency_drift" in rec.extra
    # The manifest describes the keys the records have: every metric key, no replay target keys.
    info = RunDir(tmp_path / "cli").manifest()["key_info"]
    assert set(rec.metrics) <= set(info) and not [k for k in info if k.endswith("_target")]


# -- memory against length: the real Wan methods, tiny and random -------------------------------------
def test_a_bounded_methods_memory_is_flat_over_length_while_full_historys_grows(tmp_path):
    kv = {}
    for method, extra in (("self-forcing", {"window_frames": 3}), ("full-history", {})):
        cfg = RunConfig(method=method, task="long-video", dataset="prompts", out=tmp_path / method, device="cpu",
                        method_options={"config": "tiny", "random_weights": True, "resolution": [16, 16], **extra},
                        task_options={"frames": 45, "score": False}, limit=1)
        r = Harness(cfg).run(progress=False).records[0]
        assert r.ok, r.error
        assert r.memory.frames_per_block == [9, 21, 33, 45]
        kv[method] = r.memory.kv_bytes_per_block
    assert len(set(kv["self-forcing"][1:])) == 1  # flat once its window is full
    grows = kv["full-history"]
    assert all(b > a for a, b in zip(grows, grows[1:]))  # one block more attended each time
    assert grows[-1] > kv["self-forcing"][-1]


def test_a_host_memory_grows_with_length_beside_a_flat_device_cache_longlive_rag(tmp_path):
    """LongLive-RAG keeps what its device cache evicts in host RAM: the record shows both, per
    block, so the memory-against-length plot tells an offloaded memory from a bounded one."""
    cfg = RunConfig(method="longlive-rag", task="long-video", dataset="prompts", out=tmp_path / "rag", device="cpu",
                    method_options={"config": "tiny", "random_weights": True, "resolution": [16, 16],
                                    "cache_frames": 6, "memory_frames": 2, "recent_exclude": 1, "descriptor": "avg-pool"},
                    task_options={"frames": 57, "score": False}, limit=1)
    r = Harness(cfg).run(progress=False).records[0]
    assert r.ok, r.error
    host, kv = r.memory.host_bytes_per_block, r.memory.kv_bytes_per_block
    assert len(host) == len(kv) == len(r.memory.frames_per_block) and r.memory.host_bytes_end == host[-1]
    assert host[0] == 0 and host[-1] > 0 and all(b >= a for a, b in zip(host, host[1:]))
    assert len(set(kv[2:])) == 1  # the device cache is full and stays so


def test_the_prefix_of_a_long_generation_is_the_short_generation_mag_tiny():
    """What scoring the first 81 frames as "the 5 s video" rests on: a causal generator's first
    blocks do not depend on how many follow (same prompt and seed)."""
    from magbench.harness import create_method
    from magbench.method import SampleInfo

    m = create_method("mag", config="tiny", random_weights=True, resolution=(16, 16))
    m.load("cpu", torch.float32)
    outs = []
    for n in (21, 45):
        m.reset(SampleInfo(sample_id="p0", prompt="a cat", seed=5, height=16, width=16, fps=16.0,
                           num_context=0, num_target=n))
        outs.append(torch.cat(list(m.generate(n))))
    assert torch.equal(outs[0], outs[1][:21])
    assert not torch.equal(outs[1][:21], outs[1][21:42])  # not a constant video
