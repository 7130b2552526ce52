"""The weights the built-in metrics need, described as hub artefacts.

Each artefact is registered in :data:`magbench.hub.ARTIFACTS` at import time so that
``magbench download --metrics`` fetches them. Every loader calls ``artifact.require()`` before it
builds a backbone: an offline user gets an immediate one-line error naming the download command
instead of minutes of network retries inside torchvision, timm or open_clip.

Weights are read only with safetensors or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from magbench.hub import HubArtifact, register_artifact

DOWNLOAD_COMMAND = "magbench download --metrics"

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"


def _torch_hub_checkpoints() -> Path:
    import torch.hub

    # get_dir() reads TORCH_HOME at call time, so a test (or a user) can redirect it.
    return Path(torch.hub.get_dir()) / "checkpoints"


def _find_alexnet(art: HubArtifact) -> Path | None:
    folder = _torch_hub_checkpoints()
    return folder if all((folder / f).is_file() for f in art.required) else None


def _fetch_alexnet(art: HubArtifact) -> Path:
    import torch.hub

    # Where torchvision itself would put it, so `lpips`/torchvision users share one copy.
    torch.hub.load_state_dict_from_url(
        ALEXNET_URL, map_location="cpu", progress=True, check_hash=True, weights_only=True
    )
    return _torch_hub_checkpoints()


ALEXNET = register_artifact(
    HubArtifact(
        name="alexnet-torchvision",
        repo_id="download.pytorch.org/models",
        files=(ALEXNET_FILE,),
        required=(ALEXNET_FILE,),
        env_var="MAGBENCH_ALEXNET_DIR",
        download_command=DOWNLOAD_COMMAND,
        description="ImageNet AlexNet trunk of LPIPS (lpips, bestmatch, correspondence)",
        fetch=_fetch_alexnet,
        find_local=_find_alexnet,
    )
)

DINO = register_artifact(
    HubArtifact(
        name="dino-vitb16",
        repo_id="timm/vit_base_patch16_224.dino",
        files=("model.safetensors", "config.json"),
        required=("model.safetensors",),
        env_var="MAGBENCH_DINO_DIR",
        download_command=DOWNLOAD_COMMAND,
        description="DINO ViT-B/16 (subject_consistency, as VBench)",
    )
)

# open_clip's ViT-B-32 `openai` tag points at this repo (hf_hub in open_clip/pretrained.py) and
# prefers its safetensors file over the pickle.
CLIP = register_artifact(
    HubArtifact(
        name="clip-vitb32-openai",
        repo_id="timm/vit_base_patch32_clip_224.openai",
        files=("open_clip_model.safetensors", "open_clip_config.json"),
        required=("open_clip_model.safetensors",),
        env_var="MAGBENCH_CLIP_DIR",
        download_command=DOWNLOAD_COMMAND,
        description="OpenAI CLIP ViT-B/32 image tower (background_consistency, as VBench)",
    )
)


def resolve_weights(art: HubArtifact, weights_dir: str | os.PathLike[str] | None) -> Path:
    """The folder holding ``art``'s required files: ``weights_dir`` when given, else the cache.

    Raises MissingWeightsError at once (naming ``magbench download --metrics``) when absent.
    """
    from magbench.errors import MissingWeightsError

    if weights_dir is not None:
        folder = Path(weights_dir).expanduser()
        missing = [f for f in art.required if not (folder / f).is_file()]
        if missing:
            raise MissingWeightsError(
                f"{art.name}: weights_dir {folder} lacks {', '.join(missing)}; "
                f"fetch it with `{DOWNLOAD_COMMAND}` or point weights_dir at a folder holding it"
            )
        return folder
    return art.require()
