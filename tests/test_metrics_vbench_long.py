"""VBench-Long consistency: clips, mapping and fusion by hand, the embedded configs against the
upstream files' hashes, and parity with vbench2_beta_long's own pipeline (vbench 0.1.5 from PyPI,
its ``VBenchLong.evaluate`` in ``long_custom_input`` mode run end to end on in-memory videos)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import pytest
import torch

from magbench.errors import MagbenchError
from magbench.metrics.base import MetricInputs
from magbench.metrics.consistency import ChunkedExtractor, clip_preprocess, consistency_score, dino_preprocess
from magbench.metrics.vbench_long import (
    VBenchLongBackgroundConsistency,
    VBenchLongSubjectConsistency,
    clip_weighted_score,
    long_consistency,
    long_settings,
    map_clip2clip,
    split_clips,
)
from magbench.metrics.vbench_long_tables import FILES, SHA256, parse_flat_yaml

FPS = 16


# -- by hand ---------------------------------------------------------------------------------------
def test_clips_cover_whole_seconds_and_the_remainder_is_the_last_full_clip():
    assert split_clips(100, FPS, 2) == [(0, 32), (32, 64), (64, 96), (68, 100)]
    assert split_clips(64, FPS, 2) == [(0, 32), (32, 64)]
    assert split_clips(20, FPS, 2) == [(0, 20)]  # shorter than a clip: the whole video
    assert split_clips(100, 16.9, 1) == split_clips(100, 16, 1)  # VBench-Long takes int(fps)


def test_mapping_interpolates_between_table_keys():
    m = long_settings("subject_consistency").mapping
    table = dict(m)
    assert map_clip2clip(0.5, m) == table[0.5]
    assert map_clip2clip(0.505, m) == pytest.approx((table[0.5] + table[0.51]) / 2, abs=1e-12)
    assert map_clip2clip(0.0, m) == 0.0 and map_clip2clip(-0.2, m) == 0.0
    assert map_clip2clip(1.0, m) == 1.0


def test_settings_come_from_the_configs_and_half_second_clips_are_refused():
    s = long_settings("background_consistency")
    assert (s.clip_seconds, s.w_inclip, s.w_clip2clip) == (2, 0.5, 0.5)
    s = long_settings("subject_consistency", "1.0", "inclip")
    assert (s.clip_seconds, s.w_inclip, s.w_clip2clip) == (1, 1.0, 0.0)
    with pytest.raises(MagbenchError, match="int\\(0.5\\) = 0"):
        long_settings("subject_consistency", "0.5")
    with pytest.raises(MagbenchError, match="fusion"):
        VBenchLongSubjectConsistency(extractor=lambda x: x.mean(dim=(2, 3)), fusion="mean")


def test_fused_score_by_hand_and_one_clip_video_keeps_its_inclip_score():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(70, 6, generator=g) + 2.0
    s = long_settings("subject_consistency")
    long = long_consistency(feats, FPS, s)
    inclip = [consistency_score(feats[a:b]) for a, b in [(0, 32), (32, 64), (38, 70)]]
    c2c = consistency_score(feats[[0, 32, 38]])
    mapped = map_clip2clip(c2c, s.mapping)
    assert long.inclip == inclip and long.clip2clip == c2c
    assert long.fused == pytest.approx([0.5 * v + 0.5 * mapped for v in inclip], abs=1e-12)
    short = long_consistency(feats[:20], FPS, s)
    assert short.clip2clip is None and short.fused == [consistency_score(feats[:20])]
    assert clip_weighted_score([3.0, 1.0], [3, 1]) == 1.0  # (3 + 1) / 4 clips, not mean(1, 1)


def test_embedded_configs_are_the_upstream_files_and_parse_as_yaml():
    yaml = pytest.importorskip("yaml")
    for name, text in FILES.items():
        assert hashlib.sha256(text.encode()).hexdigest() == SHA256[name], name
        assert parse_flat_yaml(text) == yaml.safe_load(text), name


# -- parity with vbench2_beta_long -------------------------------------------------------------------
def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


def _unused(*args, **kwargs):  # pragma: no cover - a stub that the scored path never calls
    raise AssertionError("stubbed dependency called")


# vbench2_beta_long imports these at module level for paths this test does not take (scene
# detection, DreamSim, MoviePy); torchvision 0.29 removed write_video, which the test replaces.
_STUBS = {
    "dreamsim": {"dreamsim": _unused},
    "scenedetect": {"open_video": _unused, "SceneManager": _unused, "split_video_ffmpeg": _unused},
    "scenedetect.detectors": {"ContentDetector": _unused},
    "scenedetect.video_splitter": {"split_video_ffmpeg": _unused},
    "moviepy": {},
    "moviepy.editor": {"VideoFileClip": _unused},
    "easydict": {"EasyDict": dict},
}


@pytest.fixture(scope="module")
def vbl():
    pytest.importorskip("vbench", reason="install with: pip install --no-deps 'vbench==0.1.5'")
    import torchvision.io

    with pytest.MonkeyPatch.context() as mp:
        if not hasattr(torchvision.io, "write_video"):
            mp.setattr(torchvision.io, "write_video", _unused, raising=False)
        for name, attrs in _STUBS.items():
            if _missing(name):
                mod = types.ModuleType(name)
                for k, v in attrs.items():
                    setattr(mod, k, v)
                mp.setitem(sys.modules, name, mod)
        pkg = importlib.import_module("vbench2_beta_long")
        # evaluate() imports the dimension modules itself; importing them here, stubs in place,
        # caches them for it.
        importlib.import_module("vbench2_beta_long.subject_consistency")
        importlib.import_module("vbench2_beta_long.background_consistency")
        mods = types.SimpleNamespace(
            pkg=pkg,
            utils=importlib.import_module("vbench2_beta_long.utils"),
            vb_utils=importlib.import_module("vbench.utils"),
            vb_subj=importlib.import_module("vbench.subject_consistency"),
            vb_bg=importlib.import_module("vbench.background_consistency"),
        )
    return mods


class TinyNet(torch.nn.Module):
    """A small fixed random network standing in for DINO / CLIP on both sides."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.conv = torch.nn.Conv2d(3, 10, 16, stride=16)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.05)
            self.conv.bias.copy_(torch.randn(10, generator=g))

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))

    def encode_image(self, x):  # what vbench calls on a CLIP model
        return self(x)


