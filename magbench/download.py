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
        table.add_row(a.name, a.repo_id, a.revision, "yes" if a.is_present() else "[yellow]no[/]", a.download_command)
    return table


def fetch(art: HubArtifact, console: Console) -> None:
    if art.is_present():
        console.print(f"{art.name}: already present at {art.local_path()}")
        return
    console.print(f"{art.name}: downloading {art.repo_id}@{art.revision} ...")
    path = art.download()
    console.print(f"{art.name}: ready at {path}")
