"""Tasks: what a run measures. ``magbench run --task NAME`` (default ``magbench-replay``).

A task (:class:`~magbench.tasks.base.Task`) owns its dataset kind, what it asks of the method
(the capabilities it ``requires``), what it scores and its typed part of the record; the harness
(:mod:`magbench.harness`) keeps everything else: sample selection, resume, locks, warm-up,
timing, the store, progress, scale-out and ``magbench score``. Built-in tasks register here;
plugins through the entry-point group ``magbench.tasks`` (a subclass of ``Task``), as methods do.
"""

from __future__ import annotations

from magbench.registry import Registry

TASKS: Registry = Registry(
    "task", "magbench.tasks",
    builtins=("magbench.tasks.replay", "magbench.tasks.recall", "magbench.tasks.reconstruction", "magbench.tasks.long_video"),
    base="magbench.tasks.base:Task",
)
register_task = TASKS.register


def list_tasks(pattern: str | None = None) -> list[str]:
    return TASKS.names(pattern)
