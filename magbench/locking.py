"""Locks of a run folder: the one lock implementation of magbench (flock).

Two locks, one mechanism:

* the record-file lock (``RUN/.samples*.jsonl.lock``, :func:`record_lock`): held by the process
  appending to that record file, so two writers never mix in one file;
* the run lock (``RUN/.run.lock``, :func:`run_lock`): one launching invocation per run folder,
  which keeps a one-process run and a sharded run (they write different files) from working on
  the same samples at once:

* an invocation that covers the whole run (a plain run, a torchrun launch) holds it exclusively;
* independent shards of one launch (SLURM array tasks, ``--shard K``) hold it shared, so they
  run side by side but never beside a whole-run invocation.

A launcher that starts the ranks itself (``--gpus N``) holds the exclusive lock and hands a token
to its children through ``MAGBENCH_RUN_LOCK_TOKEN``; rank 0 accepts a lock held under that token
as its own.

flock needs a file system that supports it (local disks, NFSv4; Lustre with ``-o flock``).
Where it does not, one policy for both locks: the run goes on, with one warning saying that
concurrent invocations will not be detected.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import Iterator

from magbench.errors import MagbenchError
from magbench.store import lock_name, writing

log = logging.getLogger("magbench")

RUN_LOCK = ".run.lock"
TOKEN_ENV = "MAGBENCH_RUN_LOCK_TOKEN"


def _busy(run_path: Path, holder: str) -> MagbenchError:
    return MagbenchError(
        f"{run_path} is being written by another magbench process ({holder}); "
        "wait for it (see `magbench status`) or use another --out"
    )


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except ValueError:
        return {}


def _flock(fd: int, path: Path, shared: bool) -> bool:
    """Take the lock without blocking: False if another process holds it; True if taken, or if
    the file system cannot lock (warned once per path)."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:  # no flock on this file system: say so, do not refuse the run
        if str(path) not in _UNLOCKABLE:
            _UNLOCKABLE.add(str(path))
            log.warning("%s: cannot lock (%s); concurrent invocations will not be detected", path, exc)
    return True


_UNLOCKABLE: set[str] = set()


def _open(path: Path) -> int:
    with writing(path):  # a read-only or full disk: one line naming the folder and the fix
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask decides, as for any file


def _write_holder(fd: int, token: str | None = None) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "token": token}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)


@contextlib.contextmanager
def run_lock(run_path: Path, shared: bool = False, token: str | None = None) -> Iterator[None]:
    """Hold the run lock of ``run_path`` (creating the folder) or fail at once if it is taken.

    ``token``: written into the lock file by an exclusive holder so that the processes it starts
    can recognise the lock as their launcher's (see :func:`held_by_launcher`).
    """
    run_path = Path(run_path)
    fd = _open(run_path / RUN_LOCK)
    try:
        if not _flock(fd, run_path / RUN_LOCK, shared):
            h = _read_holder(fd)
            what = f"pid {h.get('pid', '?')} on {h.get('host', '?')}" if h else "shards of another launch"
            raise _busy(run_path, what)
        if not shared:
            _write_holder(fd, token)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def record_lock(run_path: Path, records: str) -> Iterator[None]:
    """Hold the lock of record file ``records`` of ``run_path``: one writer per record file."""
    path = Path(run_path) / lock_name(records)
    fd = _open(path)
    try:
        if not _flock(fd, path, shared=False):
            h = _read_holder(fd)
            raise _busy(Path(run_path), f"pid {h.get('pid', '?')} on {h.get('host', '?')}")
        _write_holder(fd)
        yield
    finally:
        os.close(fd)


def holder_pid(run_path: Path, records: str) -> int | None:
    """The pid written by the process holding (or that last held) the lock of ``records``."""
    try:
        fd = os.open(Path(run_path) / lock_name(records), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        pid = _read_holder(fd).get("pid")
        return int(pid) if pid is not None else None
    finally:
        os.close(fd)


@contextlib.contextmanager
def rank0_run_lock(run_path: Path) -> Iterator[None]:
    """The exclusive lock for rank 0 of a torchrun launch: taken here, or already held by the
    ``magbench run --gpus N`` process that started us (same token)."""
    token = os.environ.get(TOKEN_ENV)
    if token and held_by_launcher(run_path, token):
        yield
        return
    with run_lock(run_path):
        yield


def held_by_launcher(run_path: Path, token: str) -> bool:
    path = Path(run_path) / RUN_LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return _read_holder(fd).get("token") == token and is_locked(path)
    finally:
        os.close(fd)


def is_locked(path: Path) -> bool:
    """Whether some process holds an exclusive flock on ``path`` now.

    Probes with a shared lock, released at once: the only moment it could get in a writer's way
    is the microsecond it is held.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops a probe lock we may hold
    return False
