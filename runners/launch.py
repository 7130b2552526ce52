"""What ``magbench run`` does with its scale-out options: a torchrun rank, a torchrun launch, one
shard, or a SLURM array. (A plain run, none of these, goes straight to
:func:`magbench.runners.local.run_whole`.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from magbench.errors import MagbenchError
from magbench.harness import Harness, RunConfig, RunSummary

LAUNCHERS = ("local", "torchrun", "slurm")


@dataclass
class LaunchOptions:
    launcher: str = "local"
    shards: int | None = None  # torchrun: processes; slurm: array tasks; local: with `shard`
    gpus: int | None = None  # torchrun with one process per GPU
    shard: int | None = None  # local: run only this shard of `shards`
    partition: str | None = None
    time: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    slurm: dict[str, Any] = field(default_factory=dict)  # --slurm KEY=VALUE, parsed
    submitit_cluster: str = "slurm"
    dry_run: bool = False
    wait: bool = False


@dataclass
class LaunchResult:
    summary: RunSummary | None  # to print (None: someone else printed it, or nothing ran)
    exit_code: int = 0
    message: str | None = None  # to print first (dry run, submitted jobs)


def launch(
    config: RunConfig, opts: LaunchOptions, progress: bool = True,
    on_harness: Callable[[Harness], None] | None = None,
) -> LaunchResult:
    """Run ``config`` the way ``opts`` says. ``on_harness`` sees the harness of the process that
    reports (to warn about skipped metrics before the work starts)."""
    from magbench.runners import distributed

    if opts.launcher not in LAUNCHERS:
        raise MagbenchError(f"--launcher {opts.launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    for name in ("shards", "gpus"):
        v = getattr(opts, name)
        if v is not None and v < 1:
            raise MagbenchError(f"--{name} {v}: must be at least 1")
    if opts.launcher != "slurm" and (opts.dry_run or opts.wait):
        raise MagbenchError("--dry-run and --wait are for --launcher slurm")

    env = distributed.detect()
    if env is not None and opts.launcher == "slurm":
        raise MagbenchError("--launcher slurm under torchrun would submit once per rank: submit from a plain shell")
    if env is not None:
        return _as_rank(config, opts, env, progress, on_harness)
    if opts.launcher == "slurm":
        return _slurm(config, opts)
    if opts.launcher == "torchrun" or opts.gpus is not None:
        return _spawn(config, opts)
    if opts.shard is not None:
        return _one_shard(config, opts, progress, on_harness)
    if opts.shards is not None:
        raise MagbenchError(
            "--shards N with --launcher local: add --shard K to run shard K here, or use "
            "--launcher torchrun / --launcher slurm to run them all"
        )
    from magbench.runners.local import run_whole

    harness = Harness(config)  # --launcher local given explicitly: the plain run
    if on_harness:
        on_harness(harness)
    return LaunchResult(run_whole(harness, progress=progress))


def _as_rank(config, opts, env, progress, on_harness) -> LaunchResult:
    from magbench.runners.distributed import run_rank

    n = opts.gpus or opts.shards
    if n is not None and n != env.world_size:
        raise MagbenchError(f"--gpus/--shards {n}, but torchrun started {env.world_size} processes")
    if opts.shard is not None:
        raise MagbenchError("--shard K runs one shard in one process; under torchrun each rank runs its own")
    summary, code = run_rank(config, env, progress=progress, on_harness=on_harness)
    return LaunchResult(summary, code)


def _spawn(config: RunConfig, opts: LaunchOptions) -> LaunchResult:
    import torch

    from magbench.runners.distributed import spawn

    if opts.shard is not None:
        raise MagbenchError("--shard K is for --launcher local (one shard in this process)")
    if opts.gpus is not None and opts.shards is not None and opts.gpus != opts.shards:
        raise MagbenchError(f"--gpus {opts.gpus} and --shards {opts.shards}: give one of them")
    nproc = opts.gpus or opts.shards
    if nproc is None:
        raise MagbenchError(
            "--launcher torchrun: give --gpus N (one process per GPU) or --shards N, "
            "or start the command under torchrun yourself"
        )
    if opts.gpus is not None and (config.device == "cpu" or not torch.cuda.is_available()):
        raise MagbenchError(
            f"--gpus {opts.gpus}: no CUDA device is visible; for N CPU processes use "
            "--launcher torchrun --shards N --device cpu"
        )
    return LaunchResult(None, spawn(config, nproc))


def _one_shard(config, opts, progress, on_harness) -> LaunchResult:
    from magbench.runners.local import run_one_shard

    if opts.shards is None:
        raise MagbenchError("--shard K needs --shards N (the number of shards)")
    if not 0 <= opts.shard < opts.shards:
        raise MagbenchError(f"--shard {opts.shard}: must be in [0, {opts.shards})")
    harness = Harness(config)
    if on_harness:
        on_harness(harness)
    return LaunchResult(run_one_shard(harness, opts.shard, opts.shards, "shard", progress=progress))


def _slurm(config: RunConfig, opts: LaunchOptions) -> LaunchResult:
    try:
        from magbench.runners import slurm
    except ImportError as exc:
        raise MagbenchError(f"--launcher slurm needs submitit: pip install 'magbench[slurm]' ({exc})") from None
    if opts.gpus is not None:
        raise MagbenchError("--gpus is for torchrun; with --launcher slurm use --shards N and --gpus-per-task")
    if opts.shard is not None:
        raise MagbenchError("--shard K is for --launcher local; with --launcher slurm every shard is a task")
    if opts.shards is None:
        raise MagbenchError("--launcher slurm: give --shards N (the number of array tasks)")
    sopts = slurm.SlurmOptions(
        shards=opts.shards, partition=opts.partition, time=opts.time or slurm.DEFAULT_TIME,
        gpus_per_task=opts.gpus_per_task, cpus_per_task=opts.cpus_per_task, mem_gb=opts.mem_gb,
        extra=dict(opts.slurm), cluster=opts.submitit_cluster,
    )
    if opts.dry_run:
        return LaunchResult(None, 0, slurm.dry_run(config, sopts))
    plan, done = slurm.plan_launch(config, opts.shards)
    sub = slurm.submit(config, sopts)
    if not sub.jobs:
        return LaunchResult(None, 0, f"nothing to submit: all {len(plan.sample_ids)} samples are finished")
    msg = (
        f"submitted {len(sub.jobs)} task(s) for shards {sub.shards} of {opts.shards}: "
        f"job {', '.join(str(j.job_id) for j in sub.jobs)}; follow with `magbench status {config.run_path()}`"
    )
    if not opts.wait:
        return LaunchResult(None, 0, msg)
    summary, errors = slurm.wait(sub, config, done_before=len(done))
    for e in errors:
        msg += f"\nfailed task: {e}"
    complete = summary.ok + summary.failed == summary.total
    return LaunchResult(summary, 0 if complete and not errors else 1, msg)
