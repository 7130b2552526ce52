"""What a Wan method generates with, built exactly as the method builds it.

Each method owns its build (:meth:`~magbench.baselines.wan.methods._WanMethod.build_parts`: its
models, memory policy and sampler, from its typed options); these functions are the entry point
for scripts that time or check the transformer (``benchmarks/``) and call that same build, so a
benchmark runs the same model, kernels, memory policy and sampler as ``magbench run`` with the
same options, defaults included::

    from magbench.baselines.wan.build import build_transformer

    wan = build_transformer("mag", "cuda", torch.bfloat16, random_weights=True)
    wan.warmup((16, 60, 104))                     # JIT compilation, before anything is timed
    wan.sampler.reset(prompt_embeds, empty_embeds=empty, seed=0, latent_shape=(16, 60, 104))
    block = wan.sampler.next_block()

Options are the method's (``--opt`` of ``magbench run``; unknown ones are refused with the known
ones listed). The VAE and the text encoder are not built here: they need the ``wan`` extra, the
transformer needs only torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from magbench.errors import MagbenchError
from magbench.method import Method

if TYPE_CHECKING:  # pragma: no cover
    from magbench.baselines.wan.memory import KVMemory
    from magbench.baselines.wan.methods import _WanMethod
    from magbench.baselines.wan.model import CausalWan
    from magbench.baselines.wan.sampler import BlockSampler


def wan_method(name: str, **options: Any) -> "_WanMethod":
    """The registered Wan method ``name`` ("mag", "self-forcing", "full-history", ...) with
    ``options`` over its defaults (not loaded)."""
    from magbench.baselines.wan.methods import _WanMethod
    from magbench.registry import METHODS

    cls = METHODS.get(name)
    if not (isinstance(cls, type) and issubclass(cls, _WanMethod)):
        raise MagbenchError(f"{name!r} is not a Wan method; Wan methods: {', '.join(wan_method_names())}")
    return cls(**options)


def wan_method_names() -> list[str]:
    from magbench.baselines.wan.methods import _WanMethod
    from magbench.registry import METHODS

    return [n for n in METHODS.names() if isinstance(c := METHODS.get(n), type) and issubclass(c, _WanMethod)]


def build_memory(method: "str | _WanMethod", **options: Any) -> "KVMemory":
    """The KV memory policy of a Wan method, sized for its transformer, with its defaults."""
    m = wan_method(method, **options) if isinstance(method, str) else method
    return m.make_memory(m.model_config().num_layers)


@dataclass
class WanTransformer:
    """A Wan method's generation parts: generator, optional memory model (MAG), memory, sampler."""

    method: "_WanMethod"
    generator: "CausalWan"
    memory_model: "CausalWan | None"
    memory: "KVMemory"
    sampler: "BlockSampler"

    def models(self) -> list["CausalWan"]:
        return [m for m in (self.generator, self.memory_model) if m is not None]

    def warmup(self, latent_shape: tuple[int, int, int]) -> None:
        """Just-in-time compilation of every model's kernels at the real shapes (see
        :meth:`CausalWan.warmup`), so that none happens in a timed block."""
        for model in self.models():
            model.warmup(latent_shape)
        if self.generator.patch_embedding.weight.is_cuda:
            torch.cuda.synchronize(self.generator.patch_embedding.weight.device)


def build_transformer(
    method: "str | _WanMethod", device: torch.device | str | None = None, dtype: torch.dtype | None = None,
    models: "tuple[CausalWan, CausalWan | None] | None" = None, **options: Any,
) -> WanTransformer:
    """Build the generator (and MAG's memory model) with the method's weights, kernels and
    ``fuse_qkv``, its memory policy and its sampler: the method's own
    :meth:`~magbench.baselines.wan.methods._WanMethod.build_parts`, without a VAE (CausVid's
    rollouts then carry their latents without re-encoding the anchor). ``method``: a name (then
    ``options`` are its options) or a method instance; ``device``/``dtype``: where to put it
    (default: the instance's, as its ``load`` set them). ``models``: (generator, memory model)
    already built with the same weight options, reused instead of loaded again (benchmarks
    comparing policies on one GPU); the method's kernel options are applied to them."""
    if isinstance(method, str):
        method = wan_method(method, **options)
    elif options:
        raise TypeError("options go with a method name; an instance already holds its options")
    if device is not None or dtype is not None:
        Method.load(method, device if device is not None else method.device, dtype if dtype is not None else method.dtype)
    return method.build_parts(models)
