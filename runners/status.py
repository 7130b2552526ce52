"""``magbench status RUN``: finished, failed and pending samples per shard of the latest launch.

Everything is read from the run folder (plan, record files, locks), so it works while a launch
is running, after it died, and on any machine that sees the folder. A sample counts as finished
wherever its record is (a file of an earlier launch with another world size included), exactly as
the harness decides what to skip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from magbench.errors import MagbenchError
from magbench.locking import RUN_LOCK, is_locked
from magbench.reports.runs import FATAL, fatal_line, read_fatal
from magbench.runners.sharding import ShardPlan, lock_name
from magbench.store import MANIFEST, RECORDS_GLOB, RunDir


@dataclass
class ShardStatus:
    shard: int
    records: str
    assigned: int
    ok: int
    failed: int
    pending: int
    running: bool  # a process holds this shard's record file now
    pending_ids: list[str] = field(default_factory=list)


@dataclass
class FileStatus:
    name: str
    records: int
    in_plan: bool
    running: bool


@dataclass
class DamagedLine:
    """A damaged line of a record file and whether its sample has been redone since."""

    where: str  # "file:line: reason"
    sample_id: str | None  # the sample the line names, if it still does
    redone: bool  # the sample has a whole record (or, unnamed, every planned sample has one)


@dataclass
class RunStatus:
    run_dir: Path
    plan: dict[str, Any] | None
    shards: list[ShardStatus]
    files: list[FileStatus]
    problems: list[str]
    ok: int
    failed: int
    pending: int | None  # None: no plan, so the list of samples is unknown
    fatal: dict[str, Any] | None = None  # why the last invocation stopped (RUN/fatal.json), if it did
    damaged: list[DamagedLine] = field(default_factory=list)  # ``problems``, each with whether it was redone

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


def is_run_folder(path: Path) -> bool:
    """A folder some invocation of `magbench run` wrote: manifest, records, plan or fatal error."""
    return any((path / f).is_file() for f in (MANIFEST, "shards.json", FATAL)) or any(path.glob(RECORDS_GLOB))


def run_status(run: Path) -> RunStatus:
    rd = RunDir(Path(run))
    if not rd.path.is_dir():
        raise MagbenchError(f"{run}: no such run folder")
    if not is_run_folder(rd.path):
        below = sorted(p.name for p in rd.path.iterdir() if p.is_dir() and is_run_folder(p))
        if below:
            shown = ", ".join(below[:12]) + (f" and {len(below) - 12} more" if len(below) > 12 else "")
            raise MagbenchError(
                f"{run} is not a run folder but holds {len(below)}: {shown}; "
                f"pass one, e.g. `magbench status {rd.path / below[0]}`"
            )
        raise MagbenchError(
            f"{run} is not a run folder (no {MANIFEST}, {RECORDS_GLOB} or shards.json) and holds none; "
            "pass the --out folder of a `magbench run`"
        )
    records = rd.records()  # merged: the last record of a sample wins, as for the harness
    problems = [str(p) for p in rd.problems]
    by_id = {r.sample_id: r for r in records}
    plan = ShardPlan.read(rd.path)
    per_file: dict[str, int] = {}
    for f in rd.record_files():
        with open(f, "rb") as fh:
            per_file[f.name] = sum(1 for line in fh if line.strip())
    planned_files = {plan.records(r) for r in range(plan.world_size)} if plan else set()
    files = [
        FileStatus(name, n, name in planned_files, is_locked(rd.path / lock_name(name)))
        for name, n in sorted(per_file.items())
    ]
    shards: list[ShardStatus] = []
    fatal = read_fatal(rd.path, records)
    if plan is None:
        ok = sum(r.ok for r in records)
        return RunStatus(rd.path, None, [], files, problems, ok, len(records) - ok, None, fatal,
                         _damaged(rd.problems, by_id, None))
    for rank, ids in enumerate(plan.shards):
        st = [by_id[i].status if i in by_id else None for i in ids]
        pending = [i for i, s in zip(ids, st) if s is None]
        shards.append(ShardStatus(
            shard=rank, records=plan.records(rank), assigned=len(ids),
            ok=sum(s == "ok" for s in st), failed=sum(s not in (None, "ok") for s in st),
            pending=len(pending), running=is_locked(rd.path / lock_name(plan.records(rank))),
            pending_ids=pending,
        ))
    return RunStatus(
        rd.path, plan.to_dict() | {"shards": None}, shards, files, problems,
        ok=sum(s.ok for s in shards), failed=sum(s.failed for s in shards), pending=sum(s.pending for s in shards),
        fatal=fatal, damaged=_damaged(rd.problems, by_id, sum(s.pending for s in shards)),
    )


def _damaged(problems, by_id: dict[str, Any], pending: int | None) -> list[DamagedLine]:
    """Each damaged line, and whether its sample was redone since: the sample it names has a
    whole record; or, where the line no longer names its sample, no planned sample is pending
    (the harness redoes a sample whose line is damaged, so every sample then has its record)."""
    out = []
    for p in problems:
        sid = p.sample_id
        redone = sid in by_id if sid is not None else pending == 0
        out.append(DamagedLine(str(p), sid, redone))
    return out


def render(status: RunStatus, console: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    plan = status.plan
    if plan:
        head = f"[bold]{status.run_dir}[/]: {plan['world_size']} shard(s), launcher {plan['launcher']}, planned {plan['created_at']}"
        jobs = plan.get("extra", {}).get("job_ids")
        if jobs:
            head += f", jobs {', '.join(map(str, jobs))}"
        console.print(head, highlight=False)
        table = Table()
        for col in ("shard", "record file", "samples", "finished", "failed", "pending", "state"):
            table.add_column(col, justify="right" if col in ("samples", "finished", "failed", "pending") else "left")
        for s in status.shards:
            state = "running" if s.running else ("empty" if s.assigned == 0 else ("done" if s.pending == 0 else "stopped"))
            table.add_row(str(s.shard), s.records, str(s.assigned), str(s.ok), str(s.failed), str(s.pending), state)
        table.add_row("all", "", str(sum(s.assigned for s in status.shards)), str(status.ok), str(status.failed), str(status.pending), "", style="bold")
        console.print(table)
    else:
        console.print(
            f"[bold]{status.run_dir}[/]: {status.ok} finished, {status.failed} failed; no shard plan "
            "(started without the magbench CLI), so pending samples are unknown", highlight=False,
        )
    others = [f for f in status.files if not f.in_plan]
    if others:
        console.print("record files of earlier launches (merged; their samples are not redone):")
        for f in others:
            console.print(f"  {f.name}: {f.records} records" + (" [running]" if f.running else ""), highlight=False)
    for d in status.damaged:
        name = f" ({d.sample_id})" if d.sample_id else ""
        if d.redone:
            console.print(f"[dim]damaged record line{name}, redone since:[/] {escape(d.where)}", highlight=False)
        else:
            console.print(f"[yellow]damaged record line{name}, that sample will be redone:[/] {escape(d.where)}", highlight=False)
    if status.fatal:
        at = status.fatal.get("at")
        console.print(
            f"[red]the run stopped{f' at {at}' if at else ''}:[/] {escape(fatal_line(status.fatal))} "
            f"(traceback in {status.run_dir / FATAL})",
            highlight=False, soft_wrap=True,
        )
        console.print("fix that cause first, or the same command may stop the same way; finished samples are kept", highlight=False)
    if status.pending:
        again = "once the cause above is fixed, " if status.fatal else ""
        console.print(f"{status.pending} samples pending: {again}run the same command again to finish them", highlight=False)
