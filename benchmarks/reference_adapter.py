"""The MAG reference code (Xilluill/MAG) imported from a checkout, with random weights: the one
place that knows how the reference's modules are loaded without the parts a timing run does not use.

Get the reference (the pinned commit; nothing of it is copied into magbench)::

    git clone https://github.com/Xilluill/MAG ref-mag
    git -C ref-mag checkout 08008c604c872b8a86123e3c4d13e4dda5806e08

then ``Reference(Path("ref-mag"), cfg, tiny, device, dtype)``. What it does to import them:

* the package ``__init__`` files of ``wan``, ``wan.modules``, ``pipeline``, ``model``, ``utils``
  (which pull in easydict, the T5, the training code) are replaced by bare namespace modules, so
  only the modules named are executed;
* modules imported but not on the timed path are stubs whose attributes raise when used:
  ``wan.modules.tokenizers`` (ftfy, regex, transformers), ``wan.modules.t5`` (accelerate), and
  ``einops`` when it is not installed (then a two-pattern shim serves the VAE's ``rearrange``);
* attention: the reference's self-attention goes through its own ``wan.modules.attention.attention``
  (flash-attn 2/3, else its SDPA fallback); its cross-attention calls
  ``wan.modules.model.flash_attention``, which has no fallback, so without flash-attn it is
  replaced by :func:`flash_attention_sdpa` (same signature, torch SDPA);
* random weights: ``CausalWanModel.from_pretrained`` builds the configured dims with the model's
  own initialisation on the target device, the text encoder returns random prompt embeddings, and
  ``_video_vae`` builds ``WanVAE_`` with its own initialisation instead of loading a checkpoint;
* ``tiny``: the pipeline modules' hard-coded Wan-1.3B cache shapes get the tiny model's heads
  (:class:`_TinyTorch`).
"""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from magbench.baselines.wan.model import WanConfig

EXPECTED_COMMIT = "08008c604c872b8a86123e3c4d13e4dda5806e08"
REPOSITORY = "https://github.com/Xilluill/MAG"
# Checkpoint paths handed to the reference's builders: build with random weights.
NO_MEMORY_MODEL = "<no memory model: generator-only path>"
RANDOM_CKPT = "<random weights>"
# WanVAE_ overrides for tiny runs (the structure of magbench's tiny_vae_config).
TINY_REF_VAE = {"dim": 8, "dim_mult": [1, 2, 2, 2], "num_res_blocks": 1}
# Namespace packages replacing the reference's package __init__ files, and the stubbed modules.
PACKAGES = ("wan", "wan.modules", "utils", "pipeline", "model")
STUBS = {"wan.modules.tokenizers": ("HuggingfaceTokenizer",), "wan.modules.t5": ("umt5_xxl", "T5EncoderModel"),
         "einops": ("rearrange", "repeat")}


def _unused(name: str):
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{name} is stubbed out: not on the path this adapter runs")

    return fail


def _install_namespaces(root: Path, packages: Iterable[str], stubs: dict[str, Iterable[str]]) -> None:
    for pkg in packages:
        mod = types.ModuleType(pkg)
        mod.__path__ = [str(root / pkg.replace(".", "/"))]
        sys.modules[pkg] = mod
    for name, attrs in stubs.items():
        if name in sys.modules:  # einops installed, or its shim already in place
            continue
        mod = types.ModuleType(name)
        for a in attrs:
            setattr(mod, a, _unused(f"{name}.{a}"))
        sys.modules[name] = mod


def checkout_commit(root: Path) -> str:
    """The commit of the checkout (``git rev-parse``; a ``REFERENCE_COMMIT`` file for a copy made
    by ``git archive``)."""
    f = Path(root) / "REFERENCE_COMMIT"
    if f.is_file():
        return f.read_text().strip()
    return subprocess.check_output(["git", "-C", str(root), "rev-parse", "HEAD"], text=True, stderr=subprocess.DEVNULL).strip()


