"""VBench subject and background consistency of the generated video.

The formula (VBench ``vbench/subject_consistency.py`` and ``vbench/background_consistency.py``,
read for this implementation; both files compute it identically): with f_t the L2-normalised
feature of frame t, a video scores the mean over t >= 1 of

    (max(0, cos(f_t, f_{t-1})) + max(0, cos(f_t, f_0))) / 2

(``F.cosine_similarity`` on the normalised features, as VBench). Verified differences between
the two files are only in how features are computed, not in the formula: subject consistency
runs DINO one frame at a time, background consistency runs CLIP on the whole video as a batch.
A one-frame video has no pairs; recent VBench background consistency then returns 1.0 (subject
consistency divides by zero); we return 1.0 for both.

Preprocessing (``vbench/utils.py`` of vbench 0.1.5, the release on PyPI). VBench decodes the mp4 to uint8 and turns
it into a float32 tensor of values in [0, 255] (``torch.Tensor(frames)``), then:

* DINO (``dino_transform(224)``): ``Resize(224)`` (shorter side to 224, the other scaled, *no
  crop*; bilinear), ``/255``, ImageNet mean/std. The non-square input goes through DINO's own
  ``interpolate_pos_encoding`` (bicubic with ``scale_factor = (n + 0.1) / 14``, no antialias),
  which we reproduce on timm's ``vit_base_patch16_224.dino`` (same weights as
  ``facebookresearch/dino:main`` ``dino_vitb16``); timm's own dynamic-size resampling uses a
  different kernel, so it is not used. Older VBench versions omitted the ``/255`` in
  ``dino_transform``; we follow the current code.
* CLIP (``clip_transform(224)``): ``Resize(224, bicubic)``, ``CenterCrop(224)``, ``/255``, OpenAI
  CLIP mean/std. The image tower is open_clip ``ViT-B-32`` with QuickGELU, weights ``openai``
  (the same network as OpenAI's ``clip.load('ViT-B/32')``; VBench runs it in fp16 on CUDA, we
  run float32).
* Both ``Resize`` calls pass ``antialias=False`` in vbench 0.1.5 (``dino_transform`` and
  ``clip_transform``), so our default is ``antialias=False`` too; ``antialias=True`` gives what an
  unpinned ``Resize`` does on current torchvision. Bicubic output is not clamped (float).
* ``quantize=True`` (default) rounds frames to 8 bits first, as the saved mp4 VBench reads would.

Aggregation over videos: VBench's dimension score is pair-weighted, the sum of the per-frame terms
over all videos divided by the total number of frame pairs (``sim / cnt``), which weights long
videos more than a mean of per-video scores would. So each result carries, beside the per-video
score, ``extra["<key>_sum"]`` (the sum of its terms) and ``extra["<key>_pairs"]`` (their count);
the leaderboard and the report aggregate ``sum of sums / sum of pairs``
(:func:`pair_weighted_score`).

Scores: ``*_consistency`` on the whole video (context + generated target, as one saved video)
and ``*_consistency_target`` on the generated target alone (its first frame is f_0). Features are
extracted once for the whole video; the target's are a slice of them. ``per_frame`` under the
whole-video key holds, for each target frame, its term of the whole-video mean (index = frames
since the switch); it is given only when there are context frames.

The feature extractor is separate from the formula: any callable mapping N x 3 x H x W frames in
[0, 1] to N x D features can be passed as ``extractor=`` (tests use a tiny deterministic one).
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F

from magbench.hub import HubArtifact
from magbench.metrics.backbones import shared_backbone
from magbench.metrics.base import Metric, MetricInputs, MetricResult
from magbench.metrics.weights import CLIP, DINO, resolve_weights
from magbench.registry import register_metric

Extractor = Callable[[torch.Tensor], torch.Tensor]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VBENCH_SIZE = 224


# -- the formula ----------------------------------------------------------------------------------
def consistency_terms(features: torch.Tensor) -> torch.Tensor:
    """Per-frame terms for t = 1..T-1 (float64): (max(0,cos(f_t,f_{t-1})) + max(0,cos(f_t,f_0)))/2."""
    f = F.normalize(features.float(), dim=-1, p=2)
    if f.shape[0] < 2:
        return torch.zeros(0, dtype=torch.float64)
    prev = F.cosine_similarity(f[:-1], f[1:], dim=-1).clamp_min(0.0)
    first = F.cosine_similarity(f[:1].expand_as(f[1:]), f[1:], dim=-1).clamp_min(0.0)
    return ((prev.double() + first.double()) / 2.0).cpu()


def consistency_score(features: torch.Tensor) -> float:
    """VBench's per-video consistency: the mean of :func:`consistency_terms` (1.0 for one frame)."""
    terms = consistency_terms(features)
    return float(terms.mean()) if terms.numel() else 1.0


