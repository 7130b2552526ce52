"""Importing a reference repository's own model, cache and pipeline code from a local checkout,
without the parts a tiny CPU run does not use.

* Package ``__init__`` files that pull in the whole stack (T5, tokenizer, VAE, training code)
  are replaced by bare namespace modules, so only the modules named are executed;
* leaf modules the tiny run never calls (tokenizer/T5/VAE, ``einops`` if absent) are stubs whose
  attributes raise when used;
* attention: the references call flash-attn (absent on CPU) or an SDPA fallback that casts to
  bfloat16; :func:`sdpa` is plain float32 SDPA over ``[B, L, H, D]`` (no mask, as their cache
  paths), so the recording is float32 end to end;
* :class:`TorchProxy` stands in for the ``torch`` name inside a pipeline module: it forwards
  everything, except that ``randn_like`` draws from a seeded generator and records each draw,
  ``device="cuda"`` arguments (CausVid hard-codes one) become the CPU, and ``zeros`` of the
  pipelines' hard-coded Wan-1.3B cache shape ``[B, tokens, 12, 128]`` get the tiny model's heads.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F


def _unused(name: str):
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{name} is stubbed out for the tiny golden run")

    return fail


def setup(root: Path, packages: Iterable[str], stubs: dict[str, Iterable[str]]) -> None:
    root = Path(root).resolve()
    sys.path.insert(0, str(root))
    for pkg in packages:
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(root / pkg.replace(".", "/"))]
        sys.modules[pkg] = mod
    for name, attrs in stubs.items():
        if name == "einops":
            try:
                importlib.import_module("einops")
                continue
            except ImportError:
                pass
        mod = types.ModuleType(name)
        for a in attrs:
            setattr(mod, a, _unused(f"{name}.{a}"))
        sys.modules[name] = mod


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


class TorchProxy:
    def __init__(self, seed: int, heads: int, head_dim: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.draws: list[torch.Tensor] = []
        self.heads, self.head_dim = heads, head_dim

    def zeros(self, shape: Any, **kwargs: Any) -> torch.Tensor:
        shape = list(shape)
        if len(shape) == 4 and shape[2:] == [12, 128]:
            shape[2:] = [self.heads, self.head_dim]
        if kwargs.get("device") == "cuda":
            kwargs["device"] = "cpu"
        return torch.zeros(shape, **kwargs)

    def randn_like(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        out = torch.randn(x.shape, generator=self.gen, dtype=torch.float32).to(x.dtype)
        self.draws.append(out.clone())
        return out

    def ones(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        if kwargs.get("device") == "cuda":
            kwargs["device"] = "cpu"
        return torch.ones(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def git_commit(root: Path) -> str:
    """The commit of the checkout (a ``REFERENCE_COMMIT`` file written by ``git archive`` users,
    else ``git rev-parse``)."""
    f = Path(root) / "REFERENCE_COMMIT"
    if f.is_file():
        return f.read_text().strip()
    return subprocess.check_output(["git", "-C", str(root), "rev-parse", "HEAD"], text=True).strip()


def patch_from_pretrained(cls: type, build) -> None:
    """``cls.from_pretrained(path, **kw)`` -> ``build(**kw)`` (the wrappers load Wan's 1.3B config
    from disk; the golden builds the tiny config instead)."""
    cls.from_pretrained = classmethod(lambda c, path, **kw: build(**kw))  # type: ignore[method-assign]


class RecordingHook:
    """Forward hook on a reference ``WanDiffusionWrapper``: every call's ``current_start``,
    timestep and output."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        x0 = output[1] if isinstance(output, tuple) else output
        self.calls.append(
            {
                "start": int(kwargs.get("current_start") or 0),
                "t": kwargs["timestep"].detach().clone(),
                "x": kwargs["noisy_image_or_video"].detach().clone(),
                "x0": x0.detach().clone(),
            }
        )
