"""Running shards in this process: the building blocks every launcher uses.

A process builds its :class:`~magbench.harness.Harness` once (the method and metric models load
once) and runs its share of the samples into its own record file. Every reader merges all record
files, so the summary of a sharded run is read back from the run folder, not gathered.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from magbench.data import VideoSample
from magbench.harness import Harness, RunConfig, RunSummary, default_run_dir
from magbench.runners.locking import run_lock
from magbench.runners.sharding import ShardPlan, records_name, shard_samples
from magbench.store import RunDir

log = logging.getLogger("magbench")


def run_path(config: RunConfig) -> Path:
    """The run folder ``config`` writes to (what the harness will use)."""
    return Path(config.out or default_run_dir(config.method, config.dataset))


def selected_samples(harness: Harness) -> list[VideoSample]:
    """The samples a whole run covers: the dataset up to ``--limit`` (as ``Harness.run`` does)."""
    limit = harness.config.limit
    return harness.dataset.samples[:limit] if limit else list(harness.dataset.samples)


def done_ids(harness: Harness) -> set[str]:
    """Samples the harness will skip: finished in any record file (failed ones too, unless
    ``--retry-failed``)."""
    return harness.run_dir.done_ids(include_failed=not harness.config.retry_failed)


def prepare(harness: Harness, plan: ShardPlan) -> set[str]:
    """Create the run folder (or check its configuration) and record the plan, before any shard
    starts; returns the ids already finished. Call it with the run lock held."""
    harness.run_dir.init(harness.manifest())
    plan.write(harness.run_dir.path)
    return done_ids(harness) & set(plan.sample_ids)


def run_shard(harness: Harness, rank: int, world_size: int, progress: bool = False) -> RunSummary:
    """Run shard ``rank`` of ``world_size`` into its own record file."""
    mine = shard_samples(selected_samples(harness), rank, world_size)
    return harness.run(samples=mine, records_name=records_name(rank, world_size), progress=progress)


def merged_summary(
    run_dir: Path, sample_ids: Sequence[str], done_before: int, skipped_metrics: dict[str, str]
) -> RunSummary:
    """The summary of a whole run, read from every record file of the run folder."""
    wanted = set(sample_ids)
    recs = [r for r in RunDir(run_dir).records() if r["sample_id"] in wanted]
    return RunSummary(
        run_dir=Path(run_dir),
        total=len(wanted),
        done_before=done_before,
        ok=sum(r.get("status") == "ok" for r in recs),
        failed=sum(r.get("status") != "ok" for r in recs),
        skipped_metrics=skipped_metrics,
        records=recs,
    )


def run_whole(harness: Harness, progress: bool = True) -> RunSummary:
    """A plain one-process run (``--launcher local``), under the exclusive run lock."""
    ids = [s.sample_id for s in selected_samples(harness)]
    with run_lock(harness.run_dir.path):
        prepare(harness, ShardPlan.build(ids, 1, "local"))
        return harness.run(progress=progress)


def run_one_shard(
    harness: Harness, rank: int, world_size: int, launcher: str, progress: bool = True, write_plan: bool = True
) -> RunSummary:
    """One shard of a launch whose other shards run elsewhere (``--shard K``, a SLURM task):
    the run lock is held shared, so the shards run side by side but never beside a whole run.

    ``write_plan``: False where the launcher wrote the plan already (SLURM: the submitter's plan
    also names the job)."""
    with run_lock(harness.run_dir.path, shared=True):
        harness.run_dir.init(harness.manifest())
        if write_plan:
            # Every shard of the launch writes the same plan; whichever write lands last, they agree.
            ids = [s.sample_id for s in selected_samples(harness)]
            ShardPlan.build(ids, world_size, launcher).write(harness.run_dir.path)
        return run_shard(harness, rank, world_size, progress=progress)
