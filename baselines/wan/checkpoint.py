"""Loading Wan-family transformer weights, and the hub artefacts that hold them.

Formats (all use Wan's original parameter names, see :mod:`magbench.baselines.wan.model`):

* diffusers-style folder: ``config.json`` + ``diffusion_pytorch_model.safetensors``, a sharded
  ``diffusion_pytorch_model.safetensors.index.json`` with its shards, or the same as ``.bin``
  (``torch.load(weights_only=True)``; sharded with ``diffusion_pytorch_model.bin.index.json``).
  This is how MAG saves its generator and
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
  LoRA is merged by :mod:`magbench.baselines.wan.lora`;
* Rolling Forcing ``rolling_forcing_dmd.pt`` and Infinite-Forcing ``ema_model.pt`` (the weights
  Infinity-RoPE runs on): the same wrapper format, read from ``generator_ema`` (their READMEs run
  with ``--use_ema``); their loaders remove ``_fsdp_wrapped_module.`` anywhere in a key
  (RollingForcing and infinity-rope ``inference.py``), and so does ours (``load_wan(drop=...)``).

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
BIN_NAME = "diffusion_pytorch_model.bin"
BIN_INDEX_NAME = "diffusion_pytorch_model.bin.index.json"
# The MAG reference's own layout: configs/mag.yaml names this folder as both generator_ckpt and
# memory_ckpt (Xilluill/MAG @ 08008c6).
MAG_REFERENCE_FOLDER = "checkpoints/bc400"
MAG_GENERATOR_WORDS = ("generator",)
MAG_MEMORY_WORDS = ("memory", "compress")


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
# Causal Forcing (thu-ml/Causal-Forcing README, "Download Checkpoints": ``hf download
# zhuhz22/Causal-Forcing chunkwise/causal_forcing.pt`` and ``framewise/causal_forcing.pt``): the
# wrapper format of Self-Forcing, read from ``generator`` (chunk-wise: its README command has no
# --use_ema) or ``generator_ema`` (frame-wise: --use_ema). One artefact per model, so each method
# downloads only its own file.
CAUSAL_FORCING = register_artifact(
    HubArtifact(
        name="causal-forcing",
        repo_id="zhuhz22/Causal-Forcing",
        files=("chunkwise/causal_forcing.pt",),
        required=("chunkwise/causal_forcing.pt",),
        env_var="MAGBENCH_CAUSAL_FORCING",
        download_command="magbench download --method causal-forcing",
        description="Causal Forcing chunk-wise 4-step generator (Wan2.1-T2V-1.3B, causal, 3-frame blocks)",
    )
)
CAUSAL_FORCING_FRAMEWISE = register_artifact(
    HubArtifact(
        name="causal-forcing-framewise",
        repo_id="zhuhz22/Causal-Forcing",
        files=("framewise/causal_forcing.pt",),
        required=("framewise/causal_forcing.pt",),
        env_var="MAGBENCH_CAUSAL_FORCING_FRAMEWISE",
        download_command="magbench download --method causal-forcing-framewise",
        description="Causal Forcing frame-wise 4-step generator (Wan2.1-T2V-1.3B, causal, 1-frame blocks)",
    )
)
# Reward Forcing (JaydenLyh/Reward-Forcing README: "Reward Forcing | Hugging Face" ->
# JaydenLu666/Reward-Forcing-T2V-1.3B; its inference command reads
# checkpoints/Reward-Forcing-T2V-1.3B/rewardforcing.pt, which inference.py loads as a bare state
# dict of the wrapper, ``model.``-prefixed).
REWARD_FORCING = register_artifact(
    HubArtifact(
        name="reward-forcing",
        repo_id="JaydenLu666/Reward-Forcing-T2V-1.3B",
        files=("rewardforcing.pt",),
        required=("rewardforcing.pt",),
        env_var="MAGBENCH_REWARD_FORCING",
        download_command="magbench download --method reward-forcing",
        description="Reward Forcing generator (Wan2.1-T2V-1.3B, causal, 3-frame blocks, Re-DMD)",
    )
)
# Rolling Forcing (README "Download checkpoints": `huggingface-cli download TencentARC/RollingForcing
# checkpoints/rolling_forcing_dmd.pt`; inference.py loads its 'generator_ema' with --use_ema).
ROLLING_FORCING = register_artifact(
    HubArtifact(
        name="rolling-forcing",
        repo_id="TencentARC/RollingForcing",
        files=("checkpoints/rolling_forcing_dmd.pt",),
        required=("checkpoints/rolling_forcing_dmd.pt",),
        env_var="MAGBENCH_ROLLING_FORCING",
        download_command="magbench download --method rolling-forcing",
        description="Rolling Forcing DMD generator (Wan2.1-T2V-1.3B, causal, rolling window of 5 blocks)",
    )
)
# Infinity-RoPE is training-free: its README's setup_env.sh fetches the Infinite-Forcing snapshot
# (`snapshot_download(repo_id='SOTAMak1r/Infinite-Forcing', local_dir='checkpoints/')`) and its
# inference.sh runs `--checkpoint_path checkpoints/ema_model.pt --use_ema`: that one file.
INFINITE_FORCING = register_artifact(
    HubArtifact(
        name="infinite-forcing",
        repo_id="SOTAMak1r/Infinite-Forcing",
        files=("ema_model.pt",),
        required=("ema_model.pt",),
        env_var="MAGBENCH_INFINITE_FORCING",
        download_command="magbench download --method infinity-rope",
        description="Infinite-Forcing generator (Self-Forcing with a 1-frame sink; the weights Infinity-RoPE runs on)",
    )
)
# LongLive-RAG (qixinhu11/LongLive-RAG README, "Download everything": ``hf download
# qixinhu11/LongLive-RAG --include "checkpoints/*"``; its main result, ``bash inference.sh
# causal_forcing latentmem`` = configs/causal_forcing_latentmem.yaml, reads
# checkpoints/causal_forcing.pt (``generator`` key, use_ema: false) and the retrieval encoder
# checkpoints/ae_latent_mem.pt). Only those two of the repo's files are fetched.
LONGLIVE_RAG = register_artifact(
    HubArtifact(
        name="longlive-rag",
        repo_id="qixinhu11/LongLive-RAG",
        files=("checkpoints/causal_forcing.pt", "checkpoints/ae_latent_mem.pt"),
        required=("checkpoints/causal_forcing.pt", "checkpoints/ae_latent_mem.pt"),
        env_var="MAGBENCH_LONGLIVE_RAG",
        download_command="magbench download --method longlive-rag",
        description="LongLive-RAG: its Causal-Forcing backbone + the retrieval autoencoder (encoder used)",
    )
)
# MAG's hub repo also holds the MAG-Bench videos: only model folders are fetched, wherever they
# are (``*`` crosses folders in allow_patterns), and only they make the weights count as present.
# The configs name them under checkpoints/ (configs/mag.yaml: generator_ckpt = memory_ckpt =
# checkpoints/bc400); the released folder names could not be confirmed offline, so
# ``resolve_mag_folders`` picks them by a documented rule and takes ``generator_path=`` /
# ``memory_path=`` options.
MAG = register_artifact(
    HubArtifact(
        name="mag",
        repo_id="xilluill/MAG",
        files=("config.json", "*/config.json", "diffusion_pytorch_model*", "*/diffusion_pytorch_model*"),
        required=("*diffusion_pytorch_model*",),
        env_var="MAGBENCH_MAG",
        download_command="magbench download --method mag",
        description="MAG generator and memory model (diffusers-style folders)",
    )
)


def _find_local_mag(art: HubArtifact) -> Path | None:
    """A cached snapshot counts only if it holds a model folder (config.json + weights)."""
    from magbench.hub import _cached_snapshot

    snap = _cached_snapshot(art)
    return snap if snap is not None and find_model_folders(snap) else None


object.__setattr__(MAG, "find_local", _find_local_mag)


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


def _read_sharded(folder: Path, index_name: str, read) -> dict[str, torch.Tensor]:
    """The shards an index names, every one present, every indexed key found."""
    index_file = folder / index_name
    try:
        weight_map = json.loads(index_file.read_text())["weight_map"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index_file}: unreadable index ({exc.__class__.__name__}: {exc})") from exc
    shards = sorted(set(weight_map.values()))
    absent = [s for s in shards if not (folder / s).is_file()]
    if absent:
        raise CheckpointError(f"{index_file}: shard(s) {absent} missing from {folder}; download the whole folder")
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        state.update(read(folder / shard))
    lost = sorted(set(weight_map) - set(state))
    if lost:
        raise CheckpointError(f"{index_file}: keys {lost[:5]} are in the index but in none of its shards")
    return state


def _torch_load(p: Path, ema: bool = True) -> dict[str, torch.Tensor]:
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


def read_state_dict(path: str | Path, ema: bool = True) -> dict[str, torch.Tensor]:
    """A state dict from a diffusers-style folder, a .safetensors file or a .pt/.bin file."""
    from safetensors.torch import load_file

    def read_safetensors(f: Path) -> dict[str, torch.Tensor]:
        return load_file(str(f))

    def read_bin(f: Path) -> dict[str, torch.Tensor]:
        return _torch_load(f, ema)

    p = Path(path)
    if p.is_dir():
        if (p / WEIGHTS_NAME).is_file():
            return load_file(str(p / WEIGHTS_NAME))
        if (p / INDEX_NAME).is_file():
            return _read_sharded(p, INDEX_NAME, read_safetensors)
        if (p / BIN_NAME).is_file():
            return _torch_load(p / BIN_NAME, ema)
        if (p / BIN_INDEX_NAME).is_file():
            return _read_sharded(p, BIN_INDEX_NAME, read_bin)
        raise CheckpointError(f"{p}: no {WEIGHTS_NAME}, {BIN_NAME} or their .index.json in this folder")
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint")
    if p.suffix == ".safetensors":
        return load_file(str(p))
    if p.suffix in (".pt", ".pth", ".bin"):
        return _torch_load(p, ema)
    raise CheckpointError(f"{p}: unknown checkpoint format {p.suffix!r} (expected a folder, .safetensors, .pt or .bin)")


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


def drop_fragments(state: Mapping[str, torch.Tensor], fragments: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """``state`` with each of ``fragments`` removed wherever it occurs in a key (FSDP's
    ``_fsdp_wrapped_module.`` inside the names of a nested-wrapped model's EMA copy)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for frag in fragments:
            key = key.replace(frag, "")
        out[key] = value
    return out


def load_wan(
    path: str | Path, base: WanConfig | None = None, ema: bool = True, drop: tuple[str, ...] = (),
) -> CausalWan:
    """Build a :class:`CausalWan` from any supported checkpoint (config from config.json if any).
    ``drop``: key fragments removed wherever they occur (as a reference's own loader does)."""
    cfg = read_config(path, base)
    with torch.device("meta"):
        model = CausalWan(cfg)
    model = model.to_empty(device="cpu")
    state = read_state_dict(path, ema=ema)
    load_into(model, drop_fragments(state, drop) if drop else state, source=str(path))
    return model.eval().requires_grad_(False)


def _is_model_folder(d: Path) -> bool:
    if not (d / "config.json").is_file():
        return False
    names = [f.name for f in d.iterdir() if f.is_file()]
    return any(n.startswith("diffusion_pytorch_model") and n.endswith((".safetensors", ".bin")) for n in names) or (
        INDEX_NAME in names or BIN_INDEX_NAME in names
    )


def find_model_folders(root: str | Path) -> list[Path]:
    """Diffusers-style model folders under ``root`` (at any depth), sorted: ``config.json`` plus
    ``diffusion_pytorch_model*.safetensors`` or ``diffusion_pytorch_model*.bin``."""
    root = Path(root)
    return sorted({cfg.parent for cfg in root.rglob("config.json") if _is_model_folder(cfg.parent)})


def resolve_mag_folders(
    root: str | Path, generator: str | None, memory: str | None, need_memory: bool = True
) -> tuple[Path, Path | None]:
    """The generator and memory-model folders of a MAG download (``root``: the snapshot).

    The rule, for each of the two roles on its own:

    1. the option (``generator_path`` / ``memory_path``): a folder, absolute or relative to
       ``root``;
    2. otherwise the one model folder whose path below ``root`` names the role: a path part
       containing "generator" for the generator; "memory" or "compress" for the memory model
       (a folder naming both roles counts as the memory model). Two or more such folders:
       undecided;
    3. otherwise the reference's own layout: ``checkpoints/bc400``, which MAG's configs
       (``configs/mag.yaml``) name as both ``generator_ckpt`` and ``memory_ckpt``;
    4. otherwise, when the snapshot holds exactly one model folder, that folder.

    A role still undecided is an error listing the model folders found and both options.
    ``need_memory=False`` (the memory-model ablation) resolves the generator only.
    """
    root = Path(root)

    def explicit(p: str, option: str) -> Path:
        q = Path(p).expanduser()
        q = q if q.is_absolute() else root / q
        if not q.exists():
            raise CheckpointError(f"MAG: {option}={p}: {q} does not exist")
        return q

    folders: list[Path] | None = None

    def by_rule(words: tuple[str, ...], exclude: tuple[str, ...] = ()) -> Path | None:
        nonlocal folders
        folders = find_model_folders(root) if folders is None else folders

        def names(f: Path, ws: tuple[str, ...]) -> bool:
            return any(w in part.lower() for part in f.relative_to(root).parts for w in ws)

        named = [f for f in folders if names(f, words) and not names(f, exclude)]
        if named:
            return named[0] if len(named) == 1 else None
        reference = root / MAG_REFERENCE_FOLDER
        if reference in folders:
            return reference
        return folders[0] if len(folders) == 1 else None

    g = explicit(generator, "generator_path") if generator else by_rule(MAG_GENERATOR_WORDS, MAG_MEMORY_WORDS)
    m = None
    if need_memory:
        m = explicit(memory, "memory_path") if memory else by_rule(MAG_MEMORY_WORDS)
    undecided = [role for role, got in (("generator", g), ("memory model", m if need_memory else root)) if got is None]
    if undecided:
        listing = ", ".join(str(f.relative_to(root)) for f in folders or []) or "none"
        raise CheckpointError(
            f"MAG: cannot decide the {' and the '.join(undecided)} in {root} (model folders found: {listing}); "
            "pass --opt generator_path=FOLDER --opt memory_path=FOLDER (absolute or relative to that folder)"
        )
    return g, m
