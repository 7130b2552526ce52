"""The `magbench` command line: dataset -> method -> metrics -> results -> reports."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
import contextlib
import json
from typing import Any, Iterable, List, Optional

import typer
from magbench.console import Console
from rich.table import Table

from magbench.errors import MagbenchError

app = typer.Typer(
    help="magbench: does your video generator remember the scene when the camera comes back?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Datasets: synthesise, inspect, download.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()
err_console = Console(stderr=True)


EXIT_BAD_INPUT = 2  # a MagbenchError: bad option, unknown name, missing weights, busy folder
EXIT_SAMPLES_FAILED = 3  # the run finished, but some samples failed (their records say why)
EXIT_INTERRUPTED = 130
INTERRUPTED = "interrupted; re-run to finish (finished samples are saved)"


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


def parse_metric_options(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``METRIC.KEY=VALUE`` strings -> {metric: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, dot, rest = item.partition(".")
        if not dot:
            raise MagbenchError(f"--metric-opt {item!r}: expected METRIC.KEY=VALUE")
        out.setdefault(name, {}).update(parse_options([rest]))
    return out


def _metric_list(metrics: str | None) -> list[str] | None:
    return [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None


@app.command()
def run(
    method: str = typer.Option(..., "--method", "-m", help="Registered name (see `magbench methods`) or package.module:Class."),
    task: str = typer.Option("magbench-replay", "--task", "-t", help="What to measure (see `magbench tasks`)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="synthetic | magbench | csv:PATH | synthetic:PATH | prompts:PATH (default: the task's, see `magbench tasks`)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default runs/METHOD__DATASET). Re-running resumes."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Only the first N samples."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metric names, or 'all' (default: the default set, see `magbench metrics`)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: bfloat16 on CUDA, float32 on CPU)."),
    seed: int = typer.Option(0, "--seed", help="Base seed; each sample's seed derives from it and the sample id."),
    save_videos: bool = typer.Option(False, "--save-videos", help="Also write each generated target segment as mp4."),
    keep_frames: bool = typer.Option(True, "--keep-frames/--no-keep-frames", help="Keep the generated frames (lossless, RUN/frames/) so `magbench score` can add metrics later."),
    opt: List[str] = typer.Option([], "--opt", help="Method option KEY=VALUE (repeatable)."),
    metric_opt: List[str] = typer.Option([], "--metric-opt", help="Metric option METRIC.KEY=VALUE (repeatable)."),
    task_opt: List[str] = typer.Option([], "--task-opt", help="Task option KEY=VALUE (repeatable; see `magbench tasks`)."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Frames to generate (tasks that generate from text, e.g. long-video); same as --task-opt frames=N."),
    seconds: Optional[float] = typer.Option(None, "--seconds", help="Seconds to generate at 16 fps (long-video); same as --task-opt seconds=S."),
    switch_fraction: float = typer.Option(0.75, "--switch-fraction", help="Protocol: fraction of the duration before the switch (official 0.75)."),
    memory_source: str = typer.Option("generated", "--memory-source", help="Protocol: the method's memory of generated spans is written from its own output (generated, the paper's history context) or from the ground truth (ground-truth, the paper's GT context)."),
    fps_policy: str = typer.Option("strict", "--fps-policy", help="Protocol: a csv: dataset's video whose frame rate is not 16 (or whose frame count disagrees with its CSV duration) fails its sample (strict), is resampled to 16 fps (resample) or is used as it is (accept); always flagged in its record. The official MAG-Bench is split as the reference does."),
    no_correspondences: bool = typer.Option(False, "--no-correspondences", help="Ignore dataset correspondences."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed samples again when resuming."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace what the run folder holds (records, frames, previews, videos, manifest) instead of resuming it; without it, finished results are never touched."),
    pipeline: bool = typer.Option(True, "--pipeline/--no-pipeline", help="Read the next sample and write the previous one on worker threads while a sample generates (the same records as --no-pipeline, one sample after another)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress (a bar on a terminal, else a line per sample)."),
    launcher: str = typer.Option("local", "--launcher", help="local (this process) | torchrun (N processes, one per GPU) | slurm (an array job through submitit).", rich_help_panel="Scale-out"),
    gpus: Optional[int] = typer.Option(None, "--gpus", help="Start torchrun with N processes, one per GPU (implies --launcher torchrun).", rich_help_panel="Scale-out"),
    shards: Optional[int] = typer.Option(None, "--shards", help="Number of shards: torchrun processes, SLURM array tasks, or with --shard the split to take one shard of.", rich_help_panel="Scale-out"),
    shard: Optional[int] = typer.Option(None, "--shard", help="Run only shard K of --shards N in this process (manual scale-out).", rich_help_panel="Scale-out"),
    partition: Optional[str] = typer.Option(None, "--partition", help="SLURM partition.", rich_help_panel="Scale-out"),
    time_limit: Optional[str] = typer.Option(None, "--time", help="SLURM time limit per task: minutes, HH:MM:SS or D-HH:MM:SS (default 4:00:00).", rich_help_panel="Scale-out"),
    gpus_per_task: int = typer.Option(1, "--gpus-per-task", help="SLURM GPUs per array task (0 for CPU tasks).", rich_help_panel="Scale-out"),
    cpus_per_task: Optional[int] = typer.Option(None, "--cpus-per-task", help="SLURM CPUs per array task.", rich_help_panel="Scale-out"),
    mem_gb: Optional[float] = typer.Option(None, "--mem-gb", help="SLURM memory per array task, GB.", rich_help_panel="Scale-out"),
    slurm_opt: List[str] = typer.Option([], "--slurm", help="Any other sbatch parameter KEY=VALUE (repeatable), e.g. account=abc, qos=high.", rich_help_panel="Scale-out"),
    submitit_cluster: str = typer.Option("slurm", "--submitit-cluster", help="slurm, or local: submitit's local executor (real processes on this machine, no SLURM).", rich_help_panel="Scale-out"),
    dry_run: bool = typer.Option(False, "--dry-run", help="SLURM: print the shards and the sbatch script, submit nothing.", rich_help_panel="Scale-out"),
    wait: bool = typer.Option(False, "--wait", help="SLURM: wait for the tasks and print the merged summary.", rich_help_panel="Scale-out"),
) -> None:
    """Run METHOD over a dataset and score it. Results go to a run folder; re-running resumes.

    Exit status: 0 all samples ok; 3 some samples failed (see their records); 2 bad input.
    Scale out with --gpus N (torchrun, one process per GPU), under `torchrun -m magbench run ...`,
    or with --launcher slurm --shards N; `magbench status RUN` shows each shard's progress."""
    from magbench.harness import Harness, RunConfig
    from magbench.protocol import ReplayProtocol
    from magbench.runners.launch import LaunchOptions

    if limit is not None and limit < 1:
        raise MagbenchError(f"--limit {limit} is not allowed; give a number of samples of at least 1 (leave it out to run every sample)")
    from magbench.tasks import TASKS

    task_options = parse_options(task_opt)
    if frames is not None:
        task_options["frames"] = frames
    if seconds is not None:
        task_options["seconds"] = seconds
    config = RunConfig(
        method=method,
        task=task,
        task_options=task_options,
        dataset=dataset if dataset is not None else TASKS.get(task).default_dataset,
        out=out,
        method_options=parse_options(opt),
        metrics=_metric_list(metrics),
        metric_options=parse_metric_options(metric_opt),
        limit=limit,
        device=device,
        dtype=dtype,
        seed=seed,
        save_videos=save_videos,
        keep_frames=keep_frames,
        protocol=ReplayProtocol(switch_fraction=switch_fraction, use_correspondences=not no_correspondences, memory_source=memory_source, fps_policy=fps_policy),
        retry_failed=retry_failed,
        pipeline=pipeline,
    )

    def warn_skipped(harness: Harness) -> None:
        warn_skipped_metrics(harness.skipped_metrics, {m.name for m in harness.metrics})

    options = LaunchOptions(
        launcher=launcher, shards=shards, gpus=gpus, shard=shard, partition=partition, time=time_limit,
        gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task, mem_gb=mem_gb, slurm=parse_options(slurm_opt),
        submitit_cluster=submitit_cluster, dry_run=dry_run, wait=wait,
    )
    with _interruptible():
        _run(config, options, quiet, warn_skipped, overwrite)


