"""The `magbench` command line: dataset -> method -> metrics -> results -> reports."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
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


@app.command()
def run(
    method: str = typer.Option(..., "--method", "-m", help="Registered name (see `magbench methods`) or package.module:Class."),
    dataset: str = typer.Option("synthetic", "--dataset", "-d", help="synthetic | magbench | csv:PATH | synthetic:PATH"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default runs/METHOD__DATASET). Re-running resumes."),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="Only the first N samples."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metric names, or 'all' (default: the default set, see `magbench metrics`)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32 | bfloat16 | float16 (default: bfloat16 on CUDA, float32 on CPU)."),
    seed: int = typer.Option(0, "--seed", help="Base seed; each sample's seed derives from it and the sample id."),
    save_videos: bool = typer.Option(False, "--save-videos", help="Also write each generated target segment as mp4."),
    opt: List[str] = typer.Option([], "--opt", help="Method option KEY=VALUE (repeatable)."),
    metric_opt: List[str] = typer.Option([], "--metric-opt", help="Metric option METRIC.KEY=VALUE (repeatable)."),
    switch_fraction: float = typer.Option(0.75, "--switch-fraction", help="Protocol: fraction of the duration before the switch (official 0.75)."),
    memory_source: str = typer.Option("generated", "--memory-source", help="Protocol: the method's memory of generated spans is written from its own output (generated, the paper's history context) or from the ground truth (ground-truth, the paper's GT context)."),
    no_correspondences: bool = typer.Option(False, "--no-correspondences", help="Ignore dataset correspondences."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed samples again when resuming."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
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

    Scale out with --gpus N (torchrun, one process per GPU), under `torchrun -m magbench run ...`,
    or with --launcher slurm --shards N; `magbench status RUN` shows each shard's progress."""
    from magbench.harness import Harness, RunConfig, parse_options
    from magbench.protocol import ReplayProtocol

    metric_options: dict[str, dict] = {}
    for item in metric_opt:
        name, dot, rest = item.partition(".")
        if not dot:
            raise MagbenchError(f"--metric-opt {item!r}: expected METRIC.KEY=VALUE")
        metric_options.setdefault(name, {}).update(parse_options([rest]))
    config = RunConfig(
        method=method,
        dataset=dataset,
        out=out,
        method_options=parse_options(opt),
        metrics=[m.strip() for m in metrics.split(",") if m.strip()] if metrics else None,
        metric_options=metric_options,
        limit=limit,
        device=device,
        dtype=dtype,
        seed=seed,
        save_videos=save_videos,
        protocol=ReplayProtocol(switch_fraction=switch_fraction, use_correspondences=not no_correspondences, memory_source=memory_source),
        retry_failed=retry_failed,
    )
    from magbench.runners.launch import LaunchOptions, launch

    def warn_skipped(harness: Harness) -> None:
        for name, why in harness.skipped_metrics.items():
            err_console.print(f"[yellow]warning:[/] metric {name} skipped: {why}")

    options = LaunchOptions(
        launcher=launcher, shards=shards, gpus=gpus, shard=shard, partition=partition, time=time_limit,
        gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task, mem_gb=mem_gb, slurm=slurm_opt,
        submitit_cluster=submitit_cluster, dry_run=dry_run, wait=wait,
    )
    result = launch(config, options, progress=not quiet, on_harness=warn_skipped)
    if result.message:
        console.print(result.message, markup=False, highlight=False, soft_wrap=True)
    if result.summary is not None:
        _print_summary(result.summary)
        left = result.summary.total - result.summary.ok - result.summary.failed
        if left > 0:
            err_console.print(f"[yellow]{left} samples unfinished[/] (a process died?): run the same command again to finish them")
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _print_summary(summary) -> None:
    import numpy as np

    recs = [r for r in summary.records if r.get("status") == "ok"]
    keys: list[str] = []
    for r in recs:
        keys += [k for k in r.get("metrics", {}) if k not in keys]
    console.print(
        f"[bold]{summary.run_dir}[/]: {summary.ok} ok, {summary.failed} failed "
        f"({summary.done_before} already done before this invocation)"
    )
    table = Table()
    table.add_column("metric")
    table.add_column("mean", justify="right")
    for k in keys:
        vals = [r["metrics"][k] for r in recs if r["metrics"].get(k) is not None]
        table.add_row(k, f"{np.mean(vals):.4f}" if vals else "-")
    fps = [r["timing"]["fps"] for r in recs if r.get("timing", {}).get("fps")]
    if fps:
        table.add_row("fps", f"{np.mean(fps):.1f}")
    console.print(table)
    for r in summary.records:
        if r.get("status") != "ok":
            err_console.print(f"[red]failed[/] {r['sample_id']}: {r.get('error')}")


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
        weights = getattr(cls, "weights", ())
        present = "-" if not weights else ("present" if all(w.is_present() for w in weights) else "[yellow]missing[/]")
        table.add_row(name, "yes" if getattr(cls, "default", False) else "", ", ".join(getattr(cls, "key_info", {})), present, getattr(cls, "description", ""))
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
) -> None:
    """Fetch datasets, method weights and metric weights (one command for all three)."""
    from magbench.download import artifacts_for, fetch, status_table

    arts = artifacts_for(datasets=dataset, methods=method, metrics=metrics)
    if list_ or not (dataset or method or metrics):
        console.print(status_table(arts if (dataset or method or metrics) else None))
        return
    for art in arts:
        fetch(art, console)


@data_app.command("download")
def data_download(name: str = typer.Argument("magbench")) -> None:
    """Same as `magbench download --dataset NAME`."""
    download(dataset=[name], method=[], metrics=False, list_=False)


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
def data_info(spec: str = typer.Argument("synthetic", help="Dataset spec, e.g. synthetic, csv:PATH.")) -> None:
    """Show a dataset's samples and their protocol split."""
    from magbench.data import load_dataset
    from magbench.data.video_io import read_video
    from magbench.errors import SampleError
    from magbench.protocol import ReplayProtocol

    ds = load_dataset(spec)
    proto = ReplayProtocol()
    table = Table(title=f"{ds.id} ({len(ds)} samples) at {ds.root}")
    for col in ("sample", "duration s", "frames", "context", "target", "note"):
        table.add_column(col)
    for s in ds.samples:
        try:
            n = read_video(s.video_path).shape[0]
            sp = proto.split(n, s.duration_sec, name=str(s.video_path))
            table.add_row(s.sample_id, f"{s.duration_sec:g}", str(n), str(sp.num_context), str(sp.num_target), "")
        except SampleError as exc:
            table.add_row(s.sample_id, f"{s.duration_sec:g}", "", "", "", f"[red]{exc}[/]")
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
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted; finished samples are saved, re-run the same command to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
