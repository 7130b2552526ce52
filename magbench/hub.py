"""Hub artefacts (datasets, method weights, metric weights): where they are, whether they are
here, and how to fetch them.

One description, ``HubArtifact``, serves the three kinds so that ``magbench download`` is a single
command. Presence is checked on disk *before* any loader runs: a loader that retries the network
would make an offline user wait minutes for an error we can give at once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from magbench.errors import MagbenchError, MissingWeightsError


@dataclass(frozen=True)
class HubArtifact:
    """A set of files in a HuggingFace hub repository (or fetched by a custom function).

    ``files`` are exact paths or glob patterns inside the repo (``allow_patterns``); ``required``
    are the paths that must exist for the artefact to count as present: an exact path, or a glob
    pattern (``allow_patterns`` syntax: ``*`` crosses folders) that at least one file must match.
    With no ``required``, at least one file must match ``files``: a snapshot of a repository that
    holds several artefacts (MAG's weights and MAG-Bench share ``xilluill/MAG``) counts only for
    what was fetched into it.
    ``revision`` is the default; ``magbench download --revision`` pins another one on this machine
    (:func:`pin_revision`), which every later lookup uses.
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
    @property
    def effective_revision(self) -> str:
        """The revision pinned on this machine by `magbench download --revision`, else the default."""
        return pinned_revisions().get(self.name, self.revision)

    def local_path(self) -> Path | None:
        """The folder holding every required file, or None when it is not on this machine."""
        if self.env_var and os.environ.get(self.env_var):
            p = Path(os.environ[self.env_var]).expanduser()
            return p if _has_all(p, self.required, self.files) else None
        if self.find_local is not None:
            return self.find_local(self)
        return _cached_snapshot(self)

    def is_present(self) -> bool:
        return self.local_path() is not None

    def resolved_commit(self) -> str | None:
        """The hub commit of the local copy: its HF-cache snapshot folder's name, or the commit a
        ``--local-dir`` download recorded (``.cache/huggingface/download/*.metadata``); None when
        it is not here or its origin is unknown (a hand-made copy, a non-hub artefact)."""
        path = self.local_path()
        if path is None or self.fetch is not None:
            return None
        path = path.resolve()
        if path.parent.name == "snapshots" and _is_commit(path.name):
            return path.name
        meta = path / ".cache" / "huggingface" / "download"
        for f in sorted(meta.rglob("*.metadata")) if meta.is_dir() else ():
            first = f.read_text(errors="replace").splitlines()[:1]
            if first and _is_commit(first[0].strip()):
                return first[0].strip()
        return None

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

        revision = self.effective_revision
        try:
            # snapshot_download resumes partial files and shows a tqdm progress bar.
            path = snapshot_download(
                repo_id=self.repo_id,
                repo_type=self.repo_type,
                revision=revision,
                allow_patterns=list(self.files) or None,
            )
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise MagbenchError(
                f"{self.name}: could not download {self.repo_id}@{revision}: "
                f"{exc.__class__.__name__}: {exc}. Check the network or set HF_ENDPOINT/HF_TOKEN"
            ) from exc
        path = Path(path)
        missing = _missing(path, self.required, self.files)
        if missing:
            raise MagbenchError(f"{self.name}: {self.repo_id}@{revision} has no {missing}")
        return path


_GLOB_CHARS = frozenset("*?[")


def _is_commit(name: str) -> bool:
    return len(name) == 40 and all(c in "0123456789abcdef" for c in name)


def _relative_files(folder: Path) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()]


def _missing(folder: Path, required: Sequence[str], patterns: Sequence[str] = ()) -> list[str]:
    """The entries of ``required`` (exact paths or ``allow_patterns`` globs) that ``folder`` lacks;
    with no ``required``, ``patterns`` as one entry: at least one file must match one of them."""
    from huggingface_hub.utils import filter_repo_objects

    if not folder.is_dir():
        return list(required) or (["any of " + ", ".join(patterns)] if patterns else [])
    listing: list[str] | None = None
    missing = []
    for entry in required:
        if not _GLOB_CHARS & set(entry):
            if not (folder / entry).exists():
                missing.append(entry)
            continue
        listing = _relative_files(folder) if listing is None else listing
        if not any(True for _ in filter_repo_objects(listing, allow_patterns=[entry])):
            missing.append(entry)
    if not required and patterns:
        listing = _relative_files(folder) if listing is None else listing
        if not any(True for _ in filter_repo_objects(listing, allow_patterns=list(patterns))):
            missing.append("any of " + ", ".join(patterns))
    return missing


def _has_all(folder: Path, files: Sequence[str], patterns: Sequence[str] = ()) -> bool:
    return folder.is_dir() and not _missing(folder, files, patterns)


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
    revision = art.effective_revision
    ref = repo_dir / "refs" / revision
    if ref.is_file():
        candidates.append(repo_dir / "snapshots" / ref.read_text().strip())
    snap = repo_dir / "snapshots" / revision  # a revision given as a commit hash
    candidates.append(snap)
    for c in candidates:
        if _has_all(c, art.required, art.files):
            return c
    return None


# -- pinned revisions -----------------------------------------------------------------------------
# `magbench download --revision` records the revision here so that runs on this machine use the
# same snapshot (and the manifest names its commit).
def _pins_file() -> Path:
    root = os.environ.get("MAGBENCH_CACHE") or Path.home() / ".cache" / "magbench"
    return Path(root) / "hub_revisions.json"


def pinned_revisions() -> dict[str, str]:
    p = _pins_file()
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MagbenchError(f"{p}: unreadable ({exc}); delete it to forget the pinned revisions") from exc
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def pin_revision(art: HubArtifact, revision: str | None) -> None:
    """Pin ``art`` to ``revision`` on this machine (None: back to its default), atomically."""
    if art.fetch is not None:
        raise MagbenchError(f"{art.name} is not a hub repository: it has no revisions to pin")
    pins = pinned_revisions()
    if revision is None or revision == art.revision:
        pins.pop(art.name, None)
    else:
        pins[art.name] = revision
    p = _pins_file()
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(pins, indent=1, sort_keys=True))
    os.replace(tmp, p)


def resolved_commits(arts: Sequence[HubArtifact | None]) -> dict[str, str | None]:
    """{artefact name: the commit its local copy resolved to} for a run's manifest."""
    return {a.name: a.resolved_commit() for a in arts if a is not None}


# -- the catalogue --------------------------------------------------------------------------------
# Components register their artefacts here at import time; `magbench download` reads it.
ARTIFACTS: dict[str, HubArtifact] = {}


def register_artifact(art: HubArtifact) -> HubArtifact:
    ARTIFACTS[art.name] = art
    return art
