"""The harness: one method, one task, a dataset, into a run folder.

Per sample the task (:mod:`magbench.tasks`; default ``magbench-replay``: split by the replay
protocol, ``reset`` -> ``memorize(context)`` -> ``generate(len(target))``, every method call
timed, device-synchronised: :mod:`magbench.instrument`; score: :mod:`magbench.scoring`) fills
one typed record (:mod:`magbench.record`), which the harness appends (:mod:`magbench.store`). A failure in one sample (bad video, exception, out of memory, NaN output,
unscorable frames) is recorded as that sample's failure and the run goes on; a failure of the run
itself (the method cannot load, say) is recorded in ``RUN/fatal.json``.

The :class:`Harness` owns the run's scope: which samples (``--limit``), which are finished
(:meth:`Harness.done_ids`), the record and lock files, the summary, the default run folder.
Launchers (``runners/``) and the CLI call it and keep no copies.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import logging
import sys
import threading
import time
import traceback
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

import magbench
from magbench.data import Dataset, VideoSample, load_dataset
from magbench.determinism import configure as configure_determinism
from magbench.environment import git_commit, hardware, package_versions
from magbench.errors import MagbenchError, MissingWeightsError, SampleError, StorageError
from magbench.hub import ARTIFACTS, resolved_commits
from magbench.instrument import Clock, StageHook, allocated_bytes
from magbench.locking import record_lock
from magbench.method import Method
from magbench.options import OptionError
from magbench.protocol import ReplayProtocol
from magbench.record import SampleRecord
from magbench.registry import METHODS
from magbench.scoring import create_metrics, select_metrics
from magbench.store import RecordWriter, RunDir, records_name, safe_name
from magbench.tasks import TASKS
from magbench.tasks.base import Task

log = logging.getLogger("magbench")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Optional packages -> the extra that installs them (a missing one is a one-line error).
EXTRAS = {
    "diffusers": "wan", "transformers": "wan", "sentencepiece": "wan", "accelerate": "wan",
    "timm": "consistency", "open_clip": "consistency", "submitit": "slurm", "flash_attn": "flash",
    "decord": "decord",
}
WARMUP_TRIES = 8  # samples the warm-up tries before the run goes on cold (each failure is that sample's)
WARMUP = ("each process: one untimed, unscored short sample (one block of the first of its samples that runs, "
          f"trying up to {WARMUP_TRIES}), or the method's warmup(); each record's timing.warmup and warmup_sample say which ran")
DEFAULT_TASK = "magbench-replay"


@dataclass
class RunConfig:
    method: str
    dataset: str = "synthetic"
    out: Path | None = None
    method_options: dict[str, Any] = field(default_factory=dict)
    metrics: list[str] | None = None  # None: the default set; ["all"]: every registered metric
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    limit: int | None = None
    device: str = "auto"
    dtype: str | None = None  # None: float32 on CPU, bfloat16 on CUDA
    seed: int = 0
    save_videos: bool = False
    keep_frames: bool = True  # RUN/frames/ID.npz: what `magbench score` needs
    protocol: ReplayProtocol = field(default_factory=ReplayProtocol)
    retry_failed: bool = False
    task: str = DEFAULT_TASK
    task_options: dict[str, Any] = field(default_factory=dict)  # typed by the task's Options
    # Read sample k+1 and write sample k-1 on worker threads while sample k generates (same
    # records, in the same order: tests/test_pipeline.py); False: one sample after another.
    pipeline: bool = True

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise MagbenchError("--device cuda: no CUDA device is visible; use --device cpu")
        return self.device

    def resolved_dtype(self, device: str) -> str:
        if self.dtype is None:
            return "bfloat16" if device.startswith("cuda") else "float32"
        if self.dtype not in DTYPES:
            raise MagbenchError(f"--dtype {self.dtype}: choose one of {', '.join(DTYPES)}")
        return self.dtype

    def run_path(self) -> Path:
        """The run folder: ``--out``, or ``runs/METHOD__DATASET`` (``runs/METHOD__DATASET__TASK``
        for a task other than the default)."""
        return Path(self.out) if self.out else default_run_dir(self.method, self.dataset, self.task)


def default_run_dir(method: str, dataset: str, task: str = DEFAULT_TASK) -> Path:
    suffix = "" if task == DEFAULT_TASK else f"__{safe_name(task)}"
    return Path("runs") / f"{safe_name(method)}__{safe_name(dataset)}{suffix}"


def create_task(config: RunConfig) -> Task:
    """The run's task, its options checked (one line naming a bad one)."""
    cls = TASKS.get(config.task)
    return cls(config)