def pair_weighted_score(sums: list[float], pairs: list[int]) -> float:
    """VBench's dimension score over several videos: all terms summed over all pairs (NaN if none)."""
    total = sum(int(p) for p in pairs)
    return float(sum(float(s) for s in sums) / total) if total else float("nan")


# -- VBench preprocessing ---------------------------------------------------------------------------
def _vbench_pixels(frames: torch.Tensor, quantize: bool) -> torch.Tensor:
    x = frames.float() * 255.0
    return x.round().clamp(0.0, 255.0) if quantize else x


def dino_preprocess(frames: torch.Tensor, antialias: bool = False, quantize: bool = True) -> torch.Tensor:
    """VBench ``dino_transform(224)`` on frames in [0, 1]: shorter side to 224, no crop."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    x = TF.resize(_vbench_pixels(frames, quantize), VBENCH_SIZE,
                  interpolation=InterpolationMode.BILINEAR, antialias=antialias)
    return TF.normalize(x / 255.0, IMAGENET_MEAN, IMAGENET_STD)


def clip_preprocess(frames: torch.Tensor, antialias: bool = False, quantize: bool = True) -> torch.Tensor:
    """VBench ``clip_transform(224)`` on frames in [0, 1]: bicubic resize, 224 centre crop."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    x = TF.resize(_vbench_pixels(frames, quantize), VBENCH_SIZE,
                  interpolation=InterpolationMode.BICUBIC, antialias=antialias)
    x = TF.center_crop(x, [VBENCH_SIZE, VBENCH_SIZE])
    return TF.normalize(x / 255.0, CLIP_MEAN, CLIP_STD)


class ChunkedExtractor:
    """Features of frames in [0, 1], ``chunk`` frames at a time: VBench's preprocessing
    (:meth:`preprocess`), then the network (:meth:`embed`) on the model's device."""

    preprocess: Callable[..., torch.Tensor]

    def __init__(self, model: torch.nn.Module, chunk: int = 16, antialias: bool = False,
                 quantize: bool = True) -> None:
        self.model, self.chunk, self.antialias, self.quantize = model, chunk, antialias, quantize

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        key = (type(self), id(self.model), self.chunk, self.antialias, self.quantize)
        hit = _LAST_FEATURES.get(key)
        if hit is not None and hit[0]() is self.model and hit[2] == frames._version:
            cached = hit[1]()
            if cached is frames:
                return hit[3]
            if cached is not None and _is_prefix_view(frames, cached):
                return hit[3][: frames.shape[0]]  # features are per frame: a prefix's are a slice
        device = next(self.model.parameters()).device
        out = []
        for s in range(0, frames.shape[0], self.chunk):
            x = self.preprocess(frames[s : s + self.chunk].to(device), self.antialias, self.quantize)
            out.append(self.embed(x))
        feats = torch.cat(out)
        _LAST_FEATURES[key] = (weakref.ref(self.model), weakref.ref(frames), frames._version, feats)
        return feats


def _is_prefix_view(frames: torch.Tensor, whole: torch.Tensor) -> bool:
    """``frames`` is ``whole[:k]``: the same memory from the same start, laid out alike."""
    return (frames.device == whole.device and frames.dtype == whole.dtype and frames.data_ptr() == whole.data_ptr()
            and frames.shape[1:] == whole.shape[1:] and frames.shape[0] <= whole.shape[0]
            and frames.stride() == whole.stride())