@contextlib.contextmanager
def _interruptible():
    """Ctrl-C: one documented line and exit 130 (click would otherwise swallow the message)."""
    try:
        yield
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED, highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _run(config, options, quiet: bool, warn_skipped, overwrite: bool = False) -> None:
    from magbench.harness import Harness
    from magbench.runners import distributed
    from magbench.runners.launch import LaunchOptions, launch

    if options == LaunchOptions() and distributed.detect() is None:
        # The plain case: this process, the whole run.
        from magbench.runners.local import run_whole

        harness = Harness(config)
        warn_skipped(harness)
        summary, code, message = run_whole(harness, progress=not quiet, overwrite=overwrite), 0, None
    else:  # scale-out options, or started by torchrun
        if overwrite:
            from magbench.runners.local import overwrite_before_launch

            # Here, once, before any rank starts: the ranks themselves only ever resume.
            overwrite_before_launch(config, distributed.detect() is not None)
        result = launch(config, options, progress=not quiet, on_harness=warn_skipped)
        summary, code, message = result.summary, result.exit_code, result.message
    if message:
        console.print(message, markup=False, highlight=False, soft_wrap=True)
    if summary is not None:
        _print_summary(summary)
        left = summary.total - summary.ok - summary.failed
        if left > 0:
            err_console.print(f"[yellow]{left} samples unfinished[/] (a process died?): run the same command again to finish them")
        if summary.failed and not code:
            code = EXIT_SAMPLES_FAILED
    if code:
        raise typer.Exit(code)