def sample_seed(base: int, sample_id: str) -> int:
    """Independent of order and sharding: the same sample always gets the same seed."""
    return (base * 1_000_003 + zlib.crc32(sample_id.encode())) % (2**31 - 1)


def method_class(name: str) -> type[Method]:
    """The Method subclass ``--method NAME`` names: registered, ``package.module:Class``, or
    ``videos:DIR`` (videos made elsewhere, magbench/baselines/videos.py)."""
    if name.startswith("videos:"):
        name = "videos"
    return METHODS.get(name)  # a registered Method subclass, named by the registry


def create_method(name: str, **options: Any) -> Method:
    cls = method_class(name)
    if name.startswith("videos:"):
        options = {**options, "dir": name[len("videos:"):]}
    try:
        return cls(**options)
    except OptionError:
        raise  # already one line naming the option, the value and what is allowed
    except TypeError as exc:
        raise MagbenchError(f"method {name!r}: bad options {options}: {exc}") from exc


def load_method(config: RunConfig, method: Method | None = None) -> Method:
    """``config``'s method (or ``method``, an instance of it) loaded on its device and dtype,
    as a run loads it (the run's seed first: random weights are the same in every process)."""
    method = method if method is not None else create_method(config.method, **config.method_options)
    device = config.resolved_device()
    torch.manual_seed(config.seed)
    try:
        method.load(device, DTYPES[config.resolved_dtype(device)])
    except ModuleNotFoundError as exc:
        raise missing_package_error(f"method {config.method!r}", exc) from None
    return method


def fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def missing_package_error(what: str, exc: ModuleNotFoundError) -> MagbenchError:
    module = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(module)
    fix = f"pip install -e '.[{extra}]'" if extra else f"pip install {module}"
    return MagbenchError(f"{what} needs the Python package {module!r}, which is not installed: {fix}")


# -- the run -------------------------------------------------------------------------------------
@dataclass
class RunSummary:
    run_dir: Path
    total: int
    done_before: int
    ok: int
    failed: int
    skipped_metrics: dict[str, str]
    records: list[SampleRecord]
    warmup: dict[str, Any] | None = None  # this process's warm-up (None: nothing ran here)


class RunScope:
    """What a run covers, without loading any model: its samples (the dataset up to
    ``--limit``), its folder, which samples are finished and its summary. The harness, every
    launcher and the SLURM submitter use this one definition."""

    def __init__(self, config: RunConfig, dataset: Dataset | None = None) -> None:
        self.config = config
        loaded = dataset if dataset is not None else load_dataset(config.dataset)
        self.dataset = TASKS.get(config.task).prepare_dataset(config, loaded)
        self.run_dir = RunDir(config.run_path())

    def selected_samples(self) -> list[VideoSample]:
        limit = self.config.limit
        return list(self.dataset.samples[:limit] if limit else self.dataset.samples)

    def done_ids(self) -> set[str]:
        """Samples to skip: finished in any record file of the run folder (failed ones too,
        unless ``--retry-failed``)."""
        if not self.run_dir.path.is_dir():
            return set()
        return self.run_dir.done_ids(include_failed=not self.config.retry_failed)

    def summary(
        self, sample_ids: list[str] | None = None, done_before: int = 0,
        skipped_metrics: dict[str, str] | None = None, warmup: dict[str, Any] | None = None,
    ) -> RunSummary:
        """The summary of ``sample_ids`` (default: the selected samples), read from every record
        file of the run folder: the same for a one-process and a sharded run."""
        ids = [s.sample_id for s in self.selected_samples()] if sample_ids is None else list(sample_ids)
        wanted = set(ids)
        recs = [r for r in self.run_dir.records() if r.sample_id in wanted] if self.run_dir.path.is_dir() else []
        return RunSummary(
            run_dir=self.run_dir.path, total=len(wanted), done_before=done_before,
            ok=sum(r.ok for r in recs), failed=sum(not r.ok for r in recs),
            skipped_metrics=dict(skipped_metrics or {}), records=recs, warmup=warmup,
        )


