"""SLURM through submitit: one array task per shard.

The submitting process only lists the samples (no models load on the login node) and writes the
plan; each array task builds its harness on its node and runs its shard into its own record file.
Only shards with samples left are submitted, so re-submitting after a partial run costs nothing
for finished shards.

A task is a submitit ``Checkpointable``: its checkpoint is the records already on disk, so on
preemption or at its time limit submitit requeues the same call and the task re-runs its shard,
skipping what it finished. The same code runs on submitit's local executor (real processes, no
SLURM), which the tests and a workstation use (``--submitit-cluster local``).
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable

from magbench.errors import MagbenchError
from magbench.harness import Harness, RunConfig, RunScope, RunSummary
from magbench.locking import run_lock
from magbench.runners.local import run_one_shard
from magbench.runners.sharding import ShardPlan
from magbench.scoring import select_metrics
from magbench.store import records_name

log = logging.getLogger("magbench")

DEFAULT_TIME = "4:00:00"


@dataclass
class SlurmOptions:
    """What the command line says about the array job."""

    shards: int
    partition: str | None = None
    time: str = DEFAULT_TIME
    gpus_per_task: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # --slurm KEY=VALUE
    cluster: str = "slurm"  # "slurm" or "local" (submitit's local executor)


def parse_time(text: str) -> int:
    """sbatch's --time formats (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]``) in whole
    minutes, rounded up (submitit wants minutes)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise MagbenchError(f"--time {text!r}: expected minutes, HH:MM:SS or D-HH:MM:SS")
    days, a, b, c = (int(g) if g else None for g in m.groups())
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:
        seconds = a * 60
    if seconds <= 0:
        raise MagbenchError(f"--time {text!r}: must be positive")
    return -(-seconds // 60)


def slurm_parameters(opts: SlurmOptions, job_name: str) -> dict[str, Any]:
    """Parameters of submitit's SlurmExecutor (its names; they become #SBATCH lines)."""
    from submitit.slurm.slurm import _get_default_parameters

    params: dict[str, Any] = {
        "job_name": job_name,
        "time": parse_time(opts.time),
        "nodes": 1,
        "ntasks_per_node": 1,
        # Time to requeue before SLURM's kill at the time limit; the checkpoint is already on disk.
        "signal_delay_s": 120,
    }
    if opts.partition:
        params["partition"] = opts.partition
    if opts.gpus_per_task:
        params["gpus_per_task"] = opts.gpus_per_task
    if opts.cpus_per_task:
        params["cpus_per_task"] = opts.cpus_per_task
    if opts.mem_gb:
        params["mem"] = f"{opts.mem_gb:g}GB"
    known = set(_get_default_parameters())
    extra: dict[str, Any] = {}
    for key, value in opts.extra.items():
        name = key.replace("-", "_")
        if name in ("array", "output", "error", "ntasks", "ntasks_per_node", "nodes"):
            raise MagbenchError(f"--slurm {key}=...: magbench sets it (one task per shard, one node)")
        if name in known:
            params[name] = value
        else:
            extra[key] = value  # sbatch flags submitit does not know: passed through as they are
    if extra:
        params["additional_parameters"] = extra
    return params


def plan_launch(config: RunConfig, shards: int) -> tuple[ShardPlan, set[str]]:
    """The plan and the ids already finished, without loading any model."""
    from magbench.harness import method_class

    if shards < 1:
        raise MagbenchError(f"--shards {shards}: must be at least 1")
    method_class(config.method)  # unknown names fail here, before anything is submitted
    select_metrics(config.metrics)
    scope = RunScope(config)
    plan = ShardPlan.build([s.sample_id for s in scope.selected_samples()], shards, "slurm")
    return plan, scope.done_ids() & set(plan.sample_ids)


def pending_shards(plan: ShardPlan, done: set[str]) -> list[int]:
    return [r for r, ids in enumerate(plan.shards) if any(i not in done for i in ids)]


class ShardTask(Checkpointable):
    """The function an array task runs: shard ``rank`` of the run.

    On preemption or at the time limit, ``Checkpointable.checkpoint`` resubmits the same call: the
    records written so far are the checkpoint, so the requeued task re-runs its shard and skips
    them."""

    def __init__(self, config: RunConfig, world_size: int) -> None:
        self.config = config
        self.world_size = world_size

    def __call__(self, rank: int) -> dict[str, Any]:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        harness = Harness(self.config)  # not kept on self: a checkpoint pickles self
        s = run_one_shard(harness, rank, self.world_size, "slurm", progress=False, write_plan=False)
        return {"shard": rank, "total": s.total, "ok": s.ok, "failed": s.failed, "done_before": s.done_before}


def _absolute(config: RunConfig) -> RunConfig:
    # Tasks may start elsewhere than the submitter's folder; pin the run folder.
    from dataclasses import replace

    return replace(config, out=config.run_path().resolve())


def log_folder(run: Path) -> Path:
    return run.resolve() / "slurm" / "%j"


def make_executor(opts: SlurmOptions, run: Path, job_name: str) -> Any:
    import submitit

    folder = log_folder(run)
    if opts.cluster == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(
            timeout_min=parse_time(opts.time), gpus_per_node=opts.gpus_per_task, tasks_per_node=1,
        )
        return ex
    if opts.cluster != "slurm":
        raise MagbenchError(f"--submitit-cluster {opts.cluster!r}: choose slurm or local")
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise MagbenchError("--launcher slurm: no sbatch/srun here; run it on the cluster's login node, or see what it would submit with --dry-run")
    ex = submitit.SlurmExecutor(folder=folder)
    ex.update_parameters(**slurm_parameters(opts, job_name))
    return ex


@dataclass
class Submission:
    plan: ShardPlan
    shards: list[int]  # the submitted ones, in array order
    jobs: list[Any]


def submit(config: RunConfig, opts: SlurmOptions) -> Submission:
    """Write the plan and submit one task per shard with samples left."""
    config = _absolute(config)
    run = Path(config.out)
    plan, done = plan_launch(config, opts.shards)
    todo = pending_shards(plan, done)
    if not todo:
        return Submission(plan, [], [])
    job_name = f"magbench-{run.name}"
    executor = make_executor(opts, run, job_name)
    # A whole-run invocation working on this folder now would collide with the tasks: refuse.
    with run_lock(run):
        plan.extra.update(cluster=opts.cluster, submitted_shards=todo)
        plan.write(run)
    jobs = executor.map_array(ShardTask(config, opts.shards), todo)
    plan.extra["job_ids"] = [j.job_id for j in jobs]
    plan.write(run)
    return Submission(plan, todo, jobs)


def wait(sub: Submission, config: RunConfig, done_before: int = 0) -> tuple[RunSummary, list[str]]:
    """Wait for the tasks; the merged summary and one message per task that failed."""
    errors = []
    for rank, job in zip(sub.shards, sub.jobs):
        try:
            job.result()
        except Exception as exc:  # submitit raises with the task's traceback in the message
            errors.append(f"shard {rank} (job {job.job_id}): {str(exc).strip().splitlines()[-1]}")
    summary = RunScope(_absolute(config)).summary(sub.plan.sample_ids, done_before)
    return summary, errors


def dry_run(config: RunConfig, opts: SlurmOptions) -> str:
    """What ``submit`` would do: shards, their samples and record files, and the sbatch script."""
    from submitit.slurm.slurm import _make_sbatch_string

    config = _absolute(config)
    run = Path(config.out)
    plan, done = plan_launch(config, opts.shards)
    todo = pending_shards(plan, done)
    lines = [
        "dry run: nothing is submitted or written",
        f"run folder: {run}",
        f"samples: {len(plan.sample_ids)} ({len(done)} finished), shards: {opts.shards}, "
        f"array tasks: {len(todo)} (shards with samples left)",
    ]
    for r, ids in enumerate(plan.shards):
        left = [i for i in ids if i not in done]
        state = "submit" if r in todo else ("empty" if not ids else "finished")
        shown = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
        lines.append(f"  shard {r}: {len(ids)} samples, {len(left)} left -> {records_name(r, opts.shards)} [{state}] {shown}")
    if todo:
        params = slurm_parameters(opts, f"magbench-{run.name}")
        folder = log_folder(run)
        python = shlex.quote(sys.executable)
        command = f"{python} -u -m submitit.core._submit {shlex.quote(str(folder))}"
        script = _make_sbatch_string(command=command, folder=folder, map_count=len(todo), **params)
        lines.append(f"array index i runs shard {todo}[i]")
        lines.append("sbatch script:")
        lines.extend("  " + ln for ln in script.splitlines())
    return "\n".join(lines)
