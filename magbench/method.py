"""The method contract: what a video generator implements to be benchmarked.

A method is streaming. For each sample the harness calls::

    method.reset(sample)              # prompt, seed, resolution, fps
    method.memorize(context)          # T x 3 x H x W float in [0, 1]: the frames it has seen
    for block in method.generate(n):  # yields k x 3 x H x W blocks as they are produced
        ...                           # the harness times each block
    method.memory_bytes()             # bytes its memory (KV cache, ...) holds now, on the device
    method.host_memory_bytes()        # and in host RAM (0 unless memory is offloaded)

A complete method in 20 lines::

    from magbench.method import Method, MethodNeeds
    from magbench.registry import register_method

    @register_method("my-hold-first")
    class HoldFirst(Method):
        description = "Shows the first context frame forever."
        needs = MethodNeeds(gpu=False)

        def reset(self, sample):
            super().reset(sample)
            self._first = None

        def memorize(self, frames):
            if self._first is None:
                self._first = frames[:1].to(self.device)

        def generate(self, num_frames):
            for start in range(0, num_frames, 4):
                yield self._first.expand(min(4, num_frames - start), -1, -1, -1)

        def memory_bytes(self):
            return 0 if self._first is None else self._first.numel() * self._first.element_size()
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Iterator

import torch

from magbench.hub import HubArtifact
from magbench.options import MethodOptions, options_from_defaults


@dataclass(frozen=True)
class MethodNeeds:
    """What a method needs before it can load: checked by the CLI without loading anything.

    ``ground_truth``: the method reads the target frames (the oracle); the harness hands them over
    through :meth:`Method.reveal` and reports mark such a method as a ceiling, never a contender.
    ``annotations``: the method reads the dataset's per-video annotations (poses, turnaround;
    :attr:`SampleInfo.annotations`), which describe the target's camera path: sanity methods only.
    """

    gpu: bool = False
    weights: tuple[HubArtifact, ...] = ()
    ground_truth: bool = False
    annotations: bool = False

    def missing_weights(self) -> list[HubArtifact]:
        return [w for w in self.weights if not w.is_present()]


@dataclass(frozen=True)
class SampleInfo:
    """What a method is told about the sample it is about to continue."""

    sample_id: str
    prompt: str
    seed: int
    height: int
    width: int
    fps: float
    num_context: int
    num_target: int
    memory_source: str = "generated"  # see Method.remember_ground_truth
    # The dataset's annotations of this video (frame indices count from its first frame), given
    # only to methods whose ``needs.annotations`` is set; None otherwise or when there are none.
    annotations: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RecalledBlock:
    """One memorised block as a method gives it back (:meth:`Method.recall`,
    :meth:`Method.reconstruct`).

    ``index``: the block's place in the memorised clip (0 = oldest); ``start``: its first pixel
    frame in the clip; ``frames``: k x 3 x H x W in [0, 1], the method's rendering of
    ``clip[start:start + k]``; ``latents`` / ``reference_latents``: for latent-space methods, the
    regenerated latents and the clean latents the memory was written from (same shape), for the
    latent MSE; None where the method has no latent space.
    """

    index: int
    start: int
    frames: torch.Tensor
    latents: torch.Tensor | None = None
    reference_latents: torch.Tensor | None = None


class Method(ABC):
    """Base class of every benchmarked method. Subclass, register, done.

    Class attributes describe the method: ``name`` (set by the registry when the class is
    registered or looked up), a one-line ``description``, ``needs``, ``resolution`` ((H, W) it
    generates at, or None to take the dataset's frames as they are), ``kind`` ("method", "floor"
    or "ceiling" for sanity methods), ``bounds`` (the metric keys of which a sanity method is the
    floor or ceiling) and ``defaults``: every option with its default value.

    Options are keyword arguments of ``__init__``, declared by ``Options`` (a typed
    :class:`~magbench.options.MethodOptions`; see there): unknown keys, wrong types, values out of
    range are refused in one line; the typed instance is ``self.opts``, its JSON view
    ``self.options`` (checked across options by :meth:`validate_options`). The
    resolved options (defaults included) and what the method derives from them before loading
    (:meth:`derived`: its memory policy, say) are the method's part of the run's identity, so a
    changed default is a different run. Keep them JSON-serialisable.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[MethodNeeds] = MethodNeeds()
    resolution: ClassVar[tuple[int, int] | None] = None
    kind: ClassVar[str] = "method"
    # The typed option declaration (magbench/options.py). A class that declares only a plain
    # ``defaults`` dict gets one typed from the default values.
    Options: ClassVar[type[MethodOptions] | None] = None
    defaults: ClassVar[dict[str, Any]] = {}
    # For sanity methods: metric keys (fnmatch patterns) of which it is the "floor" or "ceiling";
    # reports label it so only there.
    bounds: ClassVar[dict[str, str]] = {}
    # True when :meth:`generate` works with no :meth:`memorize` call: text-to-video from the
    # prompt alone (task ``long-video``).
    text_to_video: ClassVar[bool] = False
    # False where the method's calls are not the generator's work (``videos:DIR`` reads videos
    # made elsewhere): the harness then records ``timing.measured: false`` and no speed.
    measures_time: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("Options") is not None:
            cls.defaults = cls.Options.defaults()

    @classmethod
    def options_class(cls) -> type[MethodOptions]:
        """This class's option declaration: its own ``Options``, else one typed from its own
        ``defaults`` dict, else its parent's."""
        own = cls.__dict__
        if own.get("Options") is not None:
            return own["Options"]
        if "defaults" in own or cls is Method:
            # Made afresh each time (cheap): a default changed in code is a changed declaration.
            return options_from_defaults(cls.name or cls.__name__, dict(cls.defaults))
        for base in cls.__mro__[1:]:
            if isinstance(base, type) and issubclass(base, Method):
                return base.options_class()
        raise AssertionError("unreachable")

    def __init__(self, **options: Any) -> None:
        cls = type(self)
        # Types, choices and ranges checked here, before any work (an OptionError names the option).
        self.opts: Any = cls.options_class().build(options, owner=f"method {cls.name or cls.__name__!r}")
        self.options: dict[str, Any] = self.validate_options(self.opts.to_dict())
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.sample: SampleInfo | None = None

    def validate_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Cross-option checks (and normalisation) after each option was typed and range-checked
        by :attr:`Options`; raise MagbenchError naming a bad combination."""
        return options

    def derived(self) -> dict[str, Any]:
        """What the method derives from its options before :meth:`load` and that determines its
        outputs (e.g. ``{"memory": {"policy": "compressed", "slots": 21, ...}}``). Part of
        :meth:`config`; it must not need the weights."""
        return {}

    # -- lifecycle -------------------------------------------------------------------------------
    def load(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        """Load weights onto ``device`` in ``dtype``. Called once per run, before any sample."""
        self.device = torch.device(device)
        self.dtype = dtype

    def reset(self, sample: SampleInfo) -> None:
        """Forget everything about the previous sample and prepare for ``sample``."""
        self.sample = sample

    @abstractmethod
    def memorize(self, frames: torch.Tensor) -> None:
        """Take in context frames, T x 3 x H x W, float in [0, 1]. May be called more than once."""

    @abstractmethod
    def generate(self, num_frames: int) -> Iterator[torch.Tensor]:
        """Yield blocks of frames (k x 3 x H x W, [0, 1]) until ``num_frames`` are produced.

        Yield each block as soon as it exists: the harness measures time per block.
        """

    def memory_bytes(self) -> int:
        """Bytes held by the method's memory of the video so far (its KV cache, say)."""
        return 0

    def host_memory_bytes(self) -> int:
        """Bytes of that memory held in host (CPU) RAM rather than on the device (a cache
        offloaded or kept for retrieval, as LongLive-RAG's evicted frames): read once at the end
        of each sample and recorded as ``memory.host_bytes_end`` beside ``kv_bytes_end``."""
        return 0

    def weights_needed(self) -> list[HubArtifact]:
        """The declared downloads this instance will read: none with ``random_weights``; a method
        whose options point at local copies (``checkpoint_path=``, say) leaves those out."""
        return [] if self.options.get("random_weights") else list(self.needs.weights)

    def missing_weights(self) -> list[HubArtifact]:
        """The weights :meth:`weights_needed` that are not on this machine (checked before any work)."""
        return [w for w in self.weights_needed() if not w.is_present()]

    def remember_ground_truth(self, frames: torch.Tensor) -> None:
        """Optional: the ``--memory-source ground-truth`` setting (the paper's "GT context").

        When the sample's ``memory_source`` is "ground-truth", after each block that
        :meth:`generate` yields and before the generator is resumed, the harness calls this with
        the ground-truth frames of exactly that span (k x 3 x H x W, [0, 1], on the method's
        device). Write the memory from them instead of from the block just generated. A method
        that does not override this does not support the setting; such a run is refused.
        """
        raise NotImplementedError

    @classmethod
    def supports_memory_source(cls, source: str) -> bool:
        if source == "generated":
            return True
        return source == "ground-truth" and cls.remember_ground_truth is not Method.remember_ground_truth

    def warmup(self, sample: SampleInfo) -> None:
        """Optional: make the method ready for timed work (compile, autotune, grow the allocator).

        Each process calls it once, untimed, before its first sample, with that sample's info.
        A method that does not override it is warmed up by the harness instead: the first sample
        with a short target (one block), untimed and never scored.
        """
        raise NotImplementedError

    @classmethod
    def has_warmup(cls) -> bool:
        return cls.warmup is not Method.warmup

    # -- optional capabilities for the memory tasks (magbench/tasks/) --------------------------
    def recall(self) -> Iterator["RecalledBlock"]:
        """Optional (task ``memory-recall``): after :meth:`memorize` took the whole context, give
        back each memorised block regenerated from noise using only the memory as it now stands
        (nothing is re-read from the context): one :class:`RecalledBlock` per memorised block,
        oldest first, each at its original position in the clip. A window method cannot give
        back what it evicted (yield its best attempt: that is what the task measures); full
        history can. Timed as one call; :meth:`memory_bytes` is read after it.
        """
        raise NotImplementedError

    def reconstruct(self, frames: torch.Tensor) -> Iterator["RecalledBlock"]:
        """Optional (task ``memory-reconstruction``): the memory model's own test, after
        :meth:`reset`: compress the clip ``frames`` (T x 3 x H x W, [0, 1]) into memory and
        reconstruct each block from noise attending only to the compressed memory of the blocks
        up to its own (MAG's ``inference_compress.py``). One :class:`RecalledBlock` per block.
        """
        raise NotImplementedError

    @classmethod
    def capabilities(cls) -> frozenset[str]:
        """What this method can do beyond memorize/generate, read from what it overrides:
        ``ground-truth-memory`` (:meth:`remember_ground_truth`), ``recall``, ``reconstruct``,
        ``text-to-video`` (:attr:`text_to_video`: generates without any context). Tasks name
        the capabilities they need; a method lacking one is refused before any work."""
        caps = {"replay"}
        if cls.remember_ground_truth is not Method.remember_ground_truth:
            caps.add("ground-truth-memory")
        if cls.recall is not Method.recall:
            caps.add("recall")
        if cls.reconstruct is not Method.reconstruct:
            caps.add("reconstruct")
        if cls.text_to_video:
            caps.add("text-to-video")
        return frozenset(caps)

    def reveal(self, target: torch.Tensor) -> None:
        """Only for methods whose ``needs.ground_truth`` is set: the frames to reproduce."""
        raise NotImplementedError

    def timings(self) -> dict[str, float]:
        """Optional extra timings for the last ``generate`` (seconds), e.g. {"decode_s": 1.2}."""
        return {}

    def sample_extras(self) -> dict[str, Any]:
        """Optional facts about the last sample worth keeping in its record (JSON values), e.g.
        where a replay mirrored the context; stored under the record's ``method_extras``."""
        return {}

    def config(self) -> dict[str, Any]:
        """Everything that identifies this method's outputs (recorded; a change means a new run):
        its name, its resolved options (defaults included) and what it derives from them."""
        return {"name": self.name, "options": dict(sorted(self.options.items())), **self.derived()}

    def close(self) -> None:
        """Free device memory; the harness calls it at the end of a run."""


@dataclass
class MethodInfo:
    """A row of `magbench methods`."""

    name: str
    description: str
    gpu: bool
    weights_present: bool | None  # None: needs no weights
    builtin: bool
    kind: str
    extra: dict[str, Any] = field(default_factory=dict)


def describe(name: str, cls: type[Method], builtin: bool) -> MethodInfo:
    weights = cls.needs.weights
    present = None if not weights else all(w.is_present() for w in weights)
    return MethodInfo(
        name=name,
        description=(cls.description or (cls.__doc__ or "").strip().split("\n")[0]),
        gpu=cls.needs.gpu,
        weights_present=present,
        builtin=builtin,
        kind=cls.kind,
    )
