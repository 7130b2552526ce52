"""Sharding, plan, locks, device mapping and SLURM parameters: the pure parts of the runners."""

import json
import zlib
from pathlib import Path

import pytest

from magbench.errors import MagbenchError
from magbench.runners.distributed import rank_device
from magbench.locking import held_by_launcher, is_locked, run_lock
from magbench.runners.sharding import ShardPlan, records_name, shard_of
from magbench.runners.slurm import SlurmOptions, parse_time, slurm_parameters

IDS = [f"video_{i:04d}" for i in range(200)]


def test_shard_of_is_crc32_of_the_id_modulo_the_world_size():
    assert shard_of("synthetic_001_tilt", 7) == zlib.crc32(b"synthetic_001_tilt") % 7
    assert [shard_of(i, 4) for i in IDS] == [shard_of(i, 4) for i in reversed(IDS)][::-1]


def test_plan_puts_every_sample_in_exactly_one_shard_whatever_the_order():
    for n in (1, 2, 3, 8):
        plan = ShardPlan.build(IDS, n, "torchrun")
        assert sorted(plan.sample_ids) == sorted(IDS)
        shuffled = ShardPlan.build(IDS[::-1], n, "torchrun")
        assert [sorted(s) for s in shuffled.shards] == [sorted(s) for s in plan.shards]
    # 200 ids over 4 shards: none starved (crc32 spreads the ids)
    assert min(len(s) for s in ShardPlan.build(IDS, 4, "x").shards) > 30


def test_more_shards_than_samples_leaves_empty_shards_named():
    plan = ShardPlan.build(IDS[:3], 8, "slurm")
    assert len(plan.empty_shards()) >= 5 and sorted(plan.sample_ids) == IDS[:3]


def test_record_files_are_named_by_rank_and_world_size_so_launches_never_share_one():
    assert records_name(0, 1) == "samples.jsonl"
    names = {records_name(r, n) for n in (2, 3, 4) for r in range(n)}
    assert len(names) == 9 and all(n.startswith("samples") and n.endswith(".jsonl") for n in names)


def test_plan_round_trips_through_the_run_folder(tmp_path):
    plan = ShardPlan.build(IDS[:10], 3, "slurm", job_ids=["12_0"])
    plan.write(tmp_path)
    back = ShardPlan.read(tmp_path)
    assert back.shards == plan.shards and back.world_size == 3 and back.extra == {"job_ids": ["12_0"]}
    assert json.loads((tmp_path / "shards.json").read_text())["records"][2] == "samples.2-of-3.jsonl"
    assert ShardPlan.read(tmp_path / "nowhere") is None


def test_exclusive_run_lock_refuses_a_second_holder_and_shared_holders_coexist(tmp_path):
    with run_lock(tmp_path, token="abc"):
        assert is_locked(tmp_path / ".run.lock")
        assert held_by_launcher(tmp_path, "abc") and not held_by_launcher(tmp_path, "other")
        with pytest.raises(MagbenchError, match="another magbench process"):
            with run_lock(tmp_path):
                pass
        with pytest.raises(MagbenchError, match="another magbench process"):
            with run_lock(tmp_path, shared=True):
                pass
    assert not is_locked(tmp_path / ".run.lock") and not held_by_launcher(tmp_path, "abc")
    with run_lock(tmp_path, shared=True), run_lock(tmp_path, shared=True):
        with pytest.raises(MagbenchError, match="another magbench process"):
            with run_lock(tmp_path):
                pass


def test_rank_device_maps_ranks_to_their_local_gpu_or_the_cpu(monkeypatch):
    assert rank_device("cpu", 3, 4) == "cpu"
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert rank_device("auto", 2, 4) == "cuda:2" and rank_device("cuda", 3, 4) == "cuda:3"
    with pytest.raises(MagbenchError, match="4 are visible"):
        rank_device("cuda", 5, 8)
    with pytest.raises(MagbenchError, match="pass --device cuda"):
        rank_device("cuda:1", 0, 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device("auto", 1, 2) == "cpu"


@pytest.mark.parametrize(
    "text, minutes",
    [("90", 90), ("30:30", 31), ("2:00:00", 120), ("1-00", 1440), ("1-02:30", 1590), ("0-00:00:59", 1)],
)
def test_slurm_time_formats_become_minutes(text, minutes):
    assert parse_time(text) == minutes


def test_bad_slurm_time_is_a_clear_error():
    with pytest.raises(MagbenchError, match="HH:MM:SS"):
        parse_time("two hours")


def test_slurm_parameters_map_options_and_pass_unknown_keys_through():
    p = slurm_parameters(
        SlurmOptions(shards=4, partition="gpu", time="1:00:00", gpus_per_task=1, cpus_per_task=8, mem_gb=64,
                     extra={"account": "abc", "reservation": "r1"}),
        "magbench-x",
    )
    assert p["partition"] == "gpu" and p["time"] == 60 and p["gpus_per_task"] == 1 and p["cpus_per_task"] == 8
    assert p["mem"] == "64GB" and p["account"] == "abc"  # submitit knows account
    assert p["additional_parameters"] == {"reservation": "r1"}  # it does not know reservation
    with pytest.raises(MagbenchError, match="magbench sets it"):
        slurm_parameters(SlurmOptions(shards=2, extra={"array": "0-9"}), "x")


def test_without_flock_both_locks_follow_one_policy_go_on_and_warn_once(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    from magbench import locking

    def no_flock(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    monkeypatch.setattr(locking, "_UNLOCKABLE", set())
    with caplog.at_level("WARNING", logger="magbench"):
        with run_lock(tmp_path), locking.record_lock(tmp_path, "samples.jsonl"):
            pass
        with run_lock(tmp_path):
            pass
    warnings = [r.getMessage() for r in caplog.records if "cannot lock" in r.getMessage()]
    assert len(warnings) == 2 and all("will not be detected" in w for w in warnings)  # one per lock file
