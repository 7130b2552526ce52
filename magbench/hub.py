"""Hub artefacts (datasets, method weights, metric weights): where they are, whether they are
here, and how to fetch them.

One description, ``HubArtifact``, serves the three kinds so that ``magbench download`` is a single
command. Presence is checked on disk *before* any loader runs: a loader that retries the network
would make an offline user wait minutes for an error we can give at once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from magbench.errors import MagbenchError, MissingWeightsError


@dataclass(frozen=True)
class HubArtifact:
    """A set of files in a HuggingFace hub repository (or fetched by a custom function).

    ``files`` are exact paths or glob patterns inside the repo (``allow_patterns``); ``required``
    are the exact paths that must exist for the artefact to count as present.
    ``env_var`` names an environment variable that may point at a local copy instead.
    ``fetch`` replaces snapshot_download for artefacts that do not live on the hub (torchvision's
    AlexNet, say); it gets the artefact and returns the local folder.
    """

    name: str
    repo_id: str
    revision: str = "main"
    files: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    repo_type: str = "model"
    env_var: str | None = None
    download_command: str = ""
    description: str = ""
    fetch: Callable[["HubArtifact"], Path] | None = field(default=None, compare=False)
    find_local: Callable[["HubArtifact"], Path | None] | None = field(default=None, compare=False)

    # -- where ---------------------------------------------------------------------------------
    def local_path(self) -> Path | None:
        """The folder holding every required file, or None when it is not on this machine."""
        if self.env_var and os.environ.get(self.env_var):
            p = Path(os.environ[self.env_var]).expanduser()
            return p if _has_all(p, self.required) else None
        if self.find_local is not None:
            return self.find_local(self)
        return _cached_snapshot(self)

    def is_present(self) -> bool:
        return self.local_path() is not None

    def require(self) -> Path:
        """The local folder, or an immediate MissingWeightsError naming the fix."""
        path = self.local_path()
        if path is not None:
            return path
        where = f" or set {self.env_var} to a local copy" if self.env_var else ""
        if self.env_var and os.environ.get(self.env_var):
            raise MissingWeightsError(
                f"{self.name}: {self.env_var}={os.environ[self.env_var]} lacks "
                f"{', '.join(self.required) or 'the expected files'}"
            )
        raise MissingWeightsError(
            f"{self.name} ({self.repo_id}) is not on this machine. "
            f"Fetch it with `{self.download_command or 'magbench download'}`{where}."
        )

    # -- fetching ------------------------------------------------------------------------------
    def download(self) -> Path:
        if self.fetch is not None:
            return self.fetch(self)
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        try:
            # snapshot_download resumes partial files and shows a tqdm progress bar.
            path = snapshot_download(
                repo_id=self.repo_id,
                repo_type=self.repo_type,
                revision=self.revision,
                allow_patterns=list(self.files) or None,
            )
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise MagbenchError(
                f"{self.name}: could not download {self.repo_id}@{self.revision}: "
                f"{exc.__class__.__name__}: {exc}. Check the network or set HF_ENDPOINT/HF_TOKEN"
            ) from exc
        path = Path(path)
        missing = [f for f in self.required if not (path / f).exists()]
        if missing:
            raise MagbenchError(f"{self.name}: {self.repo_id}@{self.revision} has no {missing}")
        return path


def _has_all(folder: Path, files: Sequence[str]) -> bool:
    return folder.is_dir() and all((folder / f).exists() for f in files)


def _cached_snapshot(art: HubArtifact) -> Path | None:
    """Look in the HuggingFace cache without touching the network."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a hard dependency
        return None
    cache = Path(os.environ.get("HF_HUB_CACHE", constants.HF_HUB_CACHE))
    repo_dir = cache / f"{art.repo_type}s--{art.repo_id.replace('/', '--')}"
    if not repo_dir.is_dir():
        return None
    candidates: list[Path] = []
    ref = repo_dir / "refs" / art.revision
    if ref.is_file():
        candidates.append(repo_dir / "snapshots" / ref.read_text().strip())
    snap = repo_dir / "snapshots" / art.revision  # a revision given as a commit hash
    candidates.append(snap)
    for c in candidates:
        if _has_all(c, art.required):
            return c
    return None


# -- the catalogue --------------------------------------------------------------------------------
# Components register their artefacts here at import time; `magbench download` reads it.
ARTIFACTS: dict[str, HubArtifact] = {}


def register_artifact(art: HubArtifact) -> HubArtifact:
    ARTIFACTS[art.name] = art
    return art