def not_a_checkout(root: Path) -> str | None:
    """Why ``root`` is not a usable checkout (None when it is), with how to get one."""
    if (Path(root) / "pipeline" / "memory_generation_pipeline.py").is_file():
        return None
    return (f"{root}: not a Xilluill/MAG checkout (pipeline/memory_generation_pipeline.py missing): "
            f"git clone {REPOSITORY} ref-mag && git -C ref-mag checkout {EXPECTED_COMMIT}")

def _einops_shim() -> types.ModuleType:
    """``einops`` for the two patterns the reference's VAE uses, when einops is not installed."""
    mod = types.ModuleType("einops")

    def rearrange(x: torch.Tensor, pattern: str, **axes: int) -> torch.Tensor:
        lhs, rhs = (" ".join(s.split()) for s in pattern.split("->"))
        if lhs == "b c t h w" and rhs == "(b t) c h w":
            b, c, t, h, w = x.shape
            return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        if lhs == "(b t) c h w" and rhs == "b c t h w":
            bt, c, h, w = x.shape
            t = axes["t"]
            return x.reshape(bt // t, t, c, h, w).permute(0, 2, 1, 3, 4)
        raise NotImplementedError(f"einops shim: pattern {pattern!r}")

    def repeat(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("einops shim: repeat (not on the timed path)")

    mod.rearrange, mod.repeat = rearrange, repeat
    mod.__magbench_shim__ = True
    return mod


def flash_attention_sdpa(q, k, v, q_lens=None, k_lens=None, dropout_p=0.0, softmax_scale=None, q_scale=None,
                         causal=False, window_size=(-1, -1), deterministic=False, dtype=torch.bfloat16, version=None):
    """Stand-in for the reference's ``wan.modules.model.flash_attention`` (flash-attn only, no
    fallback) when flash-attn is absent: same [B, L, N, D] layout, half-precision cast and output
    dtype, torch SDPA. Only the unpadded case the timed path uses (``k_lens=None``)."""
    if q_lens is not None or k_lens is not None or window_size != (-1, -1) or q_scale is not None:
        raise NotImplementedError("flash_attention_sdpa: only the unpadded, unwindowed case")
    out_dtype = q.dtype
    half = (torch.float16, torch.bfloat16)
    q, k, v = (x if x.dtype in half else x.to(dtype) for x in (q, k, v))
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2).to(q.dtype), v.transpose(1, 2).to(q.dtype),
                                         dropout_p=dropout_p, is_causal=causal, scale=softmax_scale)
    return out.transpose(1, 2).contiguous().type(out_dtype)


