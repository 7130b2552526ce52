"""Commands of the runners, registered on the main app: ``magbench status``."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def status(
        run_dir: Path = typer.Argument(..., help="A run folder (holds manifest.json or samples*.jsonl)."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ) -> None:
        """Finished / failed / pending samples per shard of a run (works while it runs)."""
        from magbench.console import Console

        from magbench.runners.status import render, run_status

        st = run_status(run_dir)
        if as_json:
            typer.echo(json.dumps(st.to_dict(), indent=2))
        else:
            render(st, Console())