class Harness:
    """Runs one method over a dataset into a run folder. Build it once per process.

    ``clock`` (default ``time.perf_counter``) times the method's calls; tests inject a fake one.
    ``stage_hook(stage, seconds)`` is told the time of each stage as it happens: the method's
    calls (:data:`magbench.instrument.METHOD_STAGES`) and the harness's own ``load``,
    ``warmup``, ``input`` (video decode, split, resize), ``score``, ``save`` and ``sample``
    (from the sample's first step to its record). Benchmarks use it instead of patching the
    harness. With the pipeline (``RunConfig.pipeline``) ``input`` is told from the reader
    thread and ``score``/``save`` (on the CPU) from the writer thread, while another sample's
    method stages are told from this one: the n-th ``input`` (``score``, ``save``) is the n-th
    sample's.

    ``method``: a method already loaded (:func:`load_method`) for this configuration's method
    and options, which this harness uses as it is and leaves open (its caller closes it): one
    load serving several runs, e.g. both memory sources of a method.
    """

    def __init__(
        self, config: RunConfig, *, clock: Clock = time.perf_counter, stage_hook: StageHook | None = None,
        method: Method | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.stage_hook = stage_hook
        self.device = config.resolved_device()
        self.dtype_name = config.resolved_dtype(self.device)
        self.task = create_task(config)
        fresh = create_method(config.method, **config.method_options)
        if method is not None and (type(method) is not type(fresh) or method.config() != fresh.config()):
            raise MagbenchError(
                f"Harness(method=...): the method given is {method.config()}, the configuration's is {fresh.config()}; "
                "load the configuration's method (magbench.harness.load_method(config))"
            )
        self.method = fresh if method is None else method
        self._owns_method = method is None  # loaded at each run and closed after it
        self.metric_names, self._default_metrics = select_metrics(config.metrics, self.task.default_metrics)
        # Check weights before anything heavy: an offline user hears at once what is missing.
        missing = self.method.missing_weights()
        if missing:
            raise MissingWeightsError(
                f"method {config.method!r} needs {', '.join(f'{w.name} ({w.repo_id})' for w in missing)}: "
                f"run `magbench download --method {config.method}`"
            )
        self.task.check_method(self.method)  # capabilities the task needs: one line, before any work
        if self.method.needs.gpu and not self.device.startswith("cuda"):
            log.warning("method %r is meant for a GPU; on %s it will be slow", config.method, self.device)
        configure_determinism()  # no timing-based cuDNN choice, no TF32 (magbench/determinism.py)
        self.scope = RunScope(config)
        self.dataset: Dataset = self.scope.dataset
        self.task.check_dataset(self.dataset)  # a dataset the task cannot use: before any backbone loads
        # Random-weight backbones (tests, benchmarks) must be the same in every process.
        torch.manual_seed(config.seed)
        try:
            self.metrics, self.skipped_metrics = create_metrics(
                self.metric_names, self.device, self.task.metric_options(config.metric_options, self.method),
                self._default_metrics,
            )
        except ModuleNotFoundError as exc:
            raise missing_package_error("a metric", exc) from None
        self.device_baseline: int | None = None  # device memory allocated after load
        self.warmup: dict[str, Any] | None = None
        # A full or read-only disk met while finishing a sample: the writer thread then writes
        # nothing more (a later sample's files would outlive the run without a record).
        self._storage_error: StorageError | None = None
        self._stage_names = threading.local()  # see stage_name

    # -- identity and manifest -----------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Everything that determines the records (a change means a different run): the method's
        resolved options and what it derives from them, the task and its protocol (switch
        fraction, memory source), the dataset and its revision, the metrics, seed and dtype.
        The default task's identity is the protocol alone, as before tasks existed, so run
        folders written then keep their fingerprint and resume."""
        ident = {
            "method": self.method.config(),
            "method_resolution": list(self.method.resolution) if self.method.resolution else None,
            "dataset": {"id": self.dataset.id, "revision": self.dataset.revision},
            "protocol": self.config.protocol.to_dict(),
            "metrics": [m.config() for m in self.metrics],
            "scored_frames": "uint8",  # generated frames are quantised to 8 bits, then scored
            "seed": self.config.seed,
            "dtype": self.dtype_name,
        }
        if self.task.name != DEFAULT_TASK:
            ident["task"] = self.task.identity()
        return ident

    def manifest(self) -> dict[str, Any]:
        ident = self.identity()
        key_info: dict[str, Any] = {}
        for m in self.metrics:
            key_info.update(m.key_info)
        key_info = self.task.manifest_key_info(key_info)
        cls = type(self.method)
        return {
            "run_id": self.run_dir.path.name,
            "fingerprint": fingerprint(ident),
            "config": ident,
            "method": {
                "name": self.method.name,
                "kind": cls.kind,
                "bounds": dict(cls.bounds),
                "description": cls.description,
                "config": ident["method"],
                # The options that differ from the method's defaults: what a report labels it by.
                "options_changed": {
                    k: v for k, v in sorted(self.method.options.items()) if cls.defaults.get(k, object()) != v
                },
            },
            "dataset": self.dataset.describe(),
            "dataset_spec": self.config.dataset,  # what `magbench score` loads the ground truth from
            # The hub commit each artefact's local copy resolved to (method weights, dataset).
            "artifacts": resolved_commits([*(() if self.config.method_options.get("random_weights") else cls.needs.weights),
                                           None if self.dataset.revision == "local" else ARTIFACTS.get(self.dataset.id)]),
            "protocol": self.config.protocol.to_dict(),
            "task": self.task.describe(),
            "metrics": [m.name for m in self.metrics],
            "skipped_metrics": self.skipped_metrics,
            "key_info": key_info,
            "seed": self.config.seed,
            "device": self.device,
            "dtype": self.dtype_name,
            "warmup": WARMUP,
            "keep_frames": self.config.keep_frames,
            "versions": package_versions() | {"magbench": magbench.__version__},
            "git_commit": git_commit(),
            "hardware": hardware(self.device),
            "created_at": _now(),
        }

    # -- the run's scope (see RunScope) --------------------------------------------------------
    @property
    def run_dir(self) -> RunDir:
        return self.scope.run_dir

    def selected_samples(self) -> list[VideoSample]:
        return self.scope.selected_samples()

    def done_ids(self) -> set[str]:
        return self.scope.done_ids()

    def prepare(self) -> None:
        """Create the run folder with its manifest, or check that it holds this configuration."""
        self.run_dir.init(self.manifest())

    def summary(self, sample_ids: list[str] | None = None, done_before: int = 0) -> RunSummary:
        return self.scope.summary(sample_ids, done_before, self.skipped_metrics, self.warmup)

    # -- running -------------------------------------------------------------------------------
    def run(
        self,
        samples: list[VideoSample] | None = None,
        records_file: str | None = None,
        on_sample: Callable[[SampleRecord], None] | None = None,
        progress: bool = True,
    ) -> RunSummary:
        """Run ``samples`` (default: the selected samples) into record file ``records_file``
        (default ``samples.jsonl``), skipping finished ones; the summary covers ``samples``."""
        todo_from = self.selected_samples() if samples is None else list(samples)
        records_file = records_file or records_name()
        self.prepare()
        with record_lock(self.run_dir.path, records_file):
            done = self.done_ids()
            for p in self.run_dir.problems:
                if p.sample_id not in done:  # a line whose sample was redone since is history
                    log.warning("damaged record, sample will be redone: %s", p)
            todo = [s for s in todo_from if s.sample_id not in done]
            if todo:
                self.run_dir.clear_fatal()
                try:
                    self._run_samples(todo, RecordWriter(self.run_dir.path / records_file), on_sample, progress)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:
                    self.run_dir.write_fatal(exc, traceback.format_exc())
                    raise
        return self.summary([s.sample_id for s in todo_from], done_before=len(todo_from) - len(todo))

    def _run_samples(self, todo: list[VideoSample], writer: RecordWriter, on_sample, progress: bool) -> None:
        bar = _Progress(len(todo), self.config.method, progress)

        def emit(flight: _InFlight) -> None:
            """A finished sample: its record appended (in the samples' order), then reported."""
            record = flight.record
            if record.finished_at is None:
                record.finished_at = _now()
            if not record.ok:  # printed by the progress line and the summary: once each, not here too
                log.debug("sample %s failed: %s", record.sample_id, record.error)
            writer.append(record)
            self.stage("sample", time.perf_counter() - flight.started)
            bar.advance(record)
            if on_sample:
                on_sample(record)

        try:
            if self.config.pipeline:
                self._run_pipelined(todo, emit)
            else:
                self._load()
                self.warmup = self.warm_up(todo)
                for sample in todo:
                    emit(self._sample(sample))
        finally:
            bar.close()
            if self._owns_method:
                self.method.close()

    def _load(self) -> None:
        if self._owns_method:
            t0 = time.perf_counter()
            load_method(self.config, self.method)
            self.stage("load", time.perf_counter() - t0)
        self.device_baseline = allocated_bytes(self.device)

    def _run_pipelined(self, todo: list[VideoSample], emit: Callable[[_InFlight], None]) -> None:
        """Sample k's method calls (and anything on the device) on this thread, while a reader
        thread prepares sample k+1 (read, decode, check, resize) and a writer thread finishes
        sample k-1 (scoring on the CPU, kept frames, previews) and appends its record. Each phase
        of a sample runs after the one before it, and the one writer appends records in the
        samples' order, so the records are those of the serial loop; a sample is recorded as
        soon as it is written (a run killed while the next one generates keeps it). The first
        sample is read while the method loads."""
        pending: deque[Future] = deque()
        self._storage_error = None
        stopped = threading.Event()  # a record could not be appended or reported: append no more

        def finish_and_emit(flight: _InFlight) -> None:
            self._finish(flight)
            if stopped.is_set():
                return
            try:
                emit(flight)
            except BaseException:
                stopped.set()
                raise

        with ThreadPoolExecutor(1, thread_name_prefix="magbench-read") as reader, \
                ThreadPoolExecutor(1, thread_name_prefix="magbench-write") as writer:
            upcoming: Future | None = reader.submit(self._prepare, todo[0])
            try:
                self._load()
                first = upcoming.result()
                upcoming = reader.submit(self._prepare, todo[1]) if len(todo) > 1 else None
                # The warm-up takes the first sample as the reader prepared it (not read twice).
                self.warmup = self.warm_up(todo, None if first.failed else first.prepared)
                for i in range(len(todo)):
                    if i == 0:
                        flight = first
                    else:
                        flight = upcoming.result()
                        upcoming = reader.submit(self._prepare, todo[i + 1]) if i + 1 < len(todo) else None
                    self._execute(flight)
                    pending.append(writer.submit(finish_and_emit, flight))
                    # Before the next sample runs, the one before this is written: at most one
                    # sample's frames wait for the writer. A failure to append is the run's.
                    while pending and (len(pending) > 1 or pending[0].done()):
                        pending.popleft().result()
                while pending:
                    pending.popleft().result()
            finally:
                # Interrupted or failed: the writer still writes what it was given (finished
                # samples are kept) when the executors close; nothing more is read.
                if upcoming is not None:
                    upcoming.cancel()

    def stage(self, stage: str, seconds: float) -> None:
        """Tell the stage hook (benchmarks) how long a stage took."""
        if self.stage_hook is not None:
            self.stage_hook(stage, seconds)

    def sample_seed(self, sample: VideoSample) -> int:
        return sample_seed(self.config.seed, sample.sample_id)

    def warm_up(self, candidates: list[VideoSample] | VideoSample, prepared: Any = None) -> dict[str, Any]:
        """Untimed and unscored, before this process's first timed sample: the method's own
        ``warmup`` hook, or the task's short version of a sample (one block). Compilation,
        autotuning and allocator growth land here, not in the first record.

        Tries ``candidates`` in order (at most :data:`WARMUP_TRIES`) until one warms the method
        up: a sample whose video is missing must not leave the next one to be timed cold. Returns
        ``kind`` ("hook" or "sample"; "failed" when no candidate worked), ``sample_id`` (the one
        it ran on, or None), ``tried`` (the samples that failed first, with their errors: each is
        left to the sample itself to record) and ``seconds``. ``prepared``: what ``Task.prepare``
        returned for the first candidate, handed to a task whose ``warm_up`` takes it (the
        pipeline's first sample is not read twice)."""
        t0 = time.perf_counter()
        kind = "hook" if type(self.method).has_warmup() else "sample"
        out: dict[str, Any] = {"kind": "failed", "sample_id": None, "tried": []}
        takes_prepared = "prepared" in inspect.signature(self.task.warm_up).parameters
        for i, sample in enumerate(([candidates] if isinstance(candidates, VideoSample) else list(candidates))[:WARMUP_TRIES]):
            given = prepared if i == 0 else None
            try:
                if kind == "hook":
                    # The hook is told the sample as the task would hand it over (replay: its split).
                    info = getattr(given, "info", None) or self._warmup_info(sample)
                    torch.manual_seed(info.seed)
                    self.method.warmup(info)
                elif takes_prepared and given is not None:
                    self.task.warm_up(self, sample, prepared=given)
                else:
                    self.task.warm_up(self, sample)
            except Exception as exc:  # the sample will fail again, and be recorded, if it is bad
                out["tried"].append({"sample_id": sample.sample_id, "error": f"{type(exc).__name__}: {exc}"})
                log.info("warm-up on %s failed, trying the next sample: %s", sample.sample_id, out["tried"][-1]["error"])
                if isinstance(exc, torch.cuda.OutOfMemoryError):
                    torch.cuda.empty_cache()
                continue
            out.update(kind=kind, sample_id=sample.sample_id)
            break
        out["seconds"] = time.perf_counter() - t0
        self.stage("warmup", out["seconds"])
        return out

    def _warmup_info(self, sample: VideoSample):
        inputs = getattr(self.task, "inputs", None)
        if inputs is not None:
            return inputs(self, sample)[1]
        from magbench.method import SampleInfo

        h, w = self.method.resolution or (0, 0)
        return SampleInfo(sample_id=sample.sample_id, prompt=sample.caption, seed=self.sample_seed(sample),
                          height=h, width=w, fps=float(self.config.protocol.fps), num_context=0, num_target=0)

    def run_sample(self, sample: VideoSample) -> SampleRecord:
        """One sample through the task into a record, on this thread (the method loaded); a
        failure is the record's, never the run's."""
        flight = self._sample(sample)
        if flight.record.finished_at is None:
            flight.record.finished_at = _now()
        self.stage("sample", time.perf_counter() - flight.started)
        return flight.record

    # -- the phases of one sample (Task.prepare / Task.execute / its finishing step) -------------
    @property
    def stage_name(self) -> str:
        """The stage of the sample in progress on this thread, named in a failure (a task sets
        it as it goes; the pipeline runs phases of different samples on different threads)."""
        return getattr(self._stage_names, "name", "load")

    @stage_name.setter
    def stage_name(self, value: str) -> None:
        self._stage_names.name = value

    @property
    def sample_in_progress(self) -> str | None:
        """The id of the sample whose phase this thread is running (None between samples): what
        a stage hook reads to tell which sample a stage belongs to when the pipeline overlaps
        neighbouring samples."""
        return getattr(self._stage_names, "sample_id", None)

    def _sample(self, sample: VideoSample) -> _InFlight:
        flight = self._prepare(sample)
        self._execute(flight)
        self._finish(flight)
        return flight

    def _prepare(self, sample: VideoSample) -> _InFlight:
        flight = _InFlight(sample, self.task.new_record(sample), time.perf_counter())
        self._phase(flight, "load", lambda: setattr(flight, "prepared", self.task.prepare(self, sample, flight.record)))
        return flight

    def _execute(self, flight: _InFlight) -> None:
        if not flight.failed:
            run = lambda: setattr(flight, "finish", self.task.execute(self, flight.sample, flight.record, flight.prepared))  # noqa: E731
            self._phase(flight, "generate", run)
        flight.prepared = None  # the inputs are not needed past the method's calls

    def _finish(self, flight: _InFlight) -> None:
        """The sample's last, CPU-only step (a failure is the record's; a full or read-only disk,
        StorageError, is the run's and stops every later write)."""
        finish, flight.finish = flight.finish, None
        if self._storage_error is not None:
            raise self._storage_error
        if not flight.failed and finish is not None:
            try:
                self._phase(flight, "score", finish)
            except StorageError as exc:
                self._storage_error = exc
                raise
        if not flight.failed:
            flight.record.status = "ok"
        flight.record.finished_at = _now()

    def _phase(self, flight: _InFlight, first_stage: str, fn: Callable[[], Any]) -> None:
        record = flight.record
        self.stage_name = first_stage
        self._stage_names.sample_id = record.sample_id
        try:
            fn()
        except StorageError:
            raise  # a read-only or full disk is the run's error, not this sample's: every later write fails too
        except (SampleError, MagbenchError) as exc:
            record.fail(f"{self.stage_name}: {exc}", type(exc).__name__)
        except torch.cuda.OutOfMemoryError as exc:
            record.fail(f"{self.stage_name}: out of device memory: {str(exc).splitlines()[0]}", "OutOfMemoryError")
            torch.cuda.empty_cache()
        except Exception as exc:  # one bad sample never stops the run
            tb = traceback.format_exc(limit=6)
            record.fail(f"{self.stage_name}: {type(exc).__name__}: {exc}", type(exc).__name__, tb)
        else:
            return
        finally:
            self._stage_names.sample_id = None
        flight.failed = True
        flight.prepared = flight.finish = None


@dataclass
class _InFlight:
    """One sample between its phases: its record, what ``Task.prepare`` returned, the finishing
    step ``Task.execute`` returned, and when it started (the ``sample`` stage's time)."""

    sample: VideoSample
    record: SampleRecord
    started: float
    prepared: Any = None
    finish: Callable[[], None] | None = None
    failed: bool = False


# -- helpers -------------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class _Progress:
    """A progress bar on a terminal; elsewhere (a log file, CI) one line per finished sample."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = enabled
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def advance(self, record: SampleRecord) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)
            if not record.ok:  # a failure is printed once while the run goes (and once in the summary)
                from rich.markup import escape

                self._bar.console.print(f"[red]failed[/] {escape(_one_line(record))}", highlight=False, soft_wrap=True)
        elif self.enabled:
            print(f"[{self.done}/{self.total}] {self.label} {_one_line(record)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _one_line(record: SampleRecord) -> str:
    if not record.ok:
        return f"{record.sample_id}: failed: {record.error}"
    t = record.timing
    parts = [f"{k} {v:.4g}" for k, v in list(record.metrics.items())[:3] if isinstance(v, (int, float))]
    if t is not None and t.fps:
        parts.append(f"{t.fps:.1f} fps (end to end {t.e2e_fps:.1f})")
    return f"{record.sample_id}: ok" + (f", {', '.join(parts)}" if parts else "")
