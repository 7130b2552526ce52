"""Loading Wan-family transformer weights, and the hub artefacts that hold them.

Formats (all use Wan's original parameter names, see :mod:`magbench.baselines.wan.model`):

* diffusers-style folder: ``config.json`` + ``diffusion_pytorch_model.safetensors`` (or a sharded
  ``diffusion_pytorch_model.safetensors.index.json``). This is how MAG saves its generator and
  memory model (``CausalWanModel.from_pretrained(args.generator_ckpt / args.memory_ckpt)`` in
  Xilluill/MAG ``pipeline/memory_generation_pipeline.py``) and how the original
  Wan-AI/Wan2.1-T2V-1.3B repo ships its transformer;
* Self-Forcing ``.pt``: a dict with ``generator`` and ``generator_ema`` state dicts (guandeh17/
  Self-Forcing ``inference.py``: ``state_dict['generator' if not args.use_ema else
  'generator_ema']`` loaded into ``WanDiffusionWrapper``, whose transformer is ``.model``, hence
  keys prefixed ``model.``). Read with ``torch.load(weights_only=True)`` only;
* LongLive ``longlive_base.pt`` and CausVid ``model.pt``: the same wrapper format, read from the
  ``generator`` key (LongLive's inference config has ``use_ema: false``; CausVid loads
  ``torch.load(...)['generator']``); LongLive's loader also takes a bare ``model`` key. LongLive's
  LoRA is merged by :mod:`magbench.baselines.wan.lora`.

Known wrapper prefixes (``model.``, ``module.``, ``_orig_mod.``, ``_fsdp_wrapped_module.``) are
stripped; any other missing or unexpected key is an error that names it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch

from magbench.errors import MagbenchError
from magbench.hub import HubArtifact, register_artifact

from magbench.baselines.wan.model import CausalWan, WanConfig

PREFIXES = ("_fsdp_wrapped_module.", "_orig_mod.", "module.", "model.")
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"


class CheckpointError(MagbenchError):
    """A checkpoint does not fit the model (missing/unexpected keys, wrong shapes, bad file)."""


# -- hub artefacts --------------------------------------------------------------------------------
# VAE, text encoder and tokenizer come from the Diffusers-format repo: diffusers'
# AutoencoderKLWan and transformers' UMT5EncoderModel read it as is (the original repo ships them
# as Wan-internal .pth files).
WAN_DIFFUSERS = register_artifact(
    HubArtifact(
        name="wan2.1-t2v-1.3b-diffusers",
        repo_id="Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        files=("vae/*", "text_encoder/*", "tokenizer/*", "model_index.json"),
        required=("vae/config.json", "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json", "tokenizer/tokenizer_config.json"),
        env_var="MAGBENCH_WAN_DIFFUSERS",
        download_command="magbench download --method self-forcing",
        description="Wan2.1 VAE and UMT5-XXL text encoder (Diffusers format)",
    )
)
# The original Wan transformer (the base Self-Forcing and MAG were distilled from); no method
# needs it by default, it is here for ``generator_path`` runs and `magbench download` listings.
WAN_BASE = register_artifact(
    HubArtifact(
        name="wan2.1-t2v-1.3b",
        repo_id="Wan-AI/Wan2.1-T2V-1.3B",
        files=("config.json", WEIGHTS_NAME),
        required=("config.json", WEIGHTS_NAME),
        env_var="MAGBENCH_WAN_BASE",
        download_command="hf download Wan-AI/Wan2.1-T2V-1.3B config.json diffusion_pytorch_model.safetensors",
        description="Wan2.1-T2V-1.3B base transformer (original Wan naming)",
    )
)
SELF_FORCING = register_artifact(
    HubArtifact(
        name="self-forcing",
        repo_id="gdhe17/Self-Forcing",
        files=("checkpoints/self_forcing_dmd.pt",),
        required=("checkpoints/self_forcing_dmd.pt",),
        env_var="MAGBENCH_SELF_FORCING",
        download_command="magbench download --method self-forcing",
        description="Self-Forcing DMD generator (Wan2.1-T2V-1.3B, causal, 3-frame blocks)",
    )
)
# LongLive v1.0 (the 1.3B model). Its README badge and release note link
# Efficient-Large-Model/LongLive-1.3B, while an older README/docs download command names
# Efficient-Large-Model/LongLive (baselines.md 2.1): we take the repo the v1.0 branch links to;
# a copy from the other repo works through MAGBENCH_LONGLIVE or the options checkpoint_path= and
# lora_path=. File names as configs/longlive_inference.yaml (longlive_models/models/...).
LONGLIVE = register_artifact(
    HubArtifact(
        name="longlive",
        repo_id="Efficient-Large-Model/LongLive-1.3B",
        files=("models/longlive_base.pt", "models/lora.pt"),
        required=("models/longlive_base.pt", "models/lora.pt"),
        env_var="MAGBENCH_LONGLIVE",
        download_command="magbench download --method longlive",
        description="LongLive-1.3B base generator + LoRA (rank 256), merged at load",
    )
)
# CausVid's autoregressive Wan checkpoint (README: the autoregressive_checkpoint folder of
# tianweiy/CausVid; minimal_inference/autoregressive_inference.py loads <folder>/model.pt).
CAUSVID = register_artifact(
    HubArtifact(
        name="causvid",
        repo_id="tianweiy/CausVid",
        files=("autoregressive_checkpoint/model.pt",),
        required=("autoregressive_checkpoint/model.pt",),
        env_var="MAGBENCH_CAUSVID",
        download_command="magbench download --method causvid",
        description="CausVid autoregressive generator (Wan2.1-T2V-1.3B, causal, 3-frame blocks, 3 steps)",
    )
)
# MAG's hub repo also holds the MAG-Bench videos: only the checkpoint folders are fetched. The
# configs name them under checkpoints/ (configs/mag.yaml: generator_ckpt/memory_ckpt:
# checkpoints/bc400; configs/block_compress.yaml: checkpoints/sf300); the exact folder names of the
# released generator and memory model could not be confirmed offline, so the method looks for
# them (see ``find_model_folders``) and takes ``generator_path=`` / ``memory_path=`` options.
MAG = register_artifact(
    HubArtifact(
        name="mag",
        repo_id="xilluill/MAG",
        files=("checkpoints/*/config.json", "checkpoints/*/diffusion_pytorch_model*", "README.md"),
        required=(),
        env_var="MAGBENCH_MAG",
        download_command="magbench download --method mag",
        description="MAG generator and memory model (diffusers-style folders)",
    )
)


# -- reading --------------------------------------------------------------------------------------
def strip_prefixes(state: Mapping[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes key by key, only where the stripped name is a model parameter."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key
        while name not in expected:
            for p in PREFIXES:
                if name.startswith(p):
                    name = name[len(p) :]
                    break
            else:
                name = key  # unknown either way: report it under its own name
                break
        out[name] = value
    return out


def read_state_dict(path: str | Path, ema: bool = True) -> dict[str, torch.Tensor]:
    """A state dict from a diffusers-style folder, a .safetensors file or a Self-Forcing .pt."""
    from safetensors.torch import load_file

    p = Path(path)
    if p.is_dir():
        if (p / WEIGHTS_NAME).is_file():
            return load_file(str(p / WEIGHTS_NAME))
        if (p / INDEX_NAME).is_file():
            index = json.loads((p / INDEX_NAME).read_text())
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(index["weight_map"].values())):
                state.update(load_file(str(p / shard)))
            return state
        raise CheckpointError(f"{p}: no {WEIGHTS_NAME} (or {INDEX_NAME}) in this folder")
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    if p.suffix == ".safetensors":
        return load_file(str(p))
    if p.suffix in (".pt", ".pth", ".bin"):
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{p}: not loadable with torch.load(weights_only=True): {exc}") from exc
        if not isinstance(obj, Mapping):
            raise CheckpointError(f"{p}: expected a dict, got {type(obj).__name__}")
        # LongLive's loader also accepts a bare {"model": ...} (NVlabs/LongLive inference.py).
        for k in (("generator_ema", "generator", "model") if ema else ("generator", "model")):
            if k in obj and isinstance(obj[k], Mapping):
                return dict(obj[k])
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)  # a bare state dict
        raise CheckpointError(f"{p}: no generator state dict in it (top-level keys: {sorted(map(str, obj))[:8]})")
    raise CheckpointError(f"{p}: unknown checkpoint format {p.suffix!r} (expected a folder, .safetensors or .pt)")


def read_config(path: str | Path, base: WanConfig | None = None) -> WanConfig:
    """The model config of a folder's config.json (``base``, default T2V-1.3B, when absent)."""
    p = Path(path)
    cfg_file = p / "config.json" if p.is_dir() else p.parent / "config.json"
    if p.is_dir() and cfg_file.is_file():
        try:
            return WanConfig.from_json(json.loads(cfg_file.read_text()), base)
        except (json.JSONDecodeError, TypeError) as exc:
            raise CheckpointError(f"{cfg_file}: unreadable config: {exc}") from exc
    return base or WanConfig()


