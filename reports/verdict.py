"""Who remembers best, and whether the validity checks let a report say so.

A comparison (one dataset and protocol) is ranked by its primary metric. The would-be winner is
the best row among the methods (else among the sanity floors, else the ceilings). Before a report
names it, three checks look at it, each saying what fired:

* **coverage** (withholds the verdict): the paper's best match of the winner uses fewer than
  :data:`COVERAGE_MIN` of the ground-truth target frames (``bestmatch_coverage``): its matching
  reuses a few frames, as a frozen or looping video does, so its best-match scores cannot be
  trusted (a video frozen on one frame has a coverage of 1 / target length);
* **order** (qualifies it): the primary is one of the paper's best-match scores and the
  order-preserving best match (``bestmatch_ordered_*``) ranks another row of the pool first;
* **tie** (qualifies it): another row of the pool has exactly the winner's value (a shuffled
  replay ties the faithful replay on the paper's best match, say), so the order between them is
  arbitrary.

A method that ran with random weights (``random_weights=true``) is also said to be a smoke test.

Sanity methods are floors or ceilings only of the metric keys their ``bounds`` name (fnmatch
patterns); :func:`row_tag` gives a row one tag that never contradicts its cells' tags.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from magbench.reports import fmt
from magbench.reports.runs import higher_is_better

COVERAGE_MIN = 0.25  # share of distinct ground-truth frames below which best match is not trusted
COVERAGE_KEY = "bestmatch_coverage"
BESTMATCH_PREFIX, ORDERED_PREFIX = "bestmatch_", "bestmatch_ordered_"


def bound_of(method_manifest: dict[str, Any], kind: str, key: str) -> str | None:
    """"floor"/"ceiling" where a sanity method bounds ``key`` (its manifest's ``bounds``);
    runs recorded before bounds existed bound every key by their kind; None for a method."""
    if kind == "method":
        return None
    if "bounds" not in method_manifest:
        return kind if kind in ("floor", "ceiling") else None
    return next((b for pat, b in (method_manifest.get("bounds") or {}).items() if fnmatch.fnmatchcase(key, pat)), None)


def row_tag(kind: str, method_manifest: dict[str, Any]) -> str:
    """The one tag a row carries beside its name: its kind, or "sanity" for a sanity method that
    is a floor of some keys and a ceiling of others (replay-context: floor of the frame-aligned
    scores, ceiling of the correspondence scores), so the name never says "floor" beside a cell
    that says "ceiling"."""
    if kind == "method":
        return kind
    tags = set((method_manifest.get("bounds") or {}).values())
    return "sanity" if tags - {kind} else kind


@dataclass
class Entry:
    """One row of a comparison, as the verdict sees it: leaderboard values (``<key>_mean`` ...)."""

    label: str
    kind: str
    values: dict[str, Any]
    method_manifest: dict[str, Any] = field(default_factory=dict)
    random_weights: bool = False

    def mean(self, key: str) -> float | None:
        v = self.values.get(f"{key}_mean")
        return None if fmt.is_missing(v) else float(v)

    def bound(self, key: str) -> str | None:
        return bound_of(self.method_manifest, self.kind, key)


@dataclass
class Check:
    kind: str  # "coverage", "order", "tie", "random-weights"
    text: str
    withholds: bool = False


@dataclass
class Verdict:
    primary: str
    best: Entry | None  # the would-be winner (None: no row has a value)
    pool: list[Entry]  # the rows it was chosen among, best first
    what: str  # what the pool is: "method", "sanity floor", "ceiling", "sanity method"
    checks: list[Check]

    @property
    def withheld(self) -> bool:
        return any(c.withholds for c in self.checks)


def ties(a: float, b: float) -> bool:
    """Exactly equal, up to the last bits of a mean computed in another order."""
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


def verdict(entries: Sequence[Entry], primary: str, info: dict[str, Any]) -> Verdict:
    """The would-be winner on ``primary`` among ``entries`` (sorted best first) and the checks
    that fire for it."""
    scored = [e for e in entries if e.mean(primary) is not None]
    contenders = [e for e in scored if e.kind == "method"]
    floors = [e for e in scored if e.bound(primary) == "floor"]
    ceilings = [e for e in scored if e.bound(primary) == "ceiling"]
    pool = contenders or floors or ceilings or scored
    what = "method" if contenders else ("sanity floor" if floors else ("ceiling" if ceilings else "sanity method"))
    if not pool:
        return Verdict(primary, None, [], what, [])
    best = pool[0]
    return Verdict(primary, best, pool, what, winner_checks(best, pool, primary, info))


def winner_checks(best: Entry, pool: Sequence[Entry], primary: str, info: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    cov = best.mean(COVERAGE_KEY)
    if cov is not None and cov < COVERAGE_MIN:
        checks.append(Check("coverage", (
            f"its best match covers only {fmt.num(cov)} of the ground-truth target frames (below {COVERAGE_MIN:g}): "
            "it reuses a few frames, as a frozen or looping video does, so its best-match scores cannot be trusted"
        ), withholds=True))
    if primary.startswith(BESTMATCH_PREFIX) and not primary.startswith(ORDERED_PREFIX):
        ordered = ORDERED_PREFIX + primary[len(BESTMATCH_PREFIX):]
        hib = higher_is_better(ordered, info)
        have = [e for e in pool if e.mean(ordered) is not None]
        if hib is not None and best.mean(ordered) is not None and len(have) > 1:
            top = max(have, key=lambda e: e.mean(ordered)) if hib else min(have, key=lambda e: e.mean(ordered))
            if top is not best and not ties(top.mean(ordered), best.mean(ordered)):
                checks.append(Check("order", (
                    f"the order-preserving best match ({ordered}) ranks {top.label} first "
                    f"({fmt.num(top.mean(ordered))} vs {fmt.num(best.mean(ordered))}): the paper's best match "
                    "rewards frames in any order and as often as they like"
                )))
    tied = [e for e in pool if e is not best and ties(e.mean(primary), best.mean(primary))]
    if tied:
        checks.append(Check("tie", (
            f"{', '.join(e.label for e in tied)} {'ties' if len(tied) == 1 else 'tie'} it exactly on {primary} "
            f"({fmt.num(best.mean(primary))}): the order between them is arbitrary"
        )))
    if best.random_weights:
        checks.append(Check("random-weights", "it ran with random weights (random_weights=true): a smoke test, not a result"))
    return checks


def tied_pairs(entries: Sequence[Entry], key: str) -> list[tuple[Entry, Entry]]:
    """Every pair of rows with exactly the same value of ``key``."""
    out = []
    for i, a in enumerate(entries):
        for b in entries[i + 1:]:
            va, vb = a.mean(key), b.mean(key)
            if va is not None and vb is not None and ties(va, vb):
                out.append((a, b))
    return out