# The last features each backbone computed, held against weak references to the network and the
# frames tensor (so no video is kept alive by it): two metrics on one backbone scoring the same
# tensor (subject_consistency and vbench_long_subject_consistency on a text-to-video sample), or a
# prefix view of it (the long-video task's 5 s prefix), run the network once. An in-place change of
# the frames bumps their version (shared by views) and misses.
_LAST_FEATURES: dict[tuple[Any, ...], tuple["weakref.ref[torch.nn.Module]", "weakref.ref[torch.Tensor]", int, torch.Tensor]] = {}


# -- DINO ------------------------------------------------------------------------------------------
def dino_pos_embed(pos_embed: torch.Tensor, height: int, width: int, patch: int) -> torch.Tensor:
    """DINO's ``interpolate_pos_encoding`` for an input of height x width pixels."""
    n = pos_embed.shape[1] - 1
    rows, cols = height // patch, width // patch
    if rows * cols == n and height == width:
        return pos_embed
    side = math.sqrt(n)
    grid = pos_embed[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
    # DINO adds 0.1 so that the output size floors to rows x cols; the scale factor (not the size)
    # drives the sampling positions, so it has to be passed the same way to match.
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side),
                         mode="bicubic")
    if grid.shape[-2:] != (rows, cols):
        raise RuntimeError(f"DINO position grid {tuple(grid.shape[-2:])} != {(rows, cols)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
    return torch.cat([pos_embed[:, :1], grid], dim=1)


def load_dino(
    device: torch.device | str = "cpu",
    random_weights: bool = False,
    weights_dir: str | None = None,
) -> torch.nn.Module:
    """timm ``vit_base_patch16_224.dino`` (no head) in eval mode, shared through the backbone
    cache; weights checked first."""
    folder = None if random_weights else resolve_weights(DINO, weights_dir)

    def build() -> torch.nn.Module:
        import timm

        model = timm.create_model("vit_base_patch16_224.dino", pretrained=False, num_classes=0)
        if folder is not None:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        return model

    return shared_backbone("dino-vitb16", None if folder is None else folder / "model.safetensors", device, build)


class DinoExtractor(ChunkedExtractor):
    """CLS feature of DINO ViT-B/16 on VBench's DINO preprocessing."""

    preprocess = staticmethod(dino_preprocess)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """CLS feature of already preprocessed images (what VBench's ``model(image)`` returns)."""
        m = self.model
        patch = m.patch_embed.proj.kernel_size[0]
        tokens = m.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = m.patch_embed.norm(tokens)
        tokens = torch.cat([m.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + dino_pos_embed(m.pos_embed, x.shape[-2], x.shape[-1], patch)
        tokens = m.norm_pre(m.patch_drop(m.pos_drop(tokens)))
        return m.norm(m.blocks(tokens))[:, 0]


# -- CLIP ------------------------------------------------------------------------------------------
def load_clip_visual(
    device: torch.device | str = "cpu",
    random_weights: bool = False,
    weights_dir: str | None = None,
) -> torch.nn.Module:
    """The image tower of open_clip ``ViT-B-32`` (QuickGELU) with the ``openai`` weights."""
    folder = None if random_weights else resolve_weights(CLIP, weights_dir)
    path = None if folder is None else folder / "open_clip_model.safetensors"

    def build() -> torch.nn.Module:
        import open_clip

        # A file path as `pretrained` makes open_clip read it itself (safetensors), no lookup.
        weights = None if path is None else str(path)
        return open_clip.create_model("ViT-B-32", pretrained=weights, force_quick_gelu=True).visual

    return shared_backbone("clip-vitb32-visual", path, device, build)


class ClipExtractor(ChunkedExtractor):
    """CLIP image embedding (``encode_image``, before normalisation) on VBench's CLIP preprocessing."""

    preprocess = staticmethod(clip_preprocess)


# -- the metrics -----------------------------------------------------------------------------------
class _Consistency(Metric):
    key: ClassVar[str] = ""
    artifact: ClassVar[HubArtifact]
    default_chunk: ClassVar[int] = 16

    def __init__(
        self,
        device: torch.device | str = "cpu",
        *,
        extractor: Extractor | None = None,
        chunk: int | None = None,
        antialias: bool = False,
        quantize: bool = True,
        random_weights: bool = False,
        weights_dir: str | None = None,
        **options: Any,
    ) -> None:
        chunk = chunk or self.default_chunk
        super().__init__(device, chunk=chunk, antialias=antialias, quantize=quantize,
                         random_weights=random_weights, weights_dir=weights_dir, **options)
        if extractor is not None:
            self.options["extractor"] = getattr(extractor, "__name__", type(extractor).__name__)
            self.extractor: Extractor = extractor
        else:
            self.extractor = self._build(random_weights, weights_dir, chunk, antialias, quantize)

    def _build(self, random_weights: bool, weights_dir: str | None, chunk: int, antialias: bool,
               quantize: bool) -> Extractor:
        raise NotImplementedError

    def compute(self, inputs: MetricInputs) -> MetricResult:
        gen, ctx = inputs.generated, inputs.context
        n_ctx = 0 if ctx is None else ctx.shape[0]
        whole = gen if n_ctx == 0 else torch.cat([ctx.to(gen.device, gen.dtype), gen])  # type: ignore[union-attr]
        feats = self.extractor(whole)
        whole_terms = consistency_terms(feats)
        res = MetricResult()
        for key, terms in ((self.key, whole_terms), (f"{self.key}_target", consistency_terms(feats[n_ctx:]))):
            res.values[key] = float(terms.mean()) if terms.numel() else 1.0
            # what VBench's pair-weighted aggregation over videos needs
            res.extra[f"{key}_sum"] = float(terms.sum())
            res.extra[f"{key}_pairs"] = int(terms.numel())
        if n_ctx:
            # term t of the whole video sits at index t-1; target frame i is t = n_ctx + i
            res.per_frame[self.key] = whole_terms[n_ctx - 1 :].tolist()
        return res


def _key_info(key: str) -> dict[str, dict[str, Any]]:
    # A perfect reproduction scores whatever the ground truth scores: no fixed best value.
    return {key: {"higher_is_better": True, "best": None},
            f"{key}_target": {"higher_is_better": True, "best": None}}


@register_metric("subject_consistency")
class SubjectConsistency(_Consistency):
    """VBench subject consistency (DINO ViT-B/16) of the whole generated video and of the target.

    Options: ``chunk`` (frames per forward, 16), ``antialias`` (False, as vbench 0.1.5),
    ``quantize`` (True), ``random_weights`` (random ViT, for tests), ``weights_dir`` (folder with model.safetensors),
    ``extractor`` (a callable replacing DINO; not recorded beyond its name).
    """

    description: ClassVar[str] = "VBench subject consistency (DINO) of the generated video"
    key: ClassVar[str] = "subject_consistency"
    key_info: ClassVar[dict[str, dict[str, Any]]] = _key_info("subject_consistency")
    weights: ClassVar[tuple[HubArtifact, ...]] = (DINO,)
    artifact: ClassVar[HubArtifact] = DINO

    def _build(self, random_weights: bool, weights_dir: str | None, chunk: int, antialias: bool,
               quantize: bool) -> Extractor:
        model = load_dino(self.device, random_weights, weights_dir)
        return DinoExtractor(model, chunk, antialias, quantize)


@register_metric("background_consistency")
class BackgroundConsistency(_Consistency):
    """VBench background consistency (CLIP ViT-B/32) of the whole generated video and of the target.

    Options as ``subject_consistency`` (``weights_dir`` holds open_clip_model.safetensors).
    """

    description: ClassVar[str] = "VBench background consistency (CLIP) of the generated video"
    key: ClassVar[str] = "background_consistency"
    key_info: ClassVar[dict[str, dict[str, Any]]] = _key_info("background_consistency")
    weights: ClassVar[tuple[HubArtifact, ...]] = (CLIP,)
    artifact: ClassVar[HubArtifact] = CLIP
    default_chunk: ClassVar[int] = 32

    def _build(self, random_weights: bool, weights_dir: str | None, chunk: int, antialias: bool,
               quantize: bool) -> Extractor:
        visual = load_clip_visual(self.device, random_weights, weights_dir)
        return ClipExtractor(visual, chunk, antialias, quantize)