def load_into(model: CausalWan, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy ``state`` into ``model``; any missing/unexpected key or shape mismatch is an error."""
    own = model.state_dict()
    state = strip_prefixes(state, set(own))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)})")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} ({len(unexpected)})")
        raise CheckpointError(f"{source}: {'; '.join(parts)}")
    bad = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{source}: shape of {k} is {tuple(state[k].shape)}, the model expects {tuple(own[k].shape)}")
    model.load_state_dict(dict(state), strict=True)


def load_wan(path: str | Path, base: WanConfig | None = None, ema: bool = True) -> CausalWan:
    """Build a :class:`CausalWan` from any supported checkpoint (config from config.json if any)."""
    cfg = read_config(path, base)
    with torch.device("meta"):
        model = CausalWan(cfg)
    model = model.to_empty(device="cpu")
    load_into(model, read_state_dict(path, ema=ema), source=str(path))
    return model.eval().requires_grad_(False)


def find_model_folders(root: str | Path) -> list[Path]:
    """Diffusers-style model folders (config.json + weights) under ``root``, sorted."""
    root = Path(root)
    found = []
    for cfg in root.rglob("config.json"):
        d = cfg.parent
        if (d / WEIGHTS_NAME).is_file() or (d / INDEX_NAME).is_file():
            found.append(d)
    return sorted(found)


def resolve_mag_folders(root: str | Path, generator: str | None, memory: str | None) -> tuple[Path, Path]:
    """The generator and memory-model folders of a MAG download.

    Explicit paths (absolute, or relative to ``root``) win. Otherwise folders whose name contains
    "memory" / "generator" are taken; anything ambiguous is an error listing what was found.
    """
    root = Path(root)

    def explicit(p: str) -> Path:
        q = Path(p).expanduser()
        q = q if q.is_absolute() else root / q
        if not q.exists():
            raise CheckpointError(f"MAG: {q} does not exist")
        return q

    if generator and memory:
        return explicit(generator), explicit(memory)
    folders = find_model_folders(root)
    mem = [f for f in folders if "memory" in f.name.lower() or "compress" in f.name.lower()]
    gen = [f for f in folders if f not in mem and ("generator" in f.name.lower() or "mag" in f.name.lower())]
    g = explicit(generator) if generator else (gen[0] if len(gen) == 1 else None)
    m = explicit(memory) if memory else (mem[0] if len(mem) == 1 else None)
    if g is None or m is None:
        listing = ", ".join(str(f.relative_to(root)) for f in folders) or "none"
        raise CheckpointError(
            f"MAG: cannot tell the generator and the memory model apart in {root} (model folders: {listing}); "
            "pass the options generator_path=... and memory_path=..."
        )
    return g, m
