"""torchrun: N processes (one per GPU), each a shard.

torch.distributed is used only to find the ranks, to agree on the start (rank 0 takes the run
lock, checks the run folder's configuration and writes the plan; the others wait for its word)
and to know when everyone is done. Records never travel through collectives: each rank appends to
its own file, and rank 0 reads the merged run folder for the final summary.

A rank that fails on a sample records the failure and goes on (the harness does that). A rank that
dies keeps what it finished; under torchrun the agent then stops the others, and re-running the
same command picks up the remaining samples. Rank 0 never waits for a dead rank: on one host it
watches the other ranks' processes rather than sitting in a barrier.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import socket
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from magbench.errors import MagbenchError
from magbench.harness import Harness, RunConfig, RunSummary
from magbench.locking import TOKEN_ENV, rank0_run_lock, run_lock
from magbench.runners.local import prepare, run_shard
from magbench.runners.sharding import ShardPlan

log = logging.getLogger("magbench")

START_TIMEOUT = _dt.timedelta(minutes=30)  # loading models on every rank before the start
# Across hosts rank 0 cannot watch the other ranks' processes and waits in a barrier; shards
# may be hours apart, and a dead rank makes torchrun stop the job anyway.
FINAL_TIMEOUT_MULTI_HOST = _dt.timedelta(days=7)


@dataclass(frozen=True)
class DistEnv:
    """What torchrun (or any launcher setting the same variables) tells a process."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def detect() -> DistEnv | None:
    """The torchrun environment of this process, or None when not started by one."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    try:
        world = int(env["WORLD_SIZE"])
        rank = int(env["RANK"])
        local_rank = int(env.get("LOCAL_RANK", rank))
        local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    except ValueError as exc:
        raise MagbenchError(f"bad torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, local_world_size=local_world)


def rank_device(device: str, local_rank: int, local_world_size: int) -> str:
    """The device of one rank: ``cuda:LOCAL_RANK`` on GPUs, the CPU where asked."""
    if device == "cpu":
        return "cpu"
    if device == "auto" and not torch.cuda.is_available():
        return "cpu"
    if device in ("auto", "cuda"):
        if not torch.cuda.is_available():
            raise MagbenchError("--device cuda: no CUDA device is visible; use --device cpu")
        n = torch.cuda.device_count()
        if local_rank >= n:
            raise MagbenchError(f"local rank {local_rank} needs GPU {local_rank}, but {n} are visible: start at most {n} processes per node")
        return f"cuda:{local_rank}"
    if device.startswith("cuda:") and local_world_size > 1:
        raise MagbenchError(f"--device {device} with {local_world_size} processes per node: each rank uses cuda:LOCAL_RANK; pass --device cuda")
    return device


# -- a rank --------------------------------------------------------------------------------------
def run_rank(
    config: RunConfig, env: DistEnv, progress: bool = True,
    on_harness: Callable[[Harness], None] | None = None,
) -> tuple[RunSummary | None, int]:
    """Run this rank's shard. Rank 0 returns the merged summary of the whole run and the exit
    code (0: every sample has a record; 1: some are left, e.g. a rank died); other ranks return
    (None, code). ``on_harness`` is called on rank 0 once the start is agreed."""
    import torch.distributed as dist

    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast stays off
    device = rank_device(config.device, env.local_rank, env.local_world_size)
    config = replace(config, device=device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=START_TIMEOUT)
    stack = contextlib.ExitStack()
    try:
        # Control messages are small Python objects: a gloo group carries them on GPUs too and,
        # unlike NCCL, never needs GPU memory or a communicator for them.
        control = dist.new_group(backend="gloo", timeout=START_TIMEOUT) if cuda else None
        harness, error = _build(config)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "error": error}
        peers: list[Any] = [None] * env.world_size
        dist.all_gather_object(peers, me, group=control)
        failed = [(r, p["error"]) for r, p in enumerate(peers) if p["error"]]
        if failed:
            if env.rank == 0:
                r, msg = failed[0]
                raise MagbenchError(msg if len(failed) == env.world_size else f"rank {r}: {msg}")
            return None, 2
        assert harness is not None

        decision: dict[str, Any] = {"error": None, "done_before": 0, "ids": []}
        if env.rank == 0:
            decision = _start(harness, env.world_size, stack)
        box = [decision]
        dist.broadcast_object_list(box, src=0, group=control)
        decision = box[0]
        if decision["error"]:
            if env.rank == 0:
                raise MagbenchError(decision["error"])
            return None, 2

        if env.rank == 0 and on_harness:
            on_harness(harness)
        multi_host = len({p["host"] for p in peers}) > 1
        final = dist.new_group(backend="gloo", timeout=FINAL_TIMEOUT_MULTI_HOST) if multi_host else None
        run_shard(harness, env.rank, env.world_size, progress=progress and env.rank == 0)
        if multi_host:
            dist.barrier(group=final)
        elif env.rank == 0:
            _wait_for(p["pid"] for p in peers[1:])
        if env.rank != 0:
            return None, 0
        summary = harness.summary(decision["ids"], decision["done_before"])
        return summary, 0 if summary.ok + summary.failed == summary.total else 1
    finally:
        stack.close()
        dist.destroy_process_group()


def _build(config: RunConfig) -> tuple[Harness | None, str | None]:
    """Build the harness, turning a failure into a message every rank can hear about."""
    try:
        return Harness(config), None
    except MagbenchError as exc:
        return None, str(exc)
    except Exception as exc:  # a crash while loading on one rank must not leave the others waiting
        traceback.print_exc()
        return None, f"{type(exc).__name__}: {exc}"


def _start(harness: Harness, world_size: int, stack: contextlib.ExitStack) -> dict[str, Any]:
    """Rank 0: lock the run (held until rank 0 ends), check or create it, write the plan."""
    try:
        stack.enter_context(rank0_run_lock(harness.run_dir.path))
        ids = [s.sample_id for s in harness.selected_samples()]
        plan = ShardPlan.build(ids, world_size, "torchrun")
        done = prepare(harness, plan)
        if plan.empty_shards():
            log.warning(
                "%d ranks for %d samples: shards %s have nothing to do and finish at once",
                world_size, len(ids), ", ".join(map(str, plan.empty_shards())),
            )
        return {"error": None, "done_before": len(done), "ids": ids}
    except MagbenchError as exc:
        return {"error": str(exc), "done_before": 0, "ids": []}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited rank stays a zombie until torchrun reaps it
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _wait_for(pids) -> None:
    pending = [int(p) for p in pids]
    while pending:
        pending = [p for p in pending if _alive(p)]
        if pending:
            time.sleep(0.2)


# -- the launcher --------------------------------------------------------------------------------
def spawn(config: RunConfig, nproc: int, argv: list[str] | None = None) -> int:
    """``magbench run --gpus N``: start torchrun with N processes running this same command.

    The children see the torchrun environment and run as ranks; this process holds the run lock
    for them and returns torchrun's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "run" not in argv:
        raise MagbenchError("cannot re-launch this command under torchrun: start it as `magbench run ...`")
    if config.device.startswith("cuda") or (config.device == "auto" and torch.cuda.is_available()):
        n = torch.cuda.device_count()
        if nproc > n:
            raise MagbenchError(f"--gpus {nproc}: only {n} GPUs are visible")
    token = uuid.uuid4().hex
    env = dict(os.environ)
    env[TOKEN_ENV] = token
    env["NCCL_NVLS_ENABLE"] = "0"  # NVLink multicast stays off
    # torchrun would pin every rank to one thread; share the cores instead (decoding, resizing).
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "magbench", *argv,
    ]
    with run_lock(config.run_path(), token=token):
        proc = subprocess.Popen(cmd, env=env)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            # The terminal sent SIGINT to torchrun and the ranks too; let them end cleanly.
            return proc.wait()
