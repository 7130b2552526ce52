"""Paired comparison of two runs on the samples both scored.

For every metric key both runs report, the difference B - A is taken per sample (by
``sample_id``), its mean gets a paired percentile-bootstrap 95% interval, and a plain-words
verdict respects the key's direction (``higher_is_better`` in the manifests)::

    B (replay-context) is better on lpips by 0.088 [0.069, 0.11]
    no significant difference on ssim (B - A = 0.003 [-0.01, 0.02])

"Better by" is always a positive amount of improvement, with its interval in the same sense.
A difference is called significant when the interval excludes zero. Only samples both runs
finished are paired, so a run that fails the hard samples is never compared on an easier subset;
``Comparison.notes`` says what each run failed or lacks. Runs on different datasets or protocols
(the memory source included: history context and GT context are different settings) are refused:
their numbers measure different things.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


from magbench.reports import fmt
from magbench.reports.errors import IncompatibleRunsError, NoSharedSamplesError, ReportError, UnknownMetricError
from magbench.reports.runs import Run, higher_is_better, load_runs, merged_key_info
from magbench.reports.stats import N_RESAMPLES, SEED, paired_bootstrap_ci
from magbench.reports.verdict import ties
from magbench.store import RunDir


@dataclass
class MetricDiff:
    key: str
    n: int                      # shared samples with a finite value in both runs
    mean_a: float
    mean_b: float
    diff: float                 # mean of B - A
    ci_low: float
    ci_high: float
    higher_is_better: bool | None
    verdict: str
    better: str | None          # "A", "B", or None (no significant difference / unknown direction)


@dataclass
class Comparison:
    run_a: Run
    run_b: Run
    shared: list[str]
    diffs: list[MetricDiff] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # failures and samples left out of the pairing


def compare(
    run_a: Path | str | RunDir | Run,
    run_b: Path | str | RunDir | Run,
    metrics: Sequence[str] | None = None,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
) -> Comparison:
    """Per-metric paired differences B - A on the shared samples, with verdicts."""
    a, b = _one_run(run_a), _one_run(run_b)
    if (a.dataset, a.dataset_revision) != (b.dataset, b.dataset_revision):
        raise IncompatibleRunsError(
            f"{a.path} is on dataset {a.dataset}@{a.dataset_revision or '?'} but {b.path} on "
            f"{b.dataset}@{b.dataset_revision or '?'}; compare runs of the same dataset"
        )
    if a.memory_source != b.memory_source:
        raise IncompatibleRunsError(
            f"{a.path} wrote its memory from {a.memory_source} frames but {b.path} from {b.memory_source} "
            "frames (--memory-source): history context and GT context are different settings; "
            "compare runs of the same memory source"
        )
    if a.protocol != b.protocol:
        diff = ", ".join(
            f"{k}: {a.protocol.get(k)!r} vs {b.protocol.get(k)!r}"
            for k in sorted(set(a.protocol) | set(b.protocol))
            if a.protocol.get(k) != b.protocol.get(k)
        )
        raise IncompatibleRunsError(
            f"{a.path} and {b.path} use different protocols ({diff}); re-run one with the other's protocol"
        )
    ok_a = {r.sample_id: r for r in a.ok_records()}
    ok_b = {r.sample_id: r for r in b.ok_records()}
    shared = [s for s in ok_a if s in ok_b]
    if not shared:
        raise NoSharedSamplesError(
            f"{a.path} ({len(ok_a)} scored samples) and {b.path} ({len(ok_b)}) share no scored "
            "sample_id; run both on the same samples (same dataset and --limit)"
        )
    keys_a = {k for r in ok_a.values() for k in r.metrics}
    keys_b = {k for r in ok_b.values() for k in r.metrics}
    common = [k for k in dict.fromkeys([*a.metric_keys(), *b.metric_keys()]) if k in keys_a and k in keys_b]
    if metrics:
        unknown = [k for k in metrics if k not in common]
        if unknown:
            raise UnknownMetricError(
                f"--metric {', '.join(unknown)}: not reported by both {a.path} and {b.path}; "
                f"choose from {', '.join(common) or '(none)'}"
            )
        common = list(metrics)
    info = merged_key_info([a, b])
    out = Comparison(a, b, shared, notes=_coverage_notes(a, b, shared))
    for k in common:
        va = [_value(ok_a[s], k) for s in shared]
        vb = [_value(ok_b[s], k) for s in shared]
        pairs = [(x, y) for x, y in zip(va, vb) if not (fmt.is_missing(x) or fmt.is_missing(y))]
        xa = [p[0] for p in pairs]
        xb = [p[1] for p in pairs]
        diff, low, high = paired_bootstrap_ci(xa, xb, n_resamples, seed=seed)
        hib = higher_is_better(k, info)
        better, verdict = _verdict(k, diff, low, high, hib, len(pairs))
        if pairs and all(ties(x, y) for x, y in pairs):
            better, verdict = None, f"A and B score exactly the same on {k} on all {len(pairs)} shared samples (an exact tie)"
        out.diffs.append(MetricDiff(
            key=k, n=len(pairs),
            mean_a=sum(xa) / len(xa) if xa else math.nan,
            mean_b=sum(xb) / len(xb) if xb else math.nan,
            diff=diff, ci_low=low, ci_high=high, higher_is_better=hib, verdict=verdict, better=better,
        ))
    out.notes += _validity_notes(out, ok_a, ok_b)
    return out


def _validity_notes(c: Comparison, ok_a: dict[str, Any], ok_b: dict[str, Any]) -> list[str]:
    """Where a verdict on the paper's best match should not be taken at face value: a run whose
    matching reuses a few frames (low coverage), or the order-preserving best match disagreeing
    (magbench.reports.verdict)."""
    from magbench.reports.verdict import BESTMATCH_PREFIX, COVERAGE_KEY, COVERAGE_MIN, ORDERED_PREFIX

    notes = []
    by_key = {d.key: d for d in c.diffs}
    for label, run, ok in (("A", c.run_a, ok_a), ("B", c.run_b, ok_b)):
        cov = [v for v in (_value(ok[s], COVERAGE_KEY) for s in c.shared) if v is not None]
        if cov and sum(cov) / len(cov) < COVERAGE_MIN:
            notes.append(
                f"{label} ({run.method})'s best match covers only {fmt.num(sum(cov) / len(cov))} of the ground-truth target "
                f"frames (below {COVERAGE_MIN:g}): a frozen or looping video; its verdicts on the paper's best match cannot be trusted"
            )
    for d in c.diffs:
        if not d.key.startswith(BESTMATCH_PREFIX) or d.key.startswith(ORDERED_PREFIX) or d.better is None:
            continue
        od = by_key.get(ORDERED_PREFIX + d.key[len(BESTMATCH_PREFIX):])
        if od is not None and od.better != d.better:
            says = f"{od.better} is better" if od.better else "no significant difference"
            notes.append(
                f"the verdict on {d.key} ({d.better} is better) is not confirmed by the order-preserving best match "
                f"({od.key}: {says}): the paper's best match rewards frames in any order and as often as they like"
            )
    return notes


def _coverage_notes(a: Run, b: Run, shared: list[str]) -> list[str]:
    """What each run failed or lacks: every verdict is on the ``shared`` samples only."""
    notes = []
    for label, run, other in (("A", a, b), ("B", b, a)):
        failed = [r.sample_id for r in run.records if not r.ok]
        own_ids = {r.sample_id for r in run.records}
        missing = [r.sample_id for r in other.records if r.sample_id not in own_ids]
        if failed:
            shown = ", ".join(failed[:5]) + (", ..." if len(failed) > 5 else "")
            notes.append(f"{label} ({run.method}) failed {len(failed)} sample(s) ({shown}): left out of every comparison")
        if missing:
            notes.append(f"{label} ({run.method}) has no record of {len(missing)} sample(s) the other run has: left out")
    if notes:
        notes.append(f"all differences are on the {len(shared)} sample(s) both runs finished")
    return notes


def _verdict(key: str, diff: float, low: float, high: float, hib: bool | None, n: int) -> tuple[str | None, str]:
    if n == 0:
        return None, f"no shared sample has a value for {key}"
    raw = f"B - A = {fmt.num(diff)}" + ("" if fmt.is_missing(low) else f" [{fmt.num(low)}, {fmt.num(high)}]")
    if fmt.is_missing(low):
        return None, f"{key}: {raw} (one shared sample: no confidence interval)"
    if low <= 0 <= high:
        return None, f"no significant difference on {key} ({raw})"
    if hib is None:
        return None, f"{key} differs: {raw} (direction unknown: no higher_is_better in the manifests)"
    # Improvement of B over A, positive when B is better.
    gain, g_low, g_high = (diff, low, high) if hib else (-diff, -high, -low)
    if gain > 0:
        return "B", f"B is better on {key} by {fmt.num(gain)} [{fmt.num(g_low)}, {fmt.num(g_high)}]"
    return "A", f"A is better on {key} by {fmt.num(-gain)} [{fmt.num(-g_high)}, {fmt.num(-g_low)}]"


def _value(record: dict[str, Any], key: str) -> float | None:
    v = record.metrics.get(key)
    return None if fmt.is_missing(v) else float(v)


def _one_run(path: Path | str | RunDir | Run) -> Run:
    runs = load_runs([path])
    if len(runs) != 1:
        raise ReportError(f"{path} holds {len(runs)} runs; pass one run folder (the one holding manifest.json)")
    return runs[0]
