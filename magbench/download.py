"""`magbench download`: one command for datasets, method weights and metric weights.

Every artefact asked for is tried, even after one fails; the failures are reported together,
each with the way to fetch it by hand (huggingface_hub's ``hf download``) and the environment
variable that points magbench at a local copy.
"""

from __future__ import annotations

import shlex
from typing import Callable, Iterable

from rich.console import Console
from rich.table import Table

from magbench.errors import MagbenchError
from magbench.hub import ARTIFACTS, HubArtifact


# The artefacts `magbench download --dataset NAME` fetches (registered by magbench.data modules).
DATASET_ARTIFACTS = ("magbench", "moviegen")


def artifacts_for(datasets: Iterable[str] = (), methods: Iterable[str] = (), metrics: bool = False) -> list[HubArtifact]:
    from magbench.registry import METHODS, METRICS
    import magbench.data.magbench_hub  # noqa: F401  (registers the dataset artefacts)
    import magbench.data.prompts  # noqa: F401

    arts: list[HubArtifact] = []
    for d in datasets:
        if d not in DATASET_ARTIFACTS:
            raise MagbenchError(f"no downloadable dataset {d!r} (downloadable: {', '.join(DATASET_ARTIFACTS)}); "
                                "the synthetic set is generated locally and the built-in prompts are embedded")
        arts.append(ARTIFACTS[d])
    for m in methods:
        cls = METHODS.get(m)
        if not cls.needs.weights:
            raise MagbenchError(f"method {m!r} needs no weights")
        arts.extend(cls.needs.weights)
    if metrics:
        for name in METRICS.names():
            arts.extend(METRICS.get(name).weights)
    unique: dict[str, HubArtifact] = {}
    for a in arts:
        unique.setdefault(a.name, a)
    return list(unique.values())


def status_table(arts: list[HubArtifact] | None) -> Table:
    if arts is None:
        from magbench.registry import METHODS, METRICS

        for n in METHODS.names() + METRICS.names():  # importing registers their artefacts
            try:
                METHODS.get(n) if n in METHODS else METRICS.get(n)
            except MagbenchError:
                pass
        import magbench.data.magbench_hub  # noqa: F401
        import magbench.data.prompts  # noqa: F401

        arts = list(ARTIFACTS.values())
    table = Table(title="downloadable artefacts")
    for col in ("name", "source", "revision", "present", "fetch with", "local copy"):
        table.add_column(col)
    for a in arts:
        table.add_row(a.name, a.repo_id, a.effective_revision, "yes" if a.is_present() else "[yellow]no[/]", a.download_command,
                      f"{a.env_var}=DIR" if a.env_var else "")
    return table


def parse_revisions(specs: Iterable[str], arts: list[HubArtifact]) -> dict[str, str]:
    """``--revision`` values: ``REV`` (every selected artefact, all from one hub repository) or
    ``ARTEFACT=REV``; returns {artefact name: revision}."""
    out: dict[str, str] = {}
    names = {a.name: a for a in arts}
    for spec in specs:
        name, sep, rev = spec.rpartition("=")
        if sep:
            if name not in names:
                raise MagbenchError(f"--revision {spec}: {name!r} is not among the artefacts selected ({', '.join(names) or 'none'})")
            out[name] = rev
            continue
        repos = sorted({a.repo_id for a in arts if a.fetch is None})
        if len(repos) != 1:
            raise MagbenchError(
                f"--revision {spec}: the selection spans {len(repos)} hub repositories ({', '.join(repos)}); "
                f"name one: --revision ARTEFACT={spec} with ARTEFACT one of {', '.join(names)}"
            )
        out.update({a.name: rev for a in arts if a.fetch is None})
    return out


