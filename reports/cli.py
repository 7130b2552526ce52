"""`magbench leaderboard | report | compare`: registered on the main app by ``register(app)``.

Heavy imports (pandas, matplotlib) happen inside the commands so `magbench --help` stays fast.
Errors are MagbenchError subclasses with one-line messages; the main CLI prints them and exits
non-zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    """Add the report commands to ``app``."""

    @app.command("leaderboard")
    def leaderboard_cmd(
        run_dirs: List[Path] = typer.Argument(..., help="Run folders, or folders holding run folders."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the table as CSV here (e.g. leaderboard.csv)."),
        primary: Optional[str] = typer.Option(None, "--primary", help="Metric to rank by (default bestmatch_lpips, else lpips, else the first)."),
        metric: List[str] = typer.Option([], "--metric", "-m", help="Metric columns to show in the terminal (repeatable; the CSV has all)."),
        with_paper: bool = typer.Option(False, "--with-paper", help="Also show the MAG paper's published MAG-Bench table beside the measured rows (and, with --out X.csv, write it to X.paper.csv); never mixed into the leaderboard."),
    ) -> None:
        """Leaderboard over runs: mean and 95% bootstrap CI per metric, efficiency, one row per method config."""
        from magbench.console import Console
        from rich.markup import escape

        from magbench.reports.leaderboard import build, rich_table, write_leaderboard

        lb = build(run_dirs, primary=primary)
        console, err = Console(), Console(stderr=True)
        _print_problems(err, lb.problems)
        for note in lb.notes:
            err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        console.print(rich_table(lb.frame, metrics=metric or None))
        if out is not None:
            write_leaderboard(lb.frame, out)
            err.print(f"wrote {out}", highlight=False)
        if with_paper:
            from magbench.reports.paper import rich_table as paper_table, side_by_side

            table = side_by_side(lb)
            console.print(paper_table(table))
            if out is not None:
                write_leaderboard(table, out.with_suffix(".paper.csv"))
                err.print(f"wrote {out.with_suffix('.paper.csv')}", highlight=False)

    @app.command("report")
    def report_cmd(
        run_dirs: List[Path] = typer.Argument(..., help="Run folders, or folders holding run folders."),
        out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write (self-contained, works offline)."),
        primary: Optional[str] = typer.Option(None, "--primary", help="Metric to rank by."),
        samples: int = typer.Option(12, "--samples", help="Samples shown in the drill-down, per dataset/protocol."),
        title: str = typer.Option("MAG-Bench report", "--title"),
    ) -> None:
        """Self-contained HTML report: leaderboard, charts, retention curves, frame strips, manifests."""
        from magbench.console import Console

        from magbench.reports.html import report

        path = report(run_dirs, out, primary=primary, max_samples=samples, title=title)
        Console(stderr=True).print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)", highlight=False)

    @app.command("compare")
    def compare_cmd(
        run_a: Path = typer.Argument(..., help="Run folder A (the baseline)."),
        run_b: Path = typer.Argument(..., help="Run folder B."),
        metric: List[str] = typer.Option([], "--metric", "-m", help="Metric key to compare (repeatable; default: all shared)."),
    ) -> None:
        """Paired comparison of two runs on their shared samples, with bootstrap CIs and verdicts."""
        from magbench.console import Console
        from rich.markup import escape
        from rich.table import Table

        from magbench.reports import fmt
        from magbench.reports.compare import compare

        c = compare(run_a, run_b, metrics=metric or None)
        console, err = Console(), Console(stderr=True)
        _print_problems(err, [str(p) for r in (c.run_a, c.run_b) for p in r.problems])
        table = Table(title=f"A = {c.run_a.run_id} ({c.run_a.method}), B = {c.run_b.run_id} ({c.run_b.method}); {len(c.shared)} shared samples")
        for col in ("metric", "n", "A", "B", "B - A [95% CI]"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for d in c.diffs:
            table.add_row(d.key, str(d.n), fmt.num(d.mean_a), fmt.num(d.mean_b), fmt.ci(d.diff, d.ci_low, d.ci_high))
        console.print(table)
        for note in c.notes:
            err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        # Verdicts as plain lines: they are sentences, and a table column would wrap them.
        for d in c.diffs:
            style = {"B": "green", "A": "red"}.get(d.better or "", "dim")
            console.print(f"[{style}]{d.verdict}[/]", highlight=False, soft_wrap=True)


def _print_problems(console, problems: list[str]) -> None:
    for p in problems:
        console.print(f"[yellow]warning:[/] damaged record skipped: {p}", highlight=False, soft_wrap=True)
