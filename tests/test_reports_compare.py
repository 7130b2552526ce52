"""Paired comparison of two runs: direction-aware verdicts, refusals."""

import pytest

from magbench.errors import MagbenchError
from magbench.reports.compare import compare
from magbench.reports.errors import IncompatibleRunsError, NoSharedSamplesError, UnknownMetricError

from _reports_fixtures import PROTOCOL, make_run


def test_better_run_wins_on_lower_and_higher_is_better_metrics(tmp_path):
    a = make_run(tmp_path, "weak", quality=0.3, n=8)
    b = make_run(tmp_path, "strong", quality=0.7, n=8)
    c = compare(a, b)
    by = {d.key: d for d in c.diffs}
    assert by["lpips"].better == "B" and by["psnr"].better == "B"
    assert by["lpips"].diff < 0 < by["psnr"].diff  # raw B - A keeps its sign
    assert by["lpips"].verdict.startswith("B is better on lpips by ")
    # The improvement is reported as a positive amount with its interval in the same sense.
    amount, interval = by["lpips"].verdict.split(" by ")[1].split(" [")
    low, high = (float(v) for v in interval.rstrip("]").split(", "))
    assert 0 < low <= float(amount) <= high
    swapped = {d.key: d for d in compare(b, a).diffs}
    assert swapped["lpips"].better == "A" and swapped["lpips"].verdict.startswith("A is better on lpips")


def test_equal_runs_show_no_significant_difference(tmp_path):
    a = make_run(tmp_path, "one", quality=0.5, n=10, noise=0.05, seed=1)
    b = make_run(tmp_path, "two", quality=0.5, n=10, noise=0.05, seed=2)
    d = {d.key: d for d in compare(a, b).diffs}["psnr"]
    assert d.better is None and d.verdict.startswith("no significant difference on psnr")
    assert d.ci_low < 0 < d.ci_high


def test_only_shared_samples_are_paired(tmp_path):
    a = make_run(tmp_path, "a", n=6)
    b = make_run(tmp_path, "b", n=6, sample_offset=4)  # s004, s005 shared
    c = compare(a, b, metrics=["psnr"])
    assert c.shared == ["s004", "s005"] and c.diffs[0].n == 2 and [d.key for d in c.diffs] == ["psnr"]


def test_failed_samples_are_not_paired(tmp_path):
    a = make_run(tmp_path, "a", n=6, failed=2)
    b = make_run(tmp_path, "b", n=6)
    assert compare(a, b).shared == ["s002", "s003", "s004", "s005"]


def test_different_protocols_are_refused(tmp_path):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", protocol={**PROTOCOL, "switch_fraction": 0.5})
    with pytest.raises(IncompatibleRunsError, match="different protocols.*switch_fraction: 0.75 vs 0.5"):
        compare(a, b)


def test_different_datasets_are_refused(tmp_path):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b", dataset={"id": "magbench", "revision": "v1", "num_samples": 6})
    with pytest.raises(IncompatibleRunsError, match="dataset"):
        compare(a, b)


def test_no_shared_samples_is_refused(tmp_path):
    a = make_run(tmp_path, "a", n=3)
    b = make_run(tmp_path, "b", n=3, sample_offset=10)
    with pytest.raises(NoSharedSamplesError, match="share no scored sample_id"):
        compare(a, b)


def test_unknown_metric_and_folder_of_runs_are_clear_errors(tmp_path):
    a = make_run(tmp_path, "a")
    b = make_run(tmp_path, "b")
    with pytest.raises(UnknownMetricError, match="fvd"):
        compare(a, b, metrics=["fvd"])
    with pytest.raises(MagbenchError, match="holds 2 runs"):
        compare(tmp_path, b)


def test_failures_are_named_and_only_samples_both_finished_are_compared(tmp_path):
    a = make_run(tmp_path, "a", n=6, failed=3)
    b = make_run(tmp_path, "b", n=6)
    c = compare(a, b)
    assert c.shared == ["s003", "s004", "s005"] and all(d.n == 3 for d in c.diffs)
    assert any(n.startswith("A (a) failed 3 sample(s) (s000, s001, s002)") for n in c.notes)
    assert c.notes[-1] == "all differences are on the 3 sample(s) both runs finished"
    assert compare(b, make_run(tmp_path, "c", n=6)).notes == []


def test_different_memory_sources_are_refused_and_old_runs_read_as_generated(tmp_path):
    old = make_run(tmp_path, "old")  # a manifest from before the memory source was recorded
    gen = make_run(tmp_path, "gen", protocol={**PROTOCOL, "memory_source": "generated"})
    gt = make_run(tmp_path, "gt", protocol={**PROTOCOL, "id": "magbench-replay-v1-gtmem", "memory_source": "ground-truth"})
    assert compare(old, gen).shared
    with pytest.raises(IncompatibleRunsError, match="generated frames but .*gt from ground-truth frames.*memory source"):
        compare(gen, gt)
