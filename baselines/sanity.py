"""Sanity methods: the floor and ceiling of every table, and probes of the metrics' validity.
No weights; they run anywhere.

* ``replay-context``: replays the context mirrored at the clip's turnaround (see
  :class:`ReplayContext`): what perfect memory of the path scores without generating anything.
* ``repeat-last`` / ``hold-first``: a frozen frame. They score well on the paper's best match
  (one good frame can be everyone's best match) and on VBench consistency (a still video is
  perfectly consistent), and poorly on frame-aligned and order-preserving scores.
* ``shuffle-context``: the replay in a random order: the paper's best match cannot tell it from
  the replay, the order-preserving best match can.
* ``oracle``: the ground truth.

``bounds`` says for which metric keys (fnmatch patterns) a sanity method is a floor or a
ceiling; a report labels it so only there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Literal

import torch
import torch.nn.functional as F

from magbench.method import Method, MethodNeeds, SampleInfo
from magbench.options import MethodOptions, option
from magbench.registry import register_method

BLOCK = 12  # frames per yielded block, like the Wan-based methods (3 latent frames)
MIRRORS = ("auto", "annotation", "frames", "switch")
# Frame-aligned and order-preserving scores: a frozen or shuffled video cannot flatter them.
HONEST_KEYS = ("psnr", "ssim", "lpips", "bestmatch_ordered_*")


@dataclass(frozen=True)
class BlockOptions(MethodOptions):
    """Options of every sanity method: how many frames each yielded block holds."""

    block: int = option(BLOCK, ge=1, help="frames per yielded block")


@dataclass(frozen=True)
class ReplayOptions(BlockOptions):
    """Options of the context replays (see :class:`ReplayContext`)."""

    mirror: Literal["auto", "annotation", "frames", "switch"] = option(
        "auto", help="where the turnaround comes from: auto (annotation, else frames, else switch) or one of them")
    # mirror_axis returns a ratio in [0, 1]: 0 a perfect mirror, 1 no mirror at all.
    detect_ratio: float = option(0.25, ge=0.0, le=1.0, help="largest mirror ratio accepted as a turnaround found in the frames")


class _ContextMethod(Method):
    """Keeps the context frames it was shown (on its device)."""

    needs = MethodNeeds(gpu=False)
    Options = BlockOptions

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._frames: list[torch.Tensor] = []

    def memorize(self, frames: torch.Tensor) -> None:
        self._frames.append(frames.to(self.device, self.dtype))

    def memory_bytes(self) -> int:
        return sum(f.numel() * f.element_size() for f in self._frames)

    def remember_ground_truth(self, frames: torch.Tensor) -> None:
        """Both memory sources are the same here: the memory is the context, never the output."""

    def _context(self) -> torch.Tensor:
        if not self._frames:
            raise RuntimeError(f"{self.name}: generate() called before memorize()")
        return torch.cat(self._frames) if len(self._frames) > 1 else self._frames[0]


def _blocks(frames_at: "callable", num_frames: int, block: int) -> Iterator[torch.Tensor]:
    for start in range(0, num_frames, block):
        yield frames_at(start, min(block, num_frames - start))


def mirror_axis(features: torch.Tensor, min_pairs: int | None = None, shift: int = 4) -> tuple[int, float]:
    """The axis ``a`` about which a sequence best mirrors itself: frame ``a - t`` looks like frame
    ``t`` (a palindromic clip of T frames has ``a = T - 1``; the turnaround frame is ``a / 2``).

    ``features`` is N x D (one row per frame); d(t, u) is the mean squared difference of rows t
    and u. For each axis with at least ``min_pairs`` (default N // 8, at least 2) pairs
    ``(t, u = a - t)``, t < u, inside the sequence, each pair compares the self-similarity of the
    sequence against its reverse, d(t, u), with the partner moved ``shift`` frames either way:
    ``min(1, d(t, u) / min(d(t, u + shift), d(t, u - shift)))`` (of the moved partners inside the
    sequence; 1 where they match too, or none is inside). The axis scores the mean over its pairs. A real
    turnaround, where the mirrored frame matches and its moved neighbours do not, scores near 0;
    a stretch that does not move, which mirrors itself about any axis, scores 1. Returns (the axis
    of the lowest score, that score; ties: the smaller axis).
    """
    x = features.detach().flatten(1).double().cpu()
    n = x.shape[0]
    min_pairs = max(2, n // 8) if min_pairs is None else min_pairs
    sq = x.square().sum(1)
    dist = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0) / max(1, x.shape[1])
    ratios: dict[int, float] = {}
    for a in range(1, 2 * n - 2):
        t = torch.arange(max(0, a - (n - 1)), (a - 1) // 2 + 1)  # pairs t < a - t, both in range
        if t.numel() < min_pairs:
            continue
        u = a - t
        inf = torch.full_like(dist[t, u], float("inf"))
        above = torch.where(u + shift < n, dist[t, (u + shift).clamp(max=n - 1)], inf)
        below = torch.where(u - shift >= 0, dist[t, (u - shift).clamp(min=0)], inf)
        ref = torch.minimum(above, below)
        informative = (ref > 1e-12) & torch.isfinite(ref)
        per_pair = torch.where(informative, dist[t, u] / ref.clamp_min(1e-12), torch.ones_like(ref))
        ratios[a] = float(per_pair.clamp(max=1.0).mean())
    if not ratios:
        raise ValueError(f"{n} frames are too few to find a mirror axis with {min_pairs} pairs")
    best = min(ratios, key=lambda a: (ratios[a], a))
    return best, ratios[best]


def _thumbnails(frames: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Small copies for comparing frames: cheap at any resolution, and blind to codec noise."""
    return F.adaptive_avg_pool2d(frames.float(), (size, size)).flatten(1)


@register_method("repeat-last")
class RepeatLast(_ContextMethod):
    """Holds the last context frame: the floor of a method that forgets nothing but sees nothing."""

    description = "Holds the last context frame (floor; probes best-match validity)."
    kind = "floor"
    bounds: ClassVar[dict[str, str]] = {k: "floor" for k in HONEST_KEYS}

    def memorize(self, frames: torch.Tensor) -> None:
        # Only the last frame is ever used: hold just that, so memory_bytes is honest.
        self._frames = [frames[-1:].to(self.device, self.dtype)]

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        last = self._context()[-1:]
        block = int(self.options.get("block", BLOCK))
        return _blocks(lambda s, n: last.expand(n, -1, -1, -1).clone(), num_frames, block)


@register_method("hold-first")
class HoldFirst(_ContextMethod):
    """Holds the first context frame: a frozen video that the paper's best match can flatter."""

    description = "Holds the first context frame (floor; probes best-match validity)."
    kind = "floor"
    bounds: ClassVar[dict[str, str]] = {k: "floor" for k in HONEST_KEYS}

    def memorize(self, frames: torch.Tensor) -> None:
        if not self._frames:
            self._frames = [frames[:1].to(self.device, self.dtype)]

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        first = self._context()[:1]
        block = int(self.options.get("block", BLOCK))
        return _blocks(lambda s, n: first.expand(n, -1, -1, -1).clone(), num_frames, block)


@register_method("replay-context")
class ReplayContext(_ContextMethod):
    """Replays the context mirrored at the clip's turnaround: target frame t (counted from the
    video's first frame) is context frame ``a - t``, held at the first frame once it is reached.

    The axis ``a`` (twice the turnaround frame) comes from, in this order (option
    ``mirror=auto``): the dataset's annotation (``turnaround_frame``, else the symmetry of the
    ``poses``), the frames themselves (:func:`mirror_axis` on the context: a palindromic clip,
    as MAG-Bench's clip-plus-reverse videos are, mirrors itself about its middle; accepted when
    the ratio :func:`mirror_axis` returns is at most ``detect_ratio``), and else the switch (the
    camera turning on the last context frame, so the first target frame shows the one before). ``mirror=annotation|
    frames|switch`` forces one. Which one was used and where it mirrored is in the record's
    ``method_extras``.
    """

    description = "Replays the context mirrored at the clip's turnaround (floor with perfect memory of the path)."
    kind = "floor"
    needs = MethodNeeds(gpu=False, annotations=True)
    # Where the dataset has correspondences it has the turnaround too: the replay then shows
    # exactly the corresponding context frames, which the lossy stored ground truth cannot.
    bounds: ClassVar[dict[str, str]] = {**{k: "floor" for k in (*HONEST_KEYS, "bestmatch_*")}, "corr_*": "ceiling"}
    Options = ReplayOptions  # a mirror outside MIRRORS is refused when the options are built

    def _opt(self, key: str) -> Any:
        return self.options[key]

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._extras: dict[str, Any] = {}

    def _axis(self, ctx: torch.Tensor) -> tuple[int, dict[str, Any]]:
        mode = self._opt("mirror")
        ann = (self.sample.annotations if self.sample else None) or {}
        if mode in ("auto", "annotation"):
            if ann.get("turnaround_frame") is not None:
                return 2 * int(ann["turnaround_frame"]), {"mirror_source": "annotation:turnaround_frame"}
            poses = ann.get("poses")
            if poses is not None and len(poses) >= ctx.shape[0]:
                axis, ratio = mirror_axis(torch.as_tensor(poses[: ctx.shape[0]], dtype=torch.float64))
                if ratio < 1e-9:  # poses are exact: a turnaround mirrors them exactly
                    return axis, {"mirror_source": "annotation:poses"}
            if mode == "annotation":
                raise RuntimeError(f"{self.name}: mirror=annotation but the sample has no turnaround annotation")
        if mode in ("auto", "frames") and ctx.shape[0] >= 4:
            axis, ratio = mirror_axis(_thumbnails(ctx))
            note = {"mirror_ratio": ratio}
            if mode == "frames" or ratio <= float(self._opt("detect_ratio")):
                return axis, {"mirror_source": "frames", **note}
            return self._switch_axis(ctx), {"mirror_source": "switch", **note}
        return self._switch_axis(ctx), {"mirror_source": "switch"}

    @staticmethod
    def _switch_axis(ctx: torch.Tensor) -> int:
        # The camera turns on the last context frame: the first target frame shows the one before.
        return 2 * (ctx.shape[0] - 1)

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        ctx = self._context()
        n_ctx = ctx.shape[0]
        axis, note = self._axis(ctx)
        self._extras = {**note, "turnaround_frame": axis / 2}
        idx = self._order(torch.clamp(axis - n_ctx - torch.arange(num_frames), 0, n_ctx - 1)).to(ctx.device)
        block = int(self._opt("block"))
        return _blocks(lambda s, n: ctx.index_select(0, idx[s : s + n]), num_frames, block)

    def _order(self, idx: torch.Tensor) -> torch.Tensor:
        return idx

    def sample_extras(self) -> dict[str, Any]:
        return dict(self._extras)


@register_method("shuffle-context")
class ShuffleContext(ReplayContext):
    """The replay's frames in a random order (seeded by the sample): every frame is right, their
    order is not. The paper's best match scores it like the replay."""

    description = "The context replay in a random order (floor; probes best-match validity)."
    bounds: ClassVar[dict[str, str]] = {k: "floor" for k in HONEST_KEYS}

    def _order(self, idx: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.sample.seed if self.sample else 0)
        return idx[torch.randperm(idx.numel(), generator=g)]


@register_method("oracle")
class Oracle(Method):
    """Returns the ground truth: every metric must report its best value."""

    description = "Returns the ground truth (ceiling; checks the metrics)."
    needs = MethodNeeds(gpu=False, ground_truth=True)
    kind = "ceiling"
    # Not of corr_* (the stored ground truth is lossy; a context replay beats it), of the
    # consistency scores (a still video beats it) nor of coverage (repeated target frames).
    bounds: ClassVar[dict[str, str]] = {k: "ceiling" for k in ("psnr", "ssim", "lpips", "bestmatch_lpips",
                                                                "bestmatch_psnr", "bestmatch_ssim", "bestmatch_ordered_*")}

    Options = BlockOptions

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._target: torch.Tensor | None = None

    def memorize(self, frames: torch.Tensor) -> None:
        pass

    def reveal(self, target: torch.Tensor) -> None:
        self._target = target.to(self.device, self.dtype)

    def remember_ground_truth(self, frames: torch.Tensor) -> None:
        """Nothing to remember: the oracle already holds the whole target."""

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        if self._target is None or self._target.shape[0] < num_frames:
            raise RuntimeError("oracle: the harness did not reveal the target frames")
        block = int(self.options.get("block", BLOCK))
        return _blocks(lambda s, n: self._target[s : s + n], num_frames, block)

    def memory_bytes(self) -> int:
        return 0 if self._target is None else self._target.numel() * self._target.element_size()


# -- the memory tasks' ceiling and floor (tasks memory-recall, memory-reconstruction) -------------
# Unlike the probes above, vae-roundtrip reads weights: the Wan VAE, as the Wan methods load it.

from dataclasses import dataclass  # noqa: E402
from typing import Literal, Optional  # noqa: E402

from magbench.baselines.wan.checkpoint import WAN_DIFFUSERS  # noqa: E402  (a declaration; no weights read)
from magbench.errors import MagbenchError  # noqa: E402
from magbench.method import RecalledBlock  # noqa: E402
from magbench.options import MethodOptions, option  # noqa: E402

# What the memory tasks score per recalled block (magbench/tasks/recall.py, reconstruction.py).
RECALL_KEYS = ("recall_psnr", "recall_ssim", "recall_lpips", "recall_latent_mse")


def _recall_blocks(frames_per_block, num_frames: int) -> Iterator[RecalledBlock]:
    """``frames_per_block(index, start, n)`` for every latent block of a ``12a - 3``-frame clip
    (the Wan VAE's layout: 9 frames, then 12 per block)."""
    from magbench.baselines.wan.reconstruction import block_spans, whole_blocks_or_fail

    blocks = whole_blocks_or_fail("memory tasks", num_frames)
    for b, (start, n) in enumerate(block_spans(3 * blocks)):
        yield frames_per_block(b, start, n)


@dataclass(frozen=True)
class VaeRoundtripOptions(MethodOptions):
    config: Literal["t2v-1.3b", "tiny"] = option("t2v-1.3b", help="Wan VAE size: the real one, or a tiny random one (tests)")
    random_weights: bool = option(False, help="a random VAE (no download), seeded as the Wan methods' (weights_seed + 100)")
    resolution: Optional[tuple[int, int]] = option(None, help="HxW; default 480x832, 32x48 for the tiny config")
    vae_path: Optional[str] = option(None, path=True, help="a local Wan2.1-T2V-1.3B-Diffusers folder (its vae/)")
    weights_seed: int = option(0, help="seed of the random VAE, as the Wan methods' option")


@register_method("vae-roundtrip")
class VaeRoundtrip(Method):
    """The Wan VAE alone: memorise = encode, recall = decode. What the Wan methods' latent space
    loses before any memory policy does: the ceiling of ``memory-recall`` and
    ``memory-reconstruction`` (its latents are the reference latents: latent MSE 0). Its memory is
    the latents themselves (``memory_bytes``: their bytes, in the run's dtype).

    The VAE is loaded as the Wan methods load theirs (same options: ``config``, ``random_weights``
    with the same seed, ``vae_path``), so a random-weight run shares the Wan methods' random VAE.
    It generates nothing (no ``replay`` capability: the replay task refuses it)."""

    description = "Wan VAE encode + decode only (ceiling of memory-recall / memory-reconstruction)."
    kind = "ceiling"
    needs = MethodNeeds(gpu=True, weights=(WAN_DIFFUSERS,))
    Options = VaeRoundtripOptions
    bounds: ClassVar[dict[str, str]] = {k: "ceiling" for k in RECALL_KEYS}
    resolution: ClassVar[tuple[int, int] | None] = (480, 832)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        res = self.opts.resolution or ((32, 48) if self.opts.config == "tiny" else None)
        if res is not None:
            h, w = res
            if h % 16 or w % 16:
                raise MagbenchError(f"vae-roundtrip: resolution {h}x{w} must be multiples of 16, as the Wan methods'")
            self.resolution = (h, w)

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        return super().capabilities() - {"replay"}

    def weights_needed(self) -> list:
        return [] if (self.opts.random_weights or self.opts.vae_path) else list(self.needs.weights)

    def load(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().load(device, dtype)
        from pathlib import Path

        from magbench.baselines.wan.vae import WanVAE, tiny_vae_config, wan_vae_config

        vae_dtype = dtype if torch.device(device).type == "cuda" else torch.float32  # as _WanMethod.load
        if self.opts.random_weights:
            cfg = tiny_vae_config() if self.opts.config == "tiny" else wan_vae_config()
            self.vae = WanVAE.random(cfg, device, vae_dtype, seed=int(self.opts.weights_seed) + 100)
        else:
            root = Path(self.opts.vae_path).expanduser() if self.opts.vae_path else WAN_DIFFUSERS.require()
            self.vae = WanVAE.from_pretrained(root / "vae", device, vae_dtype)

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._enc = self.vae.encoder_stream()
        self._latents: list[torch.Tensor] = []
        self._frames_in = 0

    def memorize(self, frames: torch.Tensor) -> None:
        lat = self._enc.push(frames)
        self._frames_in += frames.shape[0]
        if lat is not None:
            self._latents.append(lat.to(self.device, self.dtype))

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        raise MagbenchError("vae-roundtrip generates nothing: it is the ceiling of --task memory-recall and memory-reconstruction")

    def _decoded(self, latents: torch.Tensor, num_frames: int) -> Iterator[RecalledBlock]:
        dec = self.vae.decoder_stream()

        def block(b: int, start: int, n: int) -> RecalledBlock:
            lat = latents[:, 3 * b : 3 * b + 3]
            pixels = dec.push(lat)
            return RecalledBlock(index=b, start=start, frames=pixels.float(), latents=lat, reference_latents=lat)

        return _recall_blocks(block, num_frames)

    def recall(self) -> Iterator[RecalledBlock]:
        if not self._latents:
            raise MagbenchError("vae-roundtrip: recall() needs memorize() first")
        return self._decoded(torch.cat(self._latents, dim=1), self._frames_in)

    def reconstruct(self, frames: torch.Tensor) -> Iterator[RecalledBlock]:
        return self._decoded(self.vae.encode(frames).to(self.device, self.dtype), frames.shape[0])

    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in getattr(self, "_latents", []))


@register_method("mean-frame")
class MeanFrame(Method):
    """Remembers one frame, the context's mean: every recalled block is that frame held. The
    floor of ``memory-recall`` and ``memory-reconstruction`` (the best a memory of one constant
    frame can do in mean squared error, which PSNR measures); in the replay task a frozen frame."""

    description = "The context's mean frame, held (floor of memory-recall / memory-reconstruction)."
    kind = "floor"
    needs = MethodNeeds(gpu=False)
    bounds: ClassVar[dict[str, str]] = {k: "floor" for k in (*RECALL_KEYS[:3], *HONEST_KEYS)}
    defaults = {"block": BLOCK}

    def reset(self, sample: SampleInfo) -> None:
        super().reset(sample)
        self._sum: torch.Tensor | None = None
        self._count = 0

    def memorize(self, frames: torch.Tensor) -> None:
        s = frames.to(self.device, torch.float32).sum(0, keepdim=True)
        self._sum = s if self._sum is None else self._sum + s
        self._count += frames.shape[0]

    def _mean(self) -> torch.Tensor:
        if self._sum is None:
            raise MagbenchError("mean-frame: memorize() first")
        return self._sum / self._count

    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        mean = self._mean()
        return _blocks(lambda s, n: mean.expand(n, -1, -1, -1).clone(), num_frames, int(self.options["block"]))

    def recall(self) -> Iterator[RecalledBlock]:
        mean = self._mean()
        return _recall_blocks(lambda b, s, n: RecalledBlock(b, s, mean.expand(n, -1, -1, -1).clone()), self._count)

    def reconstruct(self, frames: torch.Tensor) -> Iterator[RecalledBlock]:
        mean = frames.to(self.device, torch.float32).mean(0, keepdim=True)
        return _recall_blocks(lambda b, s, n: RecalledBlock(b, s, mean.expand(n, -1, -1, -1).clone()), frames.shape[0])

    def memory_bytes(self) -> int:
        return 0 if self._sum is None else self._sum.numel() * self._sum.element_size()
