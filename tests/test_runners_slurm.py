"""SLURM array tasks on submitit's local executor: real processes, the real requeue path."""

import json
import os
import signal
import sys
import time
from pathlib import Path

from magbench.harness import RunConfig
from magbench.runners.slurm import SlurmOptions, submit, wait

PLUGINS = Path(__file__).parent / "plugins"
sys.path.insert(0, str(PLUGINS))


def test_preempted_task_is_requeued_and_reruns_only_what_its_shard_has_left(synth_dir, tmp_path, monkeypatch):
    # The tasks inherit this environment: they find the test methods, and each block takes 1 s.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("SLOW_REPLAY_SLEEP", "1.0")
    out = tmp_path / "run"
    config = RunConfig(
        method="magbench_test_methods:SlowReplay", dataset=f"synthetic:{synth_dir}", out=out,
        metrics=["psnr"], device="cpu",
    )
    # --time 60: well inside the limit, so submitit reads the signal as a preemption.
    sub = submit(config, SlurmOptions(shards=2, time="60", gpus_per_task=0, cluster="local"))
    assert sub.shards == [0, 1]
    shard1 = out / "samples.1-of-2.jsonl"  # tilt, then dolly
    deadline = time.time() + 90
    while time.time() < deadline and not (shard1.exists() and shard1.read_text().count("\n") >= 1):
        time.sleep(0.05)
    assert shard1.read_text().count("\n") == 1, "the signal must land while the shard is half done"
    pid = int((out / f".{shard1.name}.lock").read_text())
    os.kill(pid, signal.SIGUSR2)  # what SLURM sends before preempting (sbatch --signal=USR2@...)

    summary, errors = wait(sub, config)
    assert errors == [] and summary.ok == 3 and summary.failed == 0
    ids = [json.loads(line)["sample_id"] for line in shard1.read_text().splitlines()]
    assert ids == ["synthetic_001_tilt", "synthetic_002_dolly"], "tilt must not be redone after the requeue"
    log = sub.jobs[1].stderr() or ""
    assert "this job is preempted" in log and "Requeued" in log, log[-2000:]
