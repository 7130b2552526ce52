"""Prompt datasets for text-to-video tasks (``long-video``): one prompt per line.

Three sources, one loader (:func:`load_prompt_file`):

* ``prompts`` (no argument): :data:`BUILTIN_PROMPTS`, a small set embedded here so a run works
  offline (written for magbench: varied scenes, camera moves and subjects, in the long, detailed
  style the Wan-based generators are trained on).
* ``prompts:PATH``: a text file, one prompt per line (blank lines are an error: they would shift
  every later prompt's index). Extended prompts, when a file ``<stem>_extended<suffix>`` lies
  beside it with as many lines, are what the method is given (as the MAG and Self-Forcing
  repositories generate from ``MovieGenVideoBench_extended.txt``); the short line is kept beside
  it in the record.
* ``moviegen``: the MovieGenVideoBench prompt files the MAG repository generates from
  (:data:`MOVIEGEN_PROMPTS`, fetched by ``magbench download --dataset moviegen``). The short
  prompts are Meta's Movie Gen Video Bench (facebookresearch/MovieGenBench,
  ``benchmark/MovieGenVideoBench.txt``, 1003 lines, byte-identical); the extended ones were
  published with Self-Forcing (guandeh17/Self-Forcing, ``prompts/``, its first commit), which MAG
  (Xilluill/MAG, ``prompts/``) carries byte for byte (same git blobs).

A dataset's identity (``id`` and ``revision``) includes the SHA-256 of its prompt files, so two
runs on different prompt lists are never pooled.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from magbench.errors import DatasetError, MagbenchError
from magbench.hub import HubArtifact, register_artifact

BUILTIN_PROMPTS: tuple[str, ...] = (
    "A slow aerial shot glides over a winding river through an autumn forest at sunrise, mist rising "
    "from the water, orange and red leaves on both banks, soft golden light, calm and wide.",
    "A red vintage tram rolls down a narrow cobblestone street of an old European town on a rainy "
    "evening, shop windows glowing, reflections on the wet stones, the camera following behind it.",
    "A close-up of a potter's hands shaping wet clay on a spinning wheel in a sunlit workshop, dust "
    "floating in the light, shelves of bowls in the soft-focus background.",
    "A golden retriever runs along a wide sandy beach at low tide, waves rolling in, the camera "
    "tracking beside the dog at its height, bright afternoon sun and a clear blue sky.",
    "A first-person walk through a quiet library with tall wooden shelves, brass lamps and a "
    "spiral staircase, the camera moving slowly down the central aisle toward a large window.",
    "Time-lapse of clouds rolling over snow-capped mountain peaks, shadows sweeping across the "
    "glaciers and valleys below, the camera fixed on a ridge, dramatic and crisp.",
    "A small sailboat crosses a calm turquoise bay surrounded by green cliffs, the camera circling "
    "slowly around it from above, sunlight sparkling on the water.",
    "A cozy kitchen at night: a kettle steaming on the stove, rain streaking the window, a cat "
    "asleep on a chair, warm lamplight, the camera drifting slowly across the room.",
)

EXTENDED_SUFFIX = "_extended"


@dataclass(frozen=True)
class PromptSample:
    """One generation: a prompt and which of its samples this is (``seed_index``)."""

    sample_id: str
    prompt_index: int  # line of the prompt file, from 0
    seed_index: int  # 0 .. samples_per_prompt - 1; the seed follows from the run seed and sample_id
    prompt: str  # what the method is given (the extended prompt where there is one)
    short_prompt: str  # the line of the prompt file

    @property
    def caption(self) -> str:  # the name video datasets use, for code that reads either
        return self.prompt


@dataclass
class PromptDataset:
    """Prompts, and the samples drawn from them (``samples_per_prompt`` each)."""

    id: str
    prompts: list[str]
    extended: list[str] | None = None
    revision: str | None = None  # "sha256:<first 16 hex digits of the prompt files' digest>"
    source: dict[str, Any] = field(default_factory=dict)  # path(s), hashes, provenance
    samples_per_prompt: int = 1
    samples: list[PromptSample] = field(init=False)

    def __post_init__(self) -> None:
        if not self.prompts:
            raise DatasetError(f"{self.id}: no prompts")
        if self.extended is not None and len(self.extended) != len(self.prompts):
            raise DatasetError(
                f"{self.id}: {len(self.extended)} extended prompts for {len(self.prompts)} prompts; "
                "the two files must have one line per prompt"
            )
        self.samples = self._expand()

    def _expand(self) -> list[PromptSample]:
        if self.samples_per_prompt < 1:
            raise DatasetError(f"{self.id}: samples per prompt must be >= 1, got {self.samples_per_prompt}")
        width = max(4, len(str(len(self.prompts) - 1)))
        out = []
        for i, short in enumerate(self.prompts):
            prompt = self.extended[i] if self.extended is not None else short
            for k in range(self.samples_per_prompt):
                sid = f"p{i:0{width}d}" if self.samples_per_prompt == 1 else f"p{i:0{width}d}-{k}"
                out.append(PromptSample(sid, i, k, prompt, short))
        return out

    def with_samples_per_prompt(self, n: int) -> "PromptDataset":
        """The same prompts with ``n`` samples each (sample ids ``pNNNN-K``)."""
        return PromptDataset(self.id, self.prompts, self.extended, self.revision, dict(self.source), n)

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "kind": "prompts",
            "num_prompts": len(self.prompts),
            "samples_per_prompt": self.samples_per_prompt,
            "num_samples": len(self.samples),
            "extended": self.extended is not None,
            **self.source,
        }


def _digest(*texts: str | None) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(b"\0" if t is None else t.encode("utf-8") + b"\1")
    return h.hexdigest()


def parse_prompt_lines(text: str, where: str) -> list[str]:
    """One prompt per line; a trailing newline is allowed, a blank line is not."""
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            raise DatasetError(f"{where}:{n}: blank line; a prompt file has one prompt per line (remove it)")
    return [line.strip() for line in lines]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such prompt file (--dataset prompts:PATH, one prompt per line)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: unreadable prompt file ({exc})") from exc


def extended_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}{EXTENDED_SUFFIX}{path.suffix}")


def load_prompt_file(path: Path | str, dataset_id: str | None = None, provenance: dict[str, Any] | None = None) -> PromptDataset:
    """``path`` (one prompt per line) and, where it lies beside it, ``<stem>_extended<suffix>``."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise DatasetError(f"{path}: a folder; --dataset prompts:PATH takes a text file with one prompt per line")
    text = _read(path)
    prompts = parse_prompt_lines(text, str(path))
    ext_path = extended_path(path)
    ext_text = _read(ext_path) if not path.stem.endswith(EXTENDED_SUFFIX) and ext_path.is_file() else None
    extended = parse_prompt_lines(ext_text, str(ext_path)) if ext_text is not None else None
    source: dict[str, Any] = {"path": str(path), "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    if ext_text is not None:
        source.update(extended_path=str(ext_path), extended_sha256=hashlib.sha256(ext_text.encode("utf-8")).hexdigest())
    source.update(provenance or {})
    return PromptDataset(
        id=dataset_id or f"prompts:{path}", prompts=prompts, extended=extended,
        revision="sha256:" + _digest(text, ext_text)[:16], source=source,
    )


def builtin_prompts() -> PromptDataset:
    text = "\n".join(BUILTIN_PROMPTS) + "\n"
    return PromptDataset(
        id="prompts", prompts=list(BUILTIN_PROMPTS), revision="sha256:" + _digest(text, None)[:16],
        source={"builtin": True, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()},
    )


# -- MovieGenVideoBench, as the MAG repository ships it ---------------------------------------------
MOVIEGEN_REPO = "Xilluill/MAG"
MOVIEGEN_COMMIT = "08008c604c872b8a86123e3c4d13e4dda5806e08"
MOVIEGEN_FILES = {  # file -> SHA-256 at MOVIEGEN_COMMIT
    "MovieGenVideoBench.txt": "ae02a4bbebcb55067dbeea369e43d52a4817d57fd0ac223071b9aa236ac027c4",
    "MovieGenVideoBench_extended.txt": "50293c2717c8f2df5773154d4680c74e636ecb08eb4fe13cdce7357d0ab9d121",
}
# Where the files are fetched from: the MAG repository's raw files at the pinned commit.
MOVIEGEN_BASE = f"raw.githubusercontent.com/{MOVIEGEN_REPO}/{MOVIEGEN_COMMIT}/prompts"
MOVIEGEN_PROVENANCE = {
    "source": f"github.com/{MOVIEGEN_REPO} prompts/ at {MOVIEGEN_COMMIT}",
    "origin": "short prompts: facebookresearch/MovieGenBench benchmark/MovieGenVideoBench.txt; "
              "extended: guandeh17/Self-Forcing prompts/MovieGenVideoBench_extended.txt",
}


def _moviegen_cache() -> Path:
    root = os.environ.get("MAGBENCH_CACHE") or Path.home() / ".cache" / "magbench"
    return Path(root) / "prompts" / f"moviegen-{MOVIEGEN_COMMIT[:12]}"


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _find_moviegen(art: HubArtifact) -> Path | None:
    folder = _moviegen_cache()
    ok = all((folder / f).is_file() and _sha256_file(folder / f) == h for f, h in MOVIEGEN_FILES.items())
    return folder if ok else None


def _fetch_moviegen(art: HubArtifact) -> Path:
    """Download both files at the pinned commit; each is checked against its SHA-256 before it is kept."""
    folder = _moviegen_cache()
    folder.mkdir(parents=True, exist_ok=True)
    for name, digest in MOVIEGEN_FILES.items():
        if (folder / name).is_file() and _sha256_file(folder / name) == digest:
            continue
        url = f"https://{MOVIEGEN_BASE}/{name}"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 - a fixed https URL
                data = resp.read()
        except OSError as exc:
            raise MagbenchError(f"{art.name}: could not download {url}: {exc}. Check the network") from exc
        if hashlib.sha256(data).hexdigest() != digest:
            raise MagbenchError(f"{art.name}: {url} does not have the expected SHA-256 {digest}; not kept")
        tmp = folder / f".{name}.part"
        tmp.write_bytes(data)
        os.replace(tmp, folder / name)
    return folder


MOVIEGEN_PROMPTS = register_artifact(
    HubArtifact(
        name="moviegen",
        repo_id=MOVIEGEN_BASE,  # `magbench download` prints https://<repo_id>/<file> for a by-hand fetch
        revision=MOVIEGEN_COMMIT,
        files=tuple(MOVIEGEN_FILES),
        required=tuple(MOVIEGEN_FILES),
        env_var="MAGBENCH_MOVIEGEN_PROMPTS",
        download_command="magbench download --dataset moviegen",
        description="MovieGenVideoBench prompts (1003) and their extended versions, as MAG generates from them",
        fetch=_fetch_moviegen,
        find_local=_find_moviegen,
    )
)


def load_moviegen(path: str | None = None) -> PromptDataset:
    """The MovieGenVideoBench prompts (extended beside them); ``path``: a local copy of the folder."""
    folder = Path(path).expanduser() if path else MOVIEGEN_PROMPTS.require()
    return load_prompt_file(folder / "MovieGenVideoBench.txt", dataset_id="moviegen",
                            provenance={**MOVIEGEN_PROVENANCE, "revision": MOVIEGEN_COMMIT if not path else "local"})
