"""The task contract, in the spirit of lm-evaluation-harness's ``Task``.

A task says what one sample is (:meth:`Task.run_sample`: which frames the method sees, which
method calls are made and timed, what is scored) and what its record adds (``Part``, a typed
:class:`~magbench.record.TaskPart`). The harness hands it a :class:`~magbench.harness.Harness`
(the method, the metrics, the device, the clock and stage hook, the run folder) and a fresh
:class:`~magbench.record.SampleRecord`, and does the rest: selection, resume, locks, warm-up,
the store, progress, scale-out.

A complete task::

    @register_task("my-task")
    class MyTask(Task):
        description = "What it measures, in one line."
        requires = frozenset({"recall"})          # Method.capabilities() it needs
        Part = MyPart                             # its typed fields of the record

        def run_sample(self, harness, sample, record):
            ...                                   # fill record.metrics, record.part, ...
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from magbench.errors import MagbenchError
from magbench.options import MethodOptions
from magbench.record import SampleRecord, TaskPart

if TYPE_CHECKING:  # pragma: no cover
    from magbench.data import Dataset, VideoSample
    from magbench.harness import Harness, RunConfig
    from magbench.method import Method


class Task(ABC):
    """Base class of every task. ``name`` is set by the registry.

    ``requires``: method capabilities (see :meth:`Method.capabilities`) a method must have;
    ``default_dataset``: the dataset spec used when ``--dataset`` is not given; ``Part``: the
    task's typed part of each record; ``Options``: the task's own options (``--task-opt``, or
    the CLI flags that map onto them), a :class:`~magbench.options.MethodOptions` declaration.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset({"replay"})
    default_dataset: ClassVar[str] = "synthetic"
    Part: ClassVar[type[TaskPart] | None] = None
    Options: ClassVar[type[MethodOptions] | None] = None
    # What the task's records are ranked by when nothing says otherwise (a metric key).
    primary_metric: ClassVar[str | None] = None
    # Direction and best value of the metric keys the task itself writes (beside its metrics'),
    # for the manifest's ``key_info`` (leaderboards, reports).
    key_info: ClassVar[dict[str, dict[str, Any]]] = {}
    # The metrics run when --metrics is not given (None: the metrics marked ``default``).
    default_metrics: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, config: "RunConfig") -> None:
        self.config = config
        opts_cls = type(self).Options
        given = dict(config.task_options)
        if opts_cls is None:
            if given:
                raise MagbenchError(
                    f"task {self.name!r} takes no options (given: {', '.join(sorted(given))}); leave them out"
                )
            self.opts: Any = None
        else:
            self.opts = opts_cls.build(given, owner=f"task {self.name!r}")

    # -- what a run of this task is ------------------------------------------------------------
    def needs(self, config: "RunConfig") -> frozenset[str]:
        """The capabilities this run needs (may depend on the run's settings)."""
        return self.requires

    def check_method(self, method: "Method") -> None:
        """Refuse, in one line, a method lacking a capability this run needs (before any work)."""
        have = type(method).capabilities()
        missing = sorted(self.needs(self.config) - have)
        if missing:
            raise MagbenchError(
                f"method {method.name!r} cannot run task {self.name!r}: it lacks {', '.join(missing)} "
                f"({capability_fix(missing[0])}); list what each task needs with `magbench tasks`"
            )

    def check_dataset(self, dataset: "Dataset") -> None:
        """Refuse a dataset this task cannot use (one line)."""

    @classmethod
    def prepare_dataset(cls, config: "RunConfig", dataset: Any) -> Any:
        """The samples this run covers, from the loaded dataset (a prompt set expanded to several
        samples per prompt, say). Called wherever a run's scope is built, harness or launcher."""
        return dataset

    def metric_options(self, given: dict[str, dict[str, Any]], method: "Method") -> dict[str, dict[str, Any]]:
        """The metric options the run uses, from ``--metric-opt`` (a task may add its own)."""
        return given

    def manifest_key_info(self, metrics_info: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The manifest's ``key_info``: the metrics' keys as this task writes them, then its own."""
        return {**metrics_info, **self.key_info}

    def identity(self) -> dict[str, Any]:
        """The task's part of the run's identity (a change means a different run)."""
        return {"name": self.name, "options": self.opts.to_dict() if self.opts is not None else {}}

    def protocol_id(self) -> str:
        """A short id of what was measured and how: leaderboards never pool different ids."""
        return self.name

    def describe(self) -> dict[str, Any]:
        """For the manifest."""
        return {"name": self.name, "description": self.description, "requires": sorted(self.needs(self.config)),
                "protocol": self.protocol_id(), **self.identity()}

    # -- one sample -----------------------------------------------------------------------------
    def new_record(self, sample: "VideoSample") -> SampleRecord:
        return SampleRecord(
            sample_id=sample.sample_id, task=self.name, caption=sample.caption,
            video_path=str(sample.video_path) if getattr(sample, "video_path", None) is not None else None,
            part=self.Part() if self.Part is not None else None,
        )

    @abstractmethod
    def run_sample(self, harness: "Harness", sample: "VideoSample", record: SampleRecord) -> None:
        """Run ``sample`` through ``harness.method`` and fill ``record`` (status is set to "ok"
        by the harness when this returns; raise to fail the sample, naming what went wrong)."""

    # A task may split its sample into three phases, which the pipelined harness overlaps with
    # the neighbouring samples' (``RunConfig.pipeline``): ``prepare`` (sample k+1, a reader
    # thread) and the step ``execute`` returns (sample k-1, a writer thread) while sample k's
    # ``execute`` runs on the main thread. The phases of one sample run in order, and records
    # are written in the samples' order. A task that does not split runs whole in ``execute``.
    def prepare(self, harness: "Harness", sample: "VideoSample", record: SampleRecord) -> Any:
        """CPU-only work before the method runs (read, decode, check, resize the video); its
        result goes to :meth:`execute`. May run on a worker thread while another sample
        generates: it must not touch the method's state, the device or the global RNGs."""
        return None

    def execute(
        self, harness: "Harness", sample: "VideoSample", record: SampleRecord, prepared: Any
    ) -> "Callable[[], None] | None":
        """The method's calls and any device work (main thread). Returns the sample's CPU-only
        rest (scoring on the CPU, writing frames and previews) to run after it, possibly on a
        writer thread while the next sample generates, or None. Default: :meth:`run_sample`."""
        self.run_sample(harness, sample, record)
        return None

    def warm_up(self, harness: "Harness", sample: "VideoSample") -> None:
        """Untimed, unscored: make the method ready (compile, autotune) on a short version of
        ``sample``. Called only for methods without their own ``warmup`` hook."""
        raise NotImplementedError

    # -- reports ----------------------------------------------------------------------------------
    def scores(self) -> str:
        """What it scores, for `magbench tasks`."""
        return ""


CAPABILITY_FIXES = {
    "ground-truth-memory": "implement Method.remember_ground_truth, or use --memory-source generated",
    "recall": "implement Method.recall",
    "reconstruct": "implement Method.reconstruct",
    "text-to-video": "set Method.text_to_video once generate() works without memorize()",
}


def capability_fix(cap: str) -> str:
    return CAPABILITY_FIXES.get(cap, f"the capability {cap!r}")