# The parity videos play at 4 fps, so that 2 s clips are 8 frames and the test stays fast.
PARITY_FPS = 4


def _videos() -> dict[str, torch.Tensor]:
    """Three videos at 4 fps: 18 frames (3 clips of 8, the last overlapping), 10 (2 clips), 5 (one
    clip, no clip-to-clip score). Frames wander in colour so the scores spread."""
    g = torch.Generator().manual_seed(3)
    out = {}
    for i, n in enumerate((18, 10, 5)):
        walk = torch.cumsum(torch.randn(n, 3, 1, 1, generator=g) * 0.08, dim=0)
        base = torch.rand(1, 3, 12, 20, generator=g)
        out[f"vid{i}-0"] = ((base + walk + 0.05 * torch.randn(n, 3, 12, 20, generator=g)) % 1.0)
    return out


def _run_vbench_long(vbl, tmp_path: Path, videos: dict[str, torch.Tensor], net: TinyNet, dimension: str,
                     dev_flag: bool, monkeypatch) -> tuple[float, list[dict]]:
    """VBenchLong.evaluate on ``videos`` with mp4 reading/writing replaced by a dictionary."""
    root = tmp_path / "videos"
    root.mkdir()
    store: dict[str, torch.Tensor] = {}
    for name, v in videos.items():
        path = root / f"{name}.mp4"
        path.touch()
        store[str(path)] = (v * 255).round()  # vbench's load_video: T x C x H x W floats in [0, 255]

    def write_video(path, frames, fps):  # VBench-Long writes T x H x W x C
        Path(path).touch()
        store[str(path)] = frames.permute(0, 3, 1, 2).clone().float()

    def load_video(path, *a, **k):
        return store[str(path)].clone()

    for mod in (vbl.utils, vbl.vb_subj, vbl.vb_bg):
        monkeypatch.setattr(mod, "load_video", load_video)
    monkeypatch.setattr(vbl.utils, "write_video", write_video)
    monkeypatch.setattr(vbl.utils, "get_video_properties", lambda path: {"fps": PARITY_FPS})
    monkeypatch.setattr(vbl.pkg, "load_clip_lengths", lambda path: parse_flat_yaml(FILES[Path(path).name]))
    monkeypatch.setattr(vbl.vb_utils, "CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.hub, "load", lambda **kw: net)
    import clip

    monkeypatch.setattr(clip, "load", lambda *a, **k: (net, None))
    configs = {}
    for name in ("slow_fast_params.yaml", "subject_mapping_table.yaml", "background_mapping_table.yaml"):
        configs[name] = tmp_path / name
        configs[name].write_text(FILES[name])
    info = tmp_path / "full_info.json"
    info.write_text("[]")
    out = tmp_path / "out"
    bench = vbl.pkg.VBenchLong("cpu", str(info), str(out))
    with torch.no_grad():
        bench.evaluate(
            videos_path=str(root), name="parity", dimension_list=[dimension], mode="long_custom_input",
            use_semantic_splitting=False, clip_length_config="clip_length_mix.yaml",
            sb_clip2clip_feat_extractor="dino", bg_clip2clip_feat_extractor="clip",
            w_inclip=1.0, w_clip2clip=0.0, dev_flag=dev_flag,
            slow_fast_eval_config=str(configs["slow_fast_params.yaml"]),
            sb_mapping_file_path=str(configs["subject_mapping_table.yaml"]),
            bg_mapping_file_path=str(configs["background_mapping_table.yaml"]),
            num_of_samples_per_prompt=1, static_filter_flag=False,
        )
    (result,) = json.loads((out / "parity_eval_results.json").read_text()).values()
    return result[0], result[1]


@pytest.mark.parametrize("cls,preprocess,dimension", [
    (VBenchLongSubjectConsistency, dino_preprocess, "subject_consistency"),
    (VBenchLongBackgroundConsistency, clip_preprocess, "background_consistency"),
])
@pytest.mark.parametrize("fusion,dev_flag", [("slow_fast", True), ("inclip", False)])
def test_parity_with_vbench2_beta_long_evaluate(vbl, tmp_path, monkeypatch, cls, preprocess, dimension, fusion, dev_flag):
    videos = _videos()
    net = TinyNet().eval()

    class Tiny(ChunkedExtractor):
        pass

    Tiny.preprocess = staticmethod(preprocess)
    metric = cls(extractor=Tiny(net, chunk=8), fusion=fusion)
    theirs_all, theirs_clips = _run_vbench_long(vbl, tmp_path, videos, net, dimension, dev_flag, monkeypatch)
    with torch.no_grad():
        ours = {name: metric(MetricInputs(generated=v, target=v, fps=PARITY_FPS)) for name, v in videos.items()}
    key = metric.key
    # their per-clip rows, keyed "<...>/split_clip/<video>/<video>_<k>.mp4/<video>.mp4", clip order = name order
    by_video: dict[str, list[dict]] = {}
    for row in theirs_clips:
        by_video.setdefault(Path(row["video_path"]).stem, []).append(row)
    assert sorted(by_video) == sorted(videos)
    for name, res in ours.items():
        rows = sorted(by_video[name], key=lambda r: Path(r["video_path"]).parent.name)
        detail = res.extra[f"{key}_detail"]
        assert len(rows) == len(detail["clips"]) == res.extra[f"{key}_clips"]
        for row, inclip, fused in zip(rows, detail["inclip"], detail["fused"]):
            assert abs(row["inclip_score"] - inclip) < 1e-6
            assert abs(row["video_results"] - fused) < 1e-6
            assert abs(row["mapped_clip2clip_score"] - detail["mapped_clip2clip"]) < 1e-6
            assert abs(row["clip2clip_score"] - (detail["clip2clip"] or 0)) < 1e-6
        assert abs(res.values[key] - sum(r["video_results"] for r in rows) / len(rows)) < 1e-6
    ours_all = clip_weighted_score([r.extra[f"{key}_sum"] for r in ours.values()],
                                   [r.extra[f"{key}_clips"] for r in ours.values()])
    assert abs(ours_all - theirs_all) < 1e-6
    # negative controls: a mean of per-video scores, and clips without the overlapping last one
    assert abs(sum(r.values[key] for r in ours.values()) / len(ours) - theirs_all) > 1e-5
    v0 = ours["vid0-0"].extra[f"{key}_detail"]
    assert v0["clips"] == [[0, 8], [8, 16], [10, 18]]
    feats = metric.extractor(videos["vid0-0"])
    no_overlap = [consistency_score(feats[a:b]) for a, b in [(0, 8), (8, 16), (16, 18)]]
    assert abs(no_overlap[-1] - v0["inclip"][-1]) > 1e-5
    if fusion == "slow_fast":
        assert abs(v0["fused"][0] - v0["inclip"][0]) > 1e-4  # the clip-to-clip half moved it
    else:
        assert v0["fused"] == v0["inclip"]
    assert not math.isnan(ours_all)


def test_backbone_features_are_reused_for_the_same_frames_and_their_prefix_only():
    class Count(TinyNet):
        n = 0

        def forward(self, x):
            Count.n += x.shape[0]
            return super().forward(x)

    class Ext(ChunkedExtractor):
        preprocess = staticmethod(dino_preprocess)

    net = Count().eval()
    a, b = Ext(net, chunk=4), Ext(net, chunk=4)  # two metrics sharing one backbone
    video = torch.rand(10, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    whole = a(video)
    assert Count.n == 10 and b(video) is whole  # the second metric reads the first's features
    torch.testing.assert_close(b(video[:6]), whole[:6])  # a prefix view: a slice, no new pass
    assert Count.n == 10
    b(video[2:6])  # not a prefix: computed
    assert Count.n == 14
    b(video.clone())  # equal values, another tensor: computed
    video.mul_(0.5)  # changed in place: its version moved, computed again
    torch.testing.assert_close(a(video), b(video))
    assert Count.n == 34
