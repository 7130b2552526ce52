"""The harness: dataset -> method -> metrics -> results.

Per sample: split by the replay protocol, ``reset`` -> ``memorize(context)`` ->
``generate(len(target))`` (each block timed, device-synchronised) -> score -> append one record.
A failure in one sample (bad video, exception, out of memory, NaN output, unscorable frames) is
recorded as that sample's failure and the run goes on. Finished samples are skipped on re-run.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import logging
import math
import os
import time
import traceback
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

import magbench
from magbench.data import Dataset, VideoSample, load_dataset
from magbench.data.video_io import resize_frames, to_float_frames, to_uint8_frames, write_video
from magbench.environment import git_commit, hardware, package_versions
from magbench.errors import MagbenchError, MissingWeightsError, SampleError
from magbench.method import Method, SampleInfo
from magbench.protocol import ReplayProtocol
from magbench.registry import METHODS, METRICS
from magbench.store import RecordWriter, RunDir

log = logging.getLogger("magbench")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    protocol: ReplayProtocol = field(default_factory=ReplayProtocol)
    retry_failed: bool = False

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


def default_run_dir(method: str, dataset: str) -> Path:
    safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "_" for c in s)  # noqa: E731
    return Path("runs") / f"{safe(method)}__{safe(dataset)}"


def sample_seed(base: int, sample_id: str) -> int:
    """Independent of order and sharding: the same sample always gets the same seed."""
    return (base * 1_000_003 + zlib.crc32(sample_id.encode())) % (2**31 - 1)


# -- building the pieces -------------------------------------------------------------------------
def parse_options(pairs: Iterable[str]) -> dict[str, Any]:
    """``key=value`` strings; values are JSON where they parse (numbers, booleans), else text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise MagbenchError(f"option {pair!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def create_method(name: str, **options: Any) -> Method:
    cls = METHODS.get(name)
    try:
        method = cls(**options)
    except TypeError as exc:
        raise MagbenchError(f"method {name!r}: bad options {options}: {exc}") from exc
    if not getattr(method, "name", ""):
        method.name = name
    return method


def select_metrics(names: list[str] | None) -> tuple[list[str], bool]:
    """Metric names to run and whether they are the default set (which may skip missing weights)."""
    available = METRICS.names()
    if names is None:
        return [n for n in available if getattr(METRICS.get(n), "default", False)], True
    if names == ["all"]:
        return available, False
    for n in names:
        METRICS.get(n)  # unknown names fail here, with suggestions
    return list(dict.fromkeys(names)), False


def create_metrics(
    names: list[str], device: str, options: dict[str, dict[str, Any]], is_default: bool
) -> tuple[list[Any], dict[str, str]]:
    """Instantiate metrics. With the default set, metrics whose weights are not on this machine
    are skipped (and reported); asked for by name, they are an error before any work."""
    metrics, skipped = [], {}
    for n in names:
        cls = METRICS.get(n)
        opts = options.get(n, {})
        if not opts.get("random_weights"):
            missing = [w for w in getattr(cls, "weights", ()) if not w.is_present()]
            if missing:
                msg = f"weights {', '.join(w.name for w in missing)} missing: run `magbench download --metrics`"
                if is_default:
                    skipped[n] = msg
                    continue
                raise MissingWeightsError(f"metric {n!r}: {msg}")
        metrics.append(cls(device=device, **opts))
        if not getattr(metrics[-1], "name", ""):
            metrics[-1].name = n
    return metrics, skipped


def fingerprint(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


# -- the run -------------------------------------------------------------------------------------
@dataclass
class RunSummary:
    run_dir: Path
    total: int
    done_before: int
    ok: int
    failed: int
    skipped_metrics: dict[str, str]
    records: list[dict[str, Any]]


class Harness:
    """Runs one method over a dataset into a run folder. Build it once per process."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.device = config.resolved_device()
        self.dtype_name = config.resolved_dtype(self.device)
        self.method = create_method(config.method, **config.method_options)
        self.metric_names, self._default_metrics = select_metrics(config.metrics)
        # Check weights before anything heavy: an offline user hears at once what is missing.
        missing = self.method.needs.missing_weights() if not config.method_options.get("random_weights") else []
        if missing:
            raise MissingWeightsError(
                f"method {config.method!r} needs {', '.join(f'{w.name} ({w.repo_id})' for w in missing)}: "
                f"run `magbench download --method {config.method}`"
            )
        source = config.protocol.memory_source
        if not type(self.method).supports_memory_source(source):
            raise MagbenchError(
                f"method {config.method!r} does not support --memory-source {source} "
                "(it does not implement Method.remember_ground_truth); use --memory-source generated"
            )
        if self.method.needs.gpu and not self.device.startswith("cuda"):
            log.warning("method %r is meant for a GPU; on %s it will be slow", config.method, self.device)
        # Random-weight backbones (tests, benchmarks) must be the same in every process.
        torch.manual_seed(config.seed)
        self.metrics, self.skipped_metrics = create_metrics(
            self.metric_names, self.device, config.metric_options, self._default_metrics
        )
        self.dataset: Dataset = load_dataset(config.dataset)
        self.run_dir = RunDir(config.out or default_run_dir(config.method, config.dataset))

    # -- manifest ------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Everything that determines the records (a change means a different run)."""
        return {
            "method": self.method.config(),
            "method_resolution": list(self.method.resolution) if self.method.resolution else None,
            "dataset": {"id": self.dataset.id, "revision": self.dataset.revision},
            "protocol": self.config.protocol.to_dict(),
            "metrics": [m.config() for m in self.metrics],
            "seed": self.config.seed,
            "dtype": self.dtype_name,
        }

    def manifest(self) -> dict[str, Any]:
        ident = self.identity()
        key_info: dict[str, Any] = {}
        for m in self.metrics:
            key_info.update(getattr(m, "key_info", {}))
        cls = type(self.method)
        return {
            "run_id": self.run_dir.path.name,
            "fingerprint": fingerprint(ident),
            "config": ident,
            "method": {
                "name": self.config.method,
                "kind": cls.kind,
                "bounds": dict(cls.bounds),
                "description": cls.description,
                "config": self.method.config(),
            },
            "dataset": self.dataset.describe(),
            "protocol": self.config.protocol.to_dict(),
            "metrics": [m.name for m in self.metrics],
            "skipped_metrics": self.skipped_metrics,
            "key_info": key_info,
            "seed": self.config.seed,
            "device": self.device,
            "dtype": self.dtype_name,
            "versions": package_versions() | {"magbench": magbench.__version__},
            "git_commit": git_commit(),
            "hardware": hardware(self.device),
            "created_at": _now(),
        }

    # -- running -------------------------------------------------------------------------------
    def run(
        self,
        samples: list[VideoSample] | None = None,
        records_name: str = "samples.jsonl",
        on_sample: Callable[[dict[str, Any]], None] | None = None,
        progress: bool = True,
    ) -> RunSummary:
        """Run ``samples`` (default: the dataset, up to ``limit``), appending to ``records_name``."""
        all_samples = self.dataset.samples[: self.config.limit] if self.config.limit else self.dataset.samples
        todo_from = all_samples if samples is None else samples
        self.run_dir.init(self.manifest())
        writer = RecordWriter(self.run_dir.path / records_name)
        with _locked(self.run_dir.path / f".{records_name}.lock"):
            done = self.run_dir.done_ids(include_failed=not self.config.retry_failed)
            for p in self.run_dir.problems:
                log.warning("damaged record, sample will be redone: %s", p)
            todo = [s for s in todo_from if s.sample_id not in done]
            new: list[dict[str, Any]] = []
            if todo:
                torch.manual_seed(self.config.seed)
                self.method.load(self.device, DTYPES[self.dtype_name])
                try:
                    for rec in _progress(todo, progress, f"{self.config.method}"):
                        record = self.run_sample(rec)
                        writer.append(record)
                        new.append(record)
                        if on_sample:
                            on_sample(record)
                finally:
                    self.method.close()
        recs = self.run_dir.records()
        ids = {s.sample_id for s in todo_from}
        mine = [r for r in recs if r["sample_id"] in ids]
        return RunSummary(
            run_dir=self.run_dir.path,
            total=len(todo_from),
            done_before=len(todo_from) - len(todo),
            ok=sum(r.get("status") == "ok" for r in mine),
            failed=sum(r.get("status") != "ok" for r in mine),
            skipped_metrics=self.skipped_metrics,
            records=mine,
        )

    def run_sample(self, sample: VideoSample) -> dict[str, Any]:
        record: dict[str, Any] = {
            "sample_id": sample.sample_id,
            "caption": sample.caption,
            "video_path": str(sample.video_path),
            "status": "failed",
            "error": None,
            "error_type": None,
        }
        stage = "load"
        try:
            frames = sample.load_frames()
            stage = "split"
            split = self.config.protocol.split(frames.shape[0], sample.duration_sec, name=str(sample.video_path))
            frames = frames[: split.kept]
            video = resize_frames(to_float_frames(frames), self.method.resolution)
            context, target = video[: split.switch], video[split.switch :]
            seed = sample_seed(self.config.seed, sample.sample_id)
            ann = sample.annotations()
            info = SampleInfo(
                sample_id=sample.sample_id,
                prompt=sample.caption,
                seed=seed,
                height=video.shape[-2],
                width=video.shape[-1],
                fps=float(self.config.protocol.fps),
                num_context=split.num_context,
                num_target=split.num_target,
                memory_source=self.config.protocol.memory_source,
                annotations=ann if self.method.needs.annotations else None,
            )
            record.update(
                memory_source=info.memory_source,
                seed=seed, num_context=split.num_context, num_target=split.num_target,
                switch_frame=split.switch, height=info.height, width=info.width, fps=info.fps,
            )
            stage = "generate"
            generated, timing, memory = self._generate(info, context, target)
            record.update(timing=timing, memory=memory, method_extras=dict(self.method.sample_extras()))
            stage = "score"
            self._score(record, context, target, generated, split.switch, ann)
            stage = "save"
            record["preview"] = self._save_preview(sample.sample_id, target, generated, record)
            if self.config.save_videos:
                rel = Path("videos") / f"{_safe(sample.sample_id)}.mp4"
                write_video(self.run_dir.path / rel, to_uint8_frames(generated), fps=info.fps)
                record["video"] = rel.as_posix()
            record["status"] = "ok"
        except (SampleError, MagbenchError) as exc:
            record.update(error=f"{stage}: {exc}", error_type=type(exc).__name__)
        except torch.cuda.OutOfMemoryError as exc:
            record.update(error=f"{stage}: out of device memory: {str(exc).splitlines()[0]}", error_type="OutOfMemoryError")
            torch.cuda.empty_cache()
        except Exception as exc:  # one bad sample never stops the run
            tb = traceback.format_exc(limit=6)
            record.update(error=f"{stage}: {type(exc).__name__}: {exc}", error_type=type(exc).__name__, traceback=tb)
        record["finished_at"] = _now()
        if record["status"] != "ok":
            log.warning("sample %s failed: %s", sample.sample_id, record["error"])
        return record

    def _generate(self, info: SampleInfo, context: torch.Tensor, target: torch.Tensor):
        method, device = self.method, torch.device(self.device)
        torch.manual_seed(info.seed)
        np.random.seed(info.seed % (2**32))
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        rss = _Rss()
        method.reset(info)
        t0 = time.perf_counter()
        method.memorize(context.to(device))
        if method.needs.ground_truth:
            method.reveal(target.to(device))
        _sync(device)
        memorize_s = time.perf_counter() - t0
        kv_per_block, frames_per_block, block_s, blocks = [], [], [], []
        produced = 0
        gen_start = time.perf_counter()
        last = gen_start
        from_ground_truth = info.memory_source == "ground-truth"
        for block in method.generate(info.num_target):
            if block.ndim != 4 or block.shape[1:] != target.shape[1:]:
                raise MagbenchError(
                    f"method {self.config.method!r} yielded a block of shape {tuple(block.shape)}; "
                    f"expected k x {' x '.join(map(str, target.shape[1:]))}"
                )
            if from_ground_truth:
                # Part of the block's time: writing the memory is the method's work either way.
                span = target[produced : produced + block.shape[0]]
                method.remember_ground_truth(span.to(device))
            _sync(device)
            now = time.perf_counter()
            block_s.append(now - last)
            produced += block.shape[0]
            blocks.append(block.detach().float().cpu())
            frames_per_block.append(produced)
            kv_per_block.append(int(method.memory_bytes()))
            rss.sample()
            last = time.perf_counter()  # copying the block out is not the method's time
        generate_s = sum(block_s)
        if produced != info.num_target:
            raise MagbenchError(
                f"method {self.config.method!r} produced {produced} frames; {info.num_target} were asked for"
            )
        generated = torch.cat(blocks)
        if not torch.isfinite(generated).all():
            bad = (~torch.isfinite(generated)).flatten(1).any(1).nonzero().flatten().tolist()
            raise MagbenchError(f"method output has NaN/Inf in frames {bad[:8]}")
        generated = generated.clamp_(0, 1)
        extra = {k: float(v) for k, v in method.timings().items()}
        timing: dict[str, Any] = {
            "memorize_s": memorize_s,
            "generate_s": generate_s,
            "first_block_s": block_s[0] if block_s else None,
            "block_s": block_s,
            "block_frames": [b.shape[0] for b in blocks],
            "fps": produced / generate_s if generate_s > 0 else None,
            "block_p50_s": _quantile(block_s, 0.5),
            "block_p95_s": _quantile(block_s, 0.95),
            **extra,
        }
        if "decode_s" in extra and generate_s > extra["decode_s"]:
            timing["fps_without_decode"] = produced / (generate_s - extra["decode_s"])
        memory = {
            "peak_device_bytes": int(torch.cuda.max_memory_allocated(device)) if cuda else None,
            "peak_rss_bytes": rss.peak,
            "kv_bytes_end": kv_per_block[-1] if kv_per_block else int(method.memory_bytes()),
            "kv_bytes_peak": max(kv_per_block) if kv_per_block else int(method.memory_bytes()),
            "kv_bytes_per_block": kv_per_block,
            "frames_per_block": frames_per_block,
        }
        return generated, timing, memory

    def _score(self, record, context, target, generated, switch: int, ann) -> None:
        from magbench.metrics.base import MetricInputs, MetricResult

        dev = torch.device(self.device)
        corr = seconds = None
        if ann and self.config.protocol.use_correspondences:
            c = ann.get("correspondences")
            if c is not None:
                tgt = [int(c[switch + i]) for i in range(target.shape[0])]
                if all(0 <= j < switch for j in tgt):
                    corr = tgt
            leave = ann.get("leave_frame")
            if leave is not None:
                fps = float(ann.get("fps", self.config.protocol.fps))
                seconds = [(switch + i - int(leave)) / fps for i in range(target.shape[0])]
        inputs = MetricInputs(
            generated=generated.to(dev), target=target.to(dev), context=context.to(dev),
            correspondences=corr, seconds_since_leave=seconds, fps=float(self.config.protocol.fps),
        )
        total = MetricResult()
        # no_grad rather than inference_mode: a metric may use autograd internally (to derive
        # interpolation weights, say), which inference mode forbids.
        with torch.no_grad():
            for m in self.metrics:
                total.merge(m(inputs))
        record["metrics"] = total.values
        record["per_frame"] = total.per_frame
        record["extra"] = total.extra
        if seconds is not None:
            record["extra"].setdefault("seconds_since_leave", seconds)

    def _save_preview(self, sample_id: str, target, generated, record) -> str:
        k = min(16, target.shape[0])
        idx = np.unique(np.linspace(0, target.shape[0] - 1, k).round().astype(int))
        scale = min(1.0, 192 / target.shape[-1])
        size = (max(2, round(target.shape[-2] * scale)), max(2, round(target.shape[-1] * scale)))
        small = lambda x: to_uint8_frames(resize_frames(x[idx], size) if scale < 1 else x[idx])  # noqa: E731
        arrays = {"target": small(target), "generated": small(generated), "frame_index": idx}
        matched = record.get("extra", {}).get("bestmatch_indices")
        if matched is not None and len(matched) == target.shape[0]:
            arrays["bestmatch_target"] = small(target[torch.as_tensor(matched)])
        rel = Path("previews") / f"{_safe(sample_id)}.npz"
        path = self.run_dir.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        return rel.as_posix()


def run(config: RunConfig, progress: bool = True) -> RunSummary:
    return Harness(config).run(progress=progress)


# -- helpers -------------------------------------------------------------------------------------
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _quantile(xs: list[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(xs), q)) if xs else None


class _Rss:
    """Peak resident memory, sampled at block boundaries (a whole-process peak would be
    meaningless per sample)."""

    def __init__(self) -> None:
        try:
            import psutil

            self._proc = psutil.Process()
        except ImportError:  # pragma: no cover
            self._proc = None
        self.peak = 0
        self.sample()

    def sample(self) -> None:
        if self._proc is not None:
            self.peak = max(self.peak, self._proc.memory_info().rss)


@contextlib.contextmanager
def _locked(path: Path):
    """One writer per record file: a second invocation on the same run is refused, not mixed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            raise MagbenchError(
                f"{path.parent} is being written by another magbench process (pid {holder or '?'}); "
                "wait for it or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _progress(items: list, enabled: bool, label: str):
    if not enabled:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(label, total=len(items))
        for it in items:
            yield it
            bar.advance(task)
