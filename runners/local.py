"""Running in this process: a whole run, or one shard of a launch whose other shards run elsewhere.

A process builds its :class:`~magbench.harness.Harness` once (the method and metric models load
once) and runs its share of the samples into its own record file. Which samples, which are
finished, the record file names and the summary all come from the harness; this module only
takes the run lock and writes the plan.
"""

from __future__ import annotations

from magbench.harness import Harness, RunSummary
from magbench.locking import run_lock
from magbench.runners.sharding import ShardPlan, shard_samples
from magbench.store import RunDir, records_name


def prepare(harness: Harness, plan: ShardPlan) -> set[str]:
    """Create the run folder (or check its configuration) and record the plan, before any shard
    starts; returns the ids already finished. Call it with the run lock held."""
    harness.prepare()
    plan.write(harness.run_dir.path)
    return harness.done_ids() & set(plan.sample_ids)


def run_shard(harness: Harness, rank: int, world_size: int, progress: bool = False) -> RunSummary:
    """Run shard ``rank`` of ``world_size`` into its own record file."""
    mine = shard_samples(harness.selected_samples(), rank, world_size)
    return harness.run(samples=mine, records_file=records_name(rank, world_size), progress=progress)


def run_whole(harness: Harness, progress: bool = True, overwrite: bool = False) -> RunSummary:
    """``magbench run``: the whole run in this process, under the exclusive run lock. A run that
    fails before its first record leaves no folder behind (the error is printed).

    ``overwrite`` (``--overwrite``): first remove what the folder holds of an earlier run (under
    the lock, after the harness checked every option), so the run starts afresh."""
    created = not harness.run_dir.path.exists()
    try:
        with run_lock(harness.run_dir.path):
            if overwrite:
                harness.run_dir.clear()
            prepare(harness, ShardPlan.build([s.sample_id for s in harness.selected_samples()], 1, "local"))
            return harness.run(progress=progress)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        if created:
            harness.run_dir.discard_if_empty()
        raise


def overwrite_before_launch(config, under_torchrun: bool) -> None:
    """``--overwrite`` with scale-out options: clear the run folder once, in the launching
    process, under the exclusive run lock, after the method's options were checked."""
    from magbench.errors import MagbenchError
    from magbench.harness import create_method

    if under_torchrun:
        raise MagbenchError(
            "--overwrite under torchrun would clear the folder once per rank: "
            "give it to `magbench run --gpus N` (or clear the folder) instead"
        )
    create_method(config.method, **config.method_options)  # a bad option must not cost the old results
    with run_lock(config.run_path()):
        RunDir(config.run_path()).clear()


def run_one_shard(
    harness: Harness, rank: int, world_size: int, launcher: str, progress: bool = True, write_plan: bool = True
) -> RunSummary:
    """One shard of a launch whose other shards run elsewhere (``--shard K``, a SLURM task):
    the run lock is held shared, so the shards run side by side but never beside a whole run.

    ``write_plan``: False where the launcher wrote the plan already (SLURM: the submitter's plan
    also names the job)."""
    with run_lock(harness.run_dir.path, shared=True):
        harness.prepare()
        if write_plan:
            # Every shard of the launch writes the same plan; whichever write lands last, they agree.
            ids = [s.sample_id for s in harness.selected_samples()]
            ShardPlan.build(ids, world_size, launcher).write(harness.run_dir.path)
        return run_shard(harness, rank, world_size, progress=progress)