class _TinyTorch:
    """``torch`` as the reference pipeline modules see it in ``--tiny`` runs: their hard-coded
    Wan-1.3B cache shapes ``[B, tokens, 12, 128]`` (and 512 cross-attention tokens) are given the
    tiny model's heads, head size and text length. Everything else is torch itself."""

    def __init__(self, heads: int, head_dim: int, text_len: int) -> None:
        self.heads, self.head_dim, self.text_len = heads, head_dim, text_len

    def zeros(self, shape: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        shape = list(shape)
        if len(shape) == 4 and shape[2:] == [12, 128]:
            shape[2:] = [self.heads, self.head_dim]
            if shape[1] == 512:
                shape[1] = self.text_len
        return torch.zeros(shape, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


class Reference:
    """The reference's modules, imported from ``root`` with the stubs above, and what it needs to
    run with random weights: ``CausalWanModel.from_pretrained`` builds the configured dims with
    the model's own initialisation (on the target device), the text encoder returns random prompt
    embeddings, ``_video_vae`` builds ``WanVAE_`` with its own initialisation instead of loading
    the checkpoint."""

    def __init__(self, root: Path, cfg: WanConfig, tiny: bool, device: torch.device, dtype: torch.dtype) -> None:
        self.root = Path(root).resolve()
        problem = not_a_checkout(self.root)
        if problem:
            raise FileNotFoundError(problem)
        self.cfg, self.tiny, self.device, self.dtype = cfg, tiny, device, dtype
        try:
            self.commit = checkout_commit(self.root)
        except Exception as exc:  # a plain copy without REFERENCE_COMMIT
            self.commit = f"unknown ({exc.__class__.__name__})"
        notes = {}
        try:
            import einops  # noqa: F401

            notes["einops"] = "installed"
        except ImportError:
            sys.modules["einops"] = _einops_shim()
            notes["einops"] = "shim (einops not installed): rearrange for the VAE's two patterns"
        try:
            import torch.cuda.amp  # noqa: F401  (wan/modules/vae.py imports it; unused on the timed path)
        except ImportError:
            sys.modules["torch.cuda.amp"] = types.ModuleType("torch.cuda.amp")
            notes["torch.cuda.amp"] = "stubbed"
        # The namespace packages carry their own __path__: the checkout's root (with its own
        # ``datasets``/``evaluate``/``utils`` folders) is never put on sys.path for everyone else.
        _install_namespaces(self.root, PACKAGES, STUBS)
        self.attn = importlib.import_module("wan.modules.attention")
        self.wm = importlib.import_module("wan.modules.model")
        self.cm = importlib.import_module("wan.modules.causal_model")
        self.vae_mod = importlib.import_module("wan.modules.vae")
        self.ww = importlib.import_module("utils.wan_wrapper")
        self.ldm = importlib.import_module("model.long_dmd_model")
        self.pipe_mod = importlib.import_module("pipeline.memory_generation_pipeline")
        self.notes = notes

        # flash-attn-4 (magbench's optional kernel) installs a ``flash_attn`` namespace package
        # without flash-attn 2's functions: the reference's ``import flash_attn`` then succeeds and
        # it would call a function that is not there. Only a real flash-attn 2 counts.
        if self.attn.FLASH_ATTN_2_AVAILABLE and not hasattr(getattr(self.attn, "flash_attn", None), "flash_attn_varlen_func"):
            self.attn.FLASH_ATTN_2_AVAILABLE = False
            notes["flash_attn"] = "a flash_attn package without flash_attn_varlen_func (flash-attn-4): not flash-attn 2"
        fa2, fa3 = bool(self.attn.FLASH_ATTN_2_AVAILABLE), bool(self.attn.FLASH_ATTN_3_AVAILABLE)
        self.attention = {
            "self_attention": ("reference flash-attn (its attention(): FA3 if available, else FA2)" if (fa2 or fa3) else
                               "reference SDPA fallback: wan.modules.attention.attention (q/k/v cast to bf16, "
                               "torch.nn.functional.scaled_dot_product_attention); flash-attn 2/3 not importable"),
            "cross_attention": ("reference flash_attention" if (fa2 or fa3) else
                                "stub: wan.modules.model.flash_attention (flash-attn only in the reference, no fallback) "
                                "replaced by a same-signature torch SDPA call"),
            "flash_attn_2_available": fa2,
            "flash_attn_3_available": fa3,
        }
        if not (fa2 or fa3):
            self.wm.flash_attention = flash_attention_sdpa
        # Record the key length of every self-attention call (attended frames), then call the
        # reference's own function.
        self.last_kv_tokens = 0
        own_attention = self.cm.attention

        def attention(q, k, v, *args, **kwargs):
            self.last_kv_tokens = k.shape[1]
            return own_attention(q, k, v, *args, **kwargs)

        self.cm.attention = attention

        dims = dict(dim=cfg.dim, ffn_dim=cfg.ffn_dim, num_heads=cfg.num_heads, num_layers=cfg.num_layers, in_dim=cfg.in_dim,
                    out_dim=cfg.out_dim, patch_size=tuple(cfg.patch_size), text_len=cfg.text_len, text_dim=cfg.text_dim,
                    freq_dim=cfg.freq_dim, eps=cfg.eps, qk_norm=cfg.qk_norm, cross_attn_norm=cfg.cross_attn_norm)
        ref = self

        def from_pretrained(cls, path, **kw):
            if path == NO_MEMORY_MODEL:
                return Placeholder()
            with ref.device_ctx():
                return cls(model_type="t2v", **dims, **kw)

        self.cm.CausalWanModel.from_pretrained = classmethod(from_pretrained)
        own_video_vae = self.vae_mod._video_vae

        def video_vae(pretrained_path=None, z_dim=None, device="cpu", **kw):
            if tiny:
                kw = {**TINY_REF_VAE, **kw}
            with self._vae_without_checkpoint():
                return own_video_vae(pretrained_path=pretrained_path, z_dim=z_dim, device=device, **kw)

        self.ww._video_vae = video_vae
        self.prompt = torch.randn(1, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(1)).to(device, dtype)
        self.empty_prompt = torch.randn(1, cfg.text_len, cfg.text_dim, generator=torch.Generator().manual_seed(2)).to(device, dtype)
        outer = self

        class TextEncoder(torch.nn.Module):  # WanTextEncoder's interface, random embeddings (512 tokens, as UMT5's padded output)
            def __init__(self, device: Any = "cpu") -> None:
                super().__init__()

            def forward(self, text_prompts: list[str]) -> dict:
                e = outer.empty_prompt if all(p == "" for p in text_prompts) else outer.prompt
                return {"prompt_embeds": e.expand(len(text_prompts), -1, -1)}

        self.pipe_mod.WanTextEncoder = TextEncoder
        if tiny:
            proxy = _TinyTorch(cfg.num_heads, cfg.head_dim, cfg.text_len)
            self.pipe_mod.torch = proxy  # _initialize_cache, init_state
            self.ldm.torch = proxy  # _initialize_crossattn_cache

    @contextlib.contextmanager
    def device_ctx(self):
        """Build modules directly on the device (the reference builds on the CPU and loads a
        checkpoint; building 1.3B parameters on the CPU takes ~20 s here and changes no timing)."""
        with torch.device(self.device):
            yield

    @contextlib.contextmanager
    def _vae_without_checkpoint(self):
        """While ``_video_vae`` runs: its ``torch.device('meta')`` becomes the target device and
        ``torch.load`` / ``load_state_dict`` load nothing, so ``WanVAE_`` keeps its own init."""
        vae_mod, device = self.vae_mod, self.device

        class _T:
            def __getattr__(self, name: str) -> Any:
                return getattr(torch, name)

            @staticmethod
            def device(d: Any) -> torch.device:
                return device if d == "meta" else torch.device(d)

            @staticmethod
            def load(*args: Any, **kwargs: Any) -> None:
                return None

        own_lsd = vae_mod.WanVAE_.load_state_dict

        def load_state_dict(module, state, *args, **kwargs):
            return None if state is None else own_lsd(module, state, *args, **kwargs)

        vae_mod.torch, vae_mod.WanVAE_.load_state_dict = _T(), load_state_dict
        try:
            yield
        finally:
            vae_mod.torch, vae_mod.WanVAE_.load_state_dict = torch, own_lsd

    # -- building (the reference's objects, as its inference script builds them) --------------------------------------------------------------------------------
    def pipeline(self, args: types.SimpleNamespace, frame_tokens: int):
        """``memory_generation_pipeline(args, device)`` then ``.to(dtype=bf16, device)`` as
        ``inference_magbench.py`` does."""
        pipe = self.pipe_mod.memory_generation_pipeline(args, device=self.device)
        pipe = pipe.to(dtype=self.dtype, device=self.device)
        if self.tiny:  # its hard-coded Wan-1.3B sizes
            pipe.num_transformer_blocks = self.cfg.num_layers
            pipe.frame_seq_length = frame_tokens
        elif pipe.num_transformer_blocks != self.cfg.num_layers or pipe.frame_seq_length != frame_tokens:
            raise RuntimeError(f"reference pipeline sizes {pipe.num_transformer_blocks} layers / {pipe.frame_seq_length} tokens "
                               f"per frame != {self.cfg.num_layers} / {frame_tokens}")
        return pipe

    def vae(self):
        """``WanVAEWrapper(device).to(torch.bfloat16)`` as the pipeline builds it."""
        with self.device_ctx():
            return self.ww.WanVAEWrapper(self.device).to(torch.bfloat16).to(self.device)


class Placeholder(torch.nn.Module):
    """Stands where the pipeline builds a network the setting does not use (the memory model in
    the generator-only path) or its end-of-video decode (not what is timed)."""

    device = None

    def decode_to_pixel(self, latent, use_cache=False, offload_cpu=False):
        return latent


