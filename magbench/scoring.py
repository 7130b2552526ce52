"""Scoring: which metrics run, and one sample's frames -> its ``metrics``/``per_frame``/``extra``.

Used by the harness right after generation and by ``magbench score RUN``, which scores a run's
kept frames again (adding metrics, e.g. LPIPS once its weights are downloaded) without
regenerating anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from magbench.download import missing_weights_message
from magbench.errors import MagbenchError, MissingWeightsError
from magbench.record import SampleRecord
from magbench.registry import METRICS


def select_metrics(names: list[str] | None, default: tuple[str, ...] | None = None) -> tuple[list[str], bool]:
    """Metric names to run and whether they are the default set (which may skip missing weights).
    ``default``: a task's own default set (None: the metrics marked ``default``)."""
    available = METRICS.names()
    if names is None:
        if default is not None:
            return list(default), True
        return [n for n in available if METRICS.get(n).default], True
    if names == ["all"]:
        return available, False
    for n in names:
        METRICS.get(n)  # unknown names fail here, with suggestions
    return list(dict.fromkeys(names)), False


def missing_metric_weights(names: list[str], options: dict[str, dict[str, Any]]) -> dict[str, str]:
    """metric name -> the weights it lacks on this machine (random-weight metrics lack none)."""
    out: dict[str, str] = {}
    for n in names:
        if options.get(n, {}).get("random_weights"):
            continue
        missing = [w for w in METRICS.get(n).weights if not w.is_present()]
        if missing:
            out[n] = missing_weights_message(missing)  # the command and the local-copy variables
    return out


def create_metrics(
    names: list[str], device: str, options: dict[str, dict[str, Any]], is_default: bool
) -> tuple[list[Any], dict[str, str]]:
    """Instantiate metrics. With the default set, metrics whose weights are not on this machine
    are skipped (and reported); asked for by name (or ``all``), they are one error naming every
    such metric and how to leave them out, before any work."""
    skipped = missing_metric_weights(names, options)
    if skipped and not is_default:
        runnable = [n for n in names if n not in skipped]
        keep = f"--metrics {','.join(runnable)}" if runnable else "another --metrics"
        raise MissingWeightsError(
            f"metrics {', '.join(sorted(skipped))} need weights not on this machine: "
            f"run `magbench download --metrics`, or leave them out with {keep}"
        )
    # A default-set metric whose weight-free part can run keeps that part (correspondence's PSNR/SSIM).
    partial = {n: METRICS.get(n).without_weights for n in skipped if METRICS.get(n).without_weights}
    for n, opts in partial.items():
        skipped[n] += f" (ran without them: {', '.join(f'{k}={v}' for k, v in opts.items())})"
    metrics = [
        METRICS.get(n)(device=device, **{**options.get(n, {}), **partial.get(n, {})})
        for n in names if n not in skipped or n in partial
    ]
    return metrics, skipped


def score(
    metrics: list[Any],
    context: torch.Tensor,
    target: torch.Tensor,
    generated: torch.Tensor,
    *,
    switch: int,
    fps: float,
    annotations: dict[str, Any] | None,
    use_correspondences: bool,
    device: str,
) -> dict[str, Any]:
    """``metrics``, ``per_frame`` and ``extra`` of one sample's record."""
    from magbench.metrics.base import MetricInputs, MetricResult

    dev = torch.device(device)
    corr = seconds = None
    if annotations and use_correspondences:
        c = annotations.get("correspondences")
        if c is not None:
            tgt = [int(c[switch + i]) for i in range(target.shape[0])]
            if all(0 <= j < switch for j in tgt):
                corr = tgt
        leave = annotations.get("leave_frame")
        if leave is not None:
            ann_fps = float(annotations.get("fps", fps))
            seconds = [(switch + i - int(leave)) / ann_fps for i in range(target.shape[0])]
    inputs = MetricInputs(
        generated=generated.to(dev), target=target.to(dev), context=context.to(dev),
        correspondences=corr, seconds_since_leave=seconds, fps=float(fps),
    )
    total = MetricResult()
    # no_grad rather than inference_mode: a metric may use autograd internally (to derive
    # interpolation weights, say), which inference mode forbids.
    with torch.no_grad():
        for m in metrics:
            total.merge(m(inputs))
    extra = dict(total.extra)
    if seconds is not None:
        extra.setdefault("seconds_since_leave", seconds)
    return {"metrics": total.values, "per_frame": total.per_frame, "extra": extra}


