"""SLURM array tasks on submitit's local executor: real processes, the real requeue path."""

import json
import os
import signal
import sys
from pathlib import Path

from conftest import wait_for_file, wait_for_lines
from magbench.harness import RunConfig
from magbench.locking import holder_pid
from magbench.runners.slurm import SlurmOptions, submit, wait

PLUGINS = Path(__file__).parent / "plugins"
sys.path.insert(0, str(PLUGINS))


def test_preempted_task_is_requeued_and_reruns_only_what_its_shard_has_left(synth_dir, tmp_path, monkeypatch):
    # The tasks inherit this environment: they find the test methods, and shard 1 stops in
    # dolly's second block until the gate opens (after the signal).
    gate = tmp_path / "gate"
    gate.mkdir()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MAGBENCH_TEST_GATE", str(gate))
    monkeypatch.setenv("MAGBENCH_TEST_GATE_SAMPLE", "synthetic_002_dolly")
    out = tmp_path / "run"
    config = RunConfig(
        method="magbench_test_methods:GatedReplay", dataset=f"synthetic:{synth_dir}", out=out,
        metrics=["psnr"], device="cpu",
    )
    # --time 60: well inside the limit, so submitit reads the signal as a preemption.
    sub = submit(config, SlurmOptions(shards=2, time="60", gpus_per_task=0, cluster="local"))
    assert sub.shards == [0, 1]
    shard1 = out / "samples.1-of-2.jsonl"  # tilt, then dolly
    reached = gate / "reached-synthetic_002_dolly"
    wait_for_file(reached)  # the task writes it when it stops in dolly
    wait_for_lines(shard1, 1)  # tilt's record (the pipeline's writer appends it while dolly runs)
    assert shard1.read_text().count("\n") == 1, "the signal must land while the shard is half done"
    os.kill(holder_pid(out, shard1.name), signal.SIGUSR2)  # what SLURM sends before preempting (sbatch --signal=USR2@...)

    summary, errors = wait(sub, config)
    assert errors == [] and summary.ok == 3 and summary.failed == 0
    ids = [json.loads(line)["sample_id"] for line in shard1.read_text().splitlines()]
    assert ids == ["synthetic_001_tilt", "synthetic_002_dolly"], "tilt must not be redone after the requeue"
    log = sub.jobs[1].stderr() or ""
    assert "this job is preempted" in log and "Requeued" in log, log[-2000:]