@app.command()
def score(
    run_dir: Path = typer.Argument(..., help="A run folder made by `magbench run` (with its kept frames)."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Metrics to add or recompute: comma-separated names, or 'all' (default: the default set)."),
    metric_opt: List[str] = typer.Option([], "--metric-opt", help="Metric option METRIC.KEY=VALUE (repeatable)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
) -> None:
    """Add or recompute metrics on a finished run from its kept frames, without regenerating.

    E.g. a run made offline gains LPIPS once `magbench download --metrics` has fetched AlexNet.
    Records are rewritten atomically; nothing else in them changes."""
    import torch

    from magbench.scoring import rescore_run

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    res = rescore_run(run_dir, _metric_list(metrics), parse_metric_options(metric_opt), dev)
    warn_skipped_metrics(res.skipped_metrics, set(res.metrics))
    console.print(f"{res.run_dir}: scored {res.scored} samples with {', '.join(res.metrics) or 'no metric'}", highlight=False)
    if res.without_frames:
        err_console.print(
            f"[yellow]{len(res.without_frames)} finished samples have no kept frames[/] (run with --no-keep-frames?): "
            f"not scored: {', '.join(res.without_frames[:5])}{' ...' if len(res.without_frames) > 5 else ''}", highlight=False,
        )


def warn_skipped_metrics(skipped: dict[str, str], ran: set[str]) -> None:
    """One warning per metric that did not run, or (``ran``) ran without its weights: only its
    values that need none (correspondence's PSNR and SSIM without AlexNet)."""
    for name, why in skipped.items():
        if name in ran:
            why, _, how = why.partition(" (ran without them: ")
            err_console.print(
                f"[yellow]warning:[/] metric {name} ran without its weights ({how.rstrip(')') or 'in part'}): "
                f"only its values that need none; {why}", highlight=False, soft_wrap=True,
            )
        else:
            err_console.print(f"[yellow]warning:[/] metric {name} skipped: {why}", highlight=False, soft_wrap=True)


def _print_summary(summary) -> None:
    import numpy as np
    from rich.markup import escape

    recs = [r for r in summary.records if r.ok]
    keys: list[str] = []
    for r in recs:
        keys += [k for k in r.metrics if k not in keys]
    console.print(
        f"[bold]{summary.run_dir}[/]: {summary.ok} ok, {summary.failed} failed "
        f"({summary.done_before} already done before this invocation)"
    )
    table = Table()
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for k in keys:
        vals = [r.metrics[k] for r in recs if r.metrics.get(k) is not None]
        table.add_row(k, f"{np.mean(vals):.4f}" if vals else "-")
    for key, label in (("e2e_fps", "end-to-end fps"), ("fps", "generation fps")):
        vals = [r.timing.get(key) for r in recs if r.timing is not None and r.timing.get(key)]
        if vals:
            table.add_row(label, f"{np.mean(vals):.1f}")
    console.print(table)
    w = summary.warmup
    if w:
        # The failed tries' errors are their samples' own: printed below with the failures, not twice.
        tried = [t["sample_id"] for t in w.get("tried") or []]
        after = f" (after {', '.join(tried)} could not warm it up)" if tried else ""
        if w["kind"] == "failed":
            what = f"none: {', '.join(tried) or 'no sample'} could not warm the method up, so the first timed sample ran cold"
        elif w["kind"] == "hook":
            what = f"the method's warmup() on {w['sample_id']}{after}"
        else:
            what = f"one untimed block of {w['sample_id']}{after}"
        console.print(f"warm-up: {what}, {w['seconds']:.1f} s", highlight=False, soft_wrap=True)
    for r in summary.records:
        if not r.ok:
            err_console.print(f"[red]failed[/] {escape(r.sample_id)}: {escape(str(r.error))}", highlight=False, soft_wrap=True)


@app.command()
def tasks() -> None:
    """List tasks: name, what it measures, what a method must support, its default dataset."""
    from magbench.registry import METHODS
    from magbench.tasks import TASKS

    table = Table()
    for col in ("name", "measures", "method needs", "default dataset", "methods able"):
        table.add_column(col)
    method_caps = {n: METHODS.get(n).capabilities() for n in METHODS.names()}
    for name in TASKS.names():
        cls = TASKS.get(name)
        able = [m for m, caps in method_caps.items() if cls.requires <= caps]
        table.add_row(name, cls.description, ", ".join(sorted(cls.requires)), cls.default_dataset,
                      str(len(able)) + (f" ({', '.join(able[:4])}{', ...' if len(able) > 4 else ''})" if able else ""))
    console.print(table)


@app.command()
def schema() -> None:
    """Print the per-sample record schema (generated from magbench/record.py and each task's part)."""
    from magbench.record import schema_text

    console.print(schema_text(), markup=False, highlight=False)


@app.command()
def methods(pattern: Optional[str] = typer.Argument(None, help="Filter, e.g. 'self*' or 'mag'.")) -> None:
    """List methods: name, description, GPU, weights present."""
    from magbench.method import describe
    from magbench.registry import METHODS

    table = Table()
    for col in ("name", "kind", "description", "gpu", "weights", "source"):
        table.add_column(col)
    for name in METHODS.names(pattern):
        try:
            cls = METHODS.get(name)
            info = describe(name, cls, METHODS.is_builtin(name))
        except MagbenchError as exc:
            table.add_row(name, "?", f"[red]{exc}[/]", "", "", "plugin")
            continue
        weights = "-" if info.weights_present is None else ("present" if info.weights_present else "[yellow]missing[/]")
        table.add_row(name, info.kind, info.description, "yes" if info.gpu else "no", weights, "built-in" if info.builtin else "plugin")
    console.print(table)


@app.command("metrics")
def metrics_cmd(pattern: Optional[str] = typer.Argument(None)) -> None:
    """List metrics: name, default or not, the values each reports, weights present."""
    from magbench.registry import METRICS

    table = Table()
    for col in ("name", "default", "reports", "weights", "description"):
        table.add_column(col)
    for name in METRICS.names(pattern):
        cls = METRICS.get(name)
        weights = cls.weights
        present = "-" if not weights else ("present" if all(w.is_present() for w in weights) else "[yellow]missing[/]")
        table.add_row(name, "yes" if cls.default else "", ", ".join(cls.key_info), present, cls.description)
    console.print(table)


@app.command()
def datasets() -> None:
    """List dataset names (use NAME or NAME:ARG with --dataset)."""
    from magbench.registry import DATASETS

    table = Table()
    table.add_column("name")
    table.add_column("description")
    for name in DATASETS.names():
        doc = (DATASETS.get(name).__doc__ or "").strip().splitlines()
        table.add_row(name, " ".join(doc).strip())
    console.print(table)


@app.command()
def download(
    dataset: List[str] = typer.Option([], "--dataset", help="Dataset to fetch (magbench)."),
    method: List[str] = typer.Option([], "--method", help="Method whose weights to fetch (mag, self-forcing, full-history)."),
    metrics: bool = typer.Option(False, "--metrics", help="Weights of every metric backbone (AlexNet for LPIPS, DINO, CLIP)."),
    list_: bool = typer.Option(False, "--list", help="Only list what is needed and whether it is present."),
    revision: List[str] = typer.Option([], "--revision", help="Pin a hub revision (branch, tag or commit) on this machine: REV when the selection is one hub repository, else ARTEFACT=REV (repeatable)."),
) -> None:
    """Fetch datasets, method weights and metric weights (one command for all three)."""
    from magbench.download import artifacts_for, fetch, fetch_all, parse_revisions, status_table

    arts = artifacts_for(datasets=dataset, methods=method, metrics=metrics)
    if list_ or not (dataset or method or metrics):
        console.print(status_table(arts if (dataset or method or metrics) else None))
        return
    pins = parse_revisions(revision, arts)
    # Tries every artefact, then names all that failed.
    fetch_all(arts, console, lambda art, con: fetch(art, con, pins.get(art.name)))


@data_app.command("download")
def data_download(name: str = typer.Argument("magbench")) -> None:
    """Same as `magbench download --dataset NAME`."""
    download(dataset=[name], method=[], metrics=False, list_=False, revision=[])


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out", help="Folder to write (CSV + videos/ + annotations/)."),
    n: int = typer.Option(6, "--n", help="Number of videos."),
    size: str = typer.Option("64x112", "--size", help="HxW, e.g. 480x832."),
    seconds: float = typer.Option(10.0, "--seconds", help="Duration of each video (>= 6)."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Write the synthetic leave-and-return set (use it with --dataset synthetic:DIR)."""
    from magbench.data.synthetic import SynthConfig, generate

    try:
        h, w = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise MagbenchError(f"--size {size!r}: expected HxW such as 64x112") from None
    if h < 16 or w < 16 or h % 2 or w % 2:
        raise MagbenchError(f"--size {size}: height and width must be even and at least 16")
    ds = generate(out, SynthConfig(n=n, height=h, width=w, seconds=seconds, seed=seed))
    console.print(f"wrote {len(ds)} videos to {out}; run with --dataset synthetic:{out}")


@data_app.command("info")
def data_info(
    spec: str = typer.Argument("synthetic", help="Dataset spec, e.g. synthetic, csv:PATH."),
    fps_policy: str = typer.Option("strict", "--fps-policy", help="As for `magbench run`: strict | resample | accept."),
) -> None:
    """Show a dataset's samples and their protocol split."""
    from rich.markup import escape

    from magbench.data import load_dataset
    from magbench.errors import SampleError
    from magbench.protocol import ReplayProtocol

    ds = load_dataset(spec)
    proto = ReplayProtocol(fps_policy=fps_policy)
    table = Table(title=f"{ds.id} ({len(ds)} samples) at {ds.root}")
    for col in ("sample", "duration s", "fps", "frames", "context", "target", "note"):
        table.add_column(col)
    for s in ds.samples:
        check: dict = {}
        try:
            # The same check and --fps-policy as `magbench run` (see the README's replay protocol).
            n = s.load_frames_checked(proto, check).shape[0]
            sp = proto.split(n, s.duration_sec, name=str(s.video_path))
            cells, note = [str(n), str(sp.num_context), str(sp.num_target)], ""
            vc = check["video_check"]
            if vc["flags"]:
                note = f"[yellow]{vc['action']}: {escape('; '.join(vc['problems']))}[/]"
        except SampleError as exc:
            cells, note = ["", "", ""], f"[red]{escape(str(exc))}[/]"
        fps = (check.get("video_check") or {}).get("container_fps")
        table.add_row(s.sample_id, f"{s.duration_sec:g}", f"{fps:g}" if fps else "?", *cells, note)
    console.print(table)


def _register_plugins() -> None:
    """Sub-commands that live beside the core: reports (leaderboard, report, compare) and
    runners (status)."""
    from magbench.reports.cli import register as register_reports
    from magbench.runners.cli import register as register_runners

    register_reports(app)
    register_runners(app)


_register_plugins()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except MagbenchError as exc:
        from rich.markup import escape

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED, highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except OSError as exc:
        from rich.markup import escape

        from magbench.errors import storage_error

        err = storage_error(exc)  # a write not wrapped where it happens: still one line, path and fix
        if err is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