# -- scoring a finished run again ----------------------------------------------------------------
@dataclass
class RescoreSummary:
    run_dir: Path
    metrics: list[str]
    scored: int  # records scored again
    without_frames: list[str]  # ok records with no kept frames (run with --no-keep-frames)
    skipped_metrics: dict[str, str]


def rescore_run(
    run_path: Path | str, names: list[str] | None, options: dict[str, dict[str, Any]], device: str = "cpu"
) -> RescoreSummary:
    """``magbench score``: compute ``names`` (added, or recomputed where present) on the kept
    frames of every finished sample of a run, without regenerating. Record files are rewritten
    atomically under their locks, with every other field and every other line as it was; the
    manifest's metric set becomes the union, so resuming the run later needs the new ``--metrics``.
    """
    from magbench.data import load_dataset
    from magbench.data.video_io import resize_frames, to_float_frames
    from magbench.harness import fingerprint
    from magbench.locking import record_lock, run_lock
    from magbench.protocol import ReplayProtocol
    from magbench.store import RunDir, load_frames, rewrite_records

    rd = RunDir(Path(run_path))
    manifest = rd.manifest()
    task = (manifest.get("task") or {}).get("name", "magbench-replay")
    if task != "magbench-replay":
        raise MagbenchError(
            f"{rd.path}: `magbench score` re-scores magbench-replay runs; this run is task {task!r}: "
            "re-run it with `magbench run --task ... --metrics ...` into another --out"
        )
    task = (manifest.get("task") or {}).get("name", "magbench-replay")
    if task != "magbench-replay":
        raise MagbenchError(f"{rd.path}: a {task} run; `magbench score` rescores magbench-replay runs only "
                            "(re-run the task with the metrics wanted)")
    with run_lock(rd.path):  # no run may append while records are rewritten
        cfg = manifest["config"]
        spec = manifest.get("dataset_spec") or cfg["dataset"]["id"]
        by_id = {s.sample_id: s for s in load_dataset(spec).samples}
        protocol = ReplayProtocol(**{k: v for k, v in manifest["protocol"].items() if k != "id"})
        resolution = cfg.get("method_resolution")
        metric_names, is_default = select_metrics(names)
        metrics, skipped = create_metrics(metric_names, device, options, is_default)
        torch.manual_seed(int(manifest.get("seed", 0)))
        scored, without = 0, []
        for file in rd.record_files():
            with record_lock(rd.path, file.name):
                lines: list[SampleRecord | str] = []
                for raw in file.read_text(encoding="utf-8").splitlines():
                    try:
                        data = json.loads(raw)
                        lines.append(SampleRecord.from_json(data) if isinstance(data, dict) and "sample_id" in data else raw)
                    except ValueError:
                        lines.append(raw)  # a damaged line stays as it was (the sample is redone)
                for rec in lines:
                    if not isinstance(rec, SampleRecord) or not rec.ok:
                        continue
                    sample = by_id.get(rec.sample_id)
                    if not rec.frames or sample is None:
                        without.append(rec.sample_id)
                        continue
                    generated = to_float_frames(load_frames(rd.path, rec.frames))
                    frames = sample.load_frames_checked(protocol)  # as the run split it (--fps-policy)
                    split = protocol.split(frames.shape[0], sample.duration_sec, name=str(sample.video_path))
                    video = resize_frames(to_float_frames(frames[: split.kept]), tuple(resolution) if resolution else None)
                    new = score(
                        metrics, video[: split.switch], video[split.switch :], generated, switch=split.switch,
                        fps=float(protocol.fps), annotations=sample.annotations(),
                        use_correspondences=protocol.use_correspondences, device=device,
                    )
                    rec.metrics.update(new["metrics"])
                    rec.per_frame.update(new["per_frame"])
                    rec.extra.update(new["extra"])
                    scored += 1
                rewrite_records(file, lines)
        # The manifest names the union of metrics; recomputed ones take their new configuration.
        configs = {m["name"]: m for m in cfg.get("metrics", [])}
        configs.update({m.name: m.config() for m in metrics})
        cfg["metrics"] = [configs[n] for n in sorted(configs)]
        manifest["config"] = cfg
        manifest["fingerprint"] = fingerprint(cfg)
        manifest["metrics"] = sorted(configs)
        for m in metrics:
            manifest.setdefault("key_info", {}).update(m.key_info)
        manifest["skipped_metrics"] = {
            k: v for k, v in {**manifest.get("skipped_metrics", {}), **skipped}.items() if k not in configs
        }
        manifest.setdefault("rescored", []).append({"metrics": [m.name for m in metrics], "records": scored, "device": device})
        rd.update_manifest(**manifest)
    return RescoreSummary(rd.path, [m.name for m in metrics], scored, without, skipped)