def fetch(art: HubArtifact, console: Console, revision: str | None = None) -> None:
    """Download ``art`` unless present; ``revision`` pins it on this machine first (kept only if
    the download succeeds)."""
    from magbench.hub import pin_revision, pinned_revisions

    before = pinned_revisions().get(art.name)
    if revision is not None:
        pin_revision(art, revision)
    try:
        if art.is_present():
            console.print(f"{art.name}: already present at {art.local_path()} (commit {art.resolved_commit() or 'unknown'})", highlight=False)
            return
        console.print(f"{art.name}: downloading {art.repo_id}@{art.effective_revision} ...", highlight=False)
        path = art.download()
    except BaseException:
        if revision is not None:
            pin_revision(art, before)
        raise
    console.print(f"{art.name}: ready at {path} (commit {art.resolved_commit() or 'unknown'})", highlight=False)


def fetch_all(
    arts: Iterable[HubArtifact], console: Console, fetch_one: Callable[[HubArtifact, Console], None] | None = None
) -> None:
    """Fetch every artefact (with ``fetch_one``, default :func:`fetch`); then, if any failed, one
    MagbenchError naming all of them. Each failure is printed with the way to fetch it by hand
    (:func:`manual_hint`)."""
    arts = list(arts)
    fetch_one = fetch_one or fetch
    failed: list[tuple[HubArtifact, str]] = []
    for art in arts:
        try:
            fetch_one(art, console)
        except Exception as exc:  # noqa: BLE001 - every artefact gets its try; all failures are reported
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reason = reason.removeprefix(f"{art.name}: ")  # the artefact is named once, by us
            failed.append((art, reason))
            console.print(f"[red]{art.name}: failed[/]: {reason}", highlight=False, soft_wrap=True)
            hint = manual_hint(art)
            if hint:
                console.print(f"  {hint}", highlight=False, soft_wrap=True, markup=False)
    if failed:
        raise MagbenchError(
            f"{len(failed)} of {len(arts)} downloads failed: "
            + "; ".join(f"{a.name} ({why})" for a, why in failed)
            + " (each is printed above with how to fetch it by hand)"
        )


def hf_download_command(art: HubArtifact, local_dir: str | None = None) -> str | None:
    """The ``hf download`` command (huggingface_hub's CLI) that fetches ``art``'s files, or None
    for an artefact that does not live on the hub (torchvision's AlexNet)."""
    if art.fetch is not None:
        return None
    parts = ["hf", "download", art.repo_id]
    exact = [f for f in art.files if not any(c in f for c in "*?[")]
    if art.files and len(exact) == len(art.files):
        parts += exact
    else:
        for pattern in art.files:
            parts += ["--include", pattern]
    if art.repo_type != "model":
        parts += ["--repo-type", art.repo_type]
    if art.effective_revision != "main":
        parts += ["--revision", art.effective_revision]
    if local_dir:
        parts += ["--local-dir", local_dir]
    return shlex.join(parts)


def manual_hint(art: HubArtifact) -> str:
    """How to provide ``art`` without `magbench download`: ``hf download`` into a folder plus the
    environment variable that points at it (or the cache it is found in)."""
    folder = "DIR" if art.env_var else None
    cmd = hf_download_command(art, local_dir=folder)
    env = f"{art.env_var}=DIR" if art.env_var else None
    if cmd and env:
        return f"by hand: `{cmd}`, then set {env}"
    if cmd:
        return f"by hand: `{cmd}` (into the HuggingFace cache)"
    if env and art.fetch is not None and "." in art.repo_id.split("/")[0]:  # a plain web download
        urls = " and ".join(f"https://{art.repo_id}/{f}" for f in art.required)
        return f"by hand: download {urls} into a folder DIR, then set {env}"
    if env:
        return f"by hand: put {', '.join(art.required) or 'its files'} in a folder DIR and set {env}"
    return ""


def missing_weights_message(missing: Iterable[HubArtifact], command: str = "magbench download --metrics") -> str:
    """The one line for weights that are not here: what is missing, the command that fetches it,
    and the environment variables that point at local copies instead."""
    missing = list(missing)
    env = local_copy_variables(missing)
    where = f", or point {' / '.join(env)} at a local copy" if env else ""
    return f"weights {', '.join(a.name for a in missing)} missing: run `{command}`{where}"


def local_copy_variables(arts: Iterable[HubArtifact]) -> list[str]:
    """The environment variables that point magbench at local copies of ``arts``."""
    return list(dict.fromkeys(a.env_var for a in arts if a.env_var))
