"""`magbench download`: one command for datasets, method weights and metric weights."""

from __future__ import annotations

from typing import Iterable

from rich.console import Console
from rich.table import Table

from magbench.errors import MagbenchError
from magbench.hub import ARTIFACTS, HubArtifact


def artifacts_for(datasets: Iterable[str] = (), methods: Iterable[str] = (), metrics: bool = False) -> list[HubArtifact]:
    from magbench.registry import METHODS, METRICS
    import magbench.data.magbench_hub  # noqa: F401  (registers the dataset artefact)

    arts: list[HubArtifact] = []
    for d in datasets:
        if d not in ARTIFACTS:
            known = [n for n in ARTIFACTS if n == "magbench"]
            raise MagbenchError(f"no downloadable dataset {d!r} (downloadable: {', '.join(known)}); the synthetic set is generated locally")
        arts.append(ARTIFACTS[d])
    for m in methods:
        cls = METHODS.get(m)
        if not cls.needs.weights:
            raise MagbenchError(f"method {m!r} needs no weights")
        arts.extend(cls.needs.weights)
    if metrics:
        for name in METRICS.names():
            arts.extend(getattr(METRICS.get(name), "weights", ()))
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

        arts = list(ARTIFACTS.values())
    table = Table(title="downloadable artefacts")
    for col in ("name", "source", "revision", "present", "fetch with"):
        table.add_column(col)
    for a in arts:
        table.add_row(a.name, a.repo_id, a.effective_revision, "yes" if a.is_present() else "[yellow]no[/]", a.download_command)
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
            console.print(f"{art.name}: already present at {art.local_path()} (commit {art.resolved_commit() or 'unknown'})")
            return
        console.print(f"{art.name}: downloading {art.repo_id}@{art.effective_revision} ...")
        path = art.download()
    except BaseException:
        if revision is not None:
            pin_revision(art, before)
        raise
    console.print(f"{art.name}: ready at {path} (commit {art.resolved_commit() or 'unknown'})")
