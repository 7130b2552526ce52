"""Which process runs which sample, and where it writes.

A sample's shard is ``crc32(sample_id) % world_size``: it depends only on the id and the number of
shards, never on the order of the list, the limit or the machine, so a re-run with the same world
size hands every sample to the same shard. Correctness does not depend on it: the harness skips
samples finished in *any* record file, so a finished sample is never redone whatever the new
world size.

Each shard writes its own record file, named after its rank *and* the world size
(``samples.0-of-4.jsonl``): files of an earlier launch with another world size are never appended
to by the new one, are still merged by every reader (``samples*.jsonl``), and two live processes
never share a file. One shard (world size 1) writes the plain ``samples.jsonl``.

The plan (``RUN/shards.json``) records the split of the latest launch so that ``magbench status``
can say what each shard has left without loading the dataset.
"""

from __future__ import annotations

import datetime as _dt
import json
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from magbench.data import VideoSample
from magbench.errors import MagbenchError
from magbench.store import atomic_write_json, lock_name, records_name  # noqa: F401 (names of the run folder's files)

PLAN = "shards.json"


def shard_of(sample_id: str, world_size: int) -> int:
    """The shard of ``sample_id`` among ``world_size`` shards (stable across runs and machines)."""
    if world_size < 1:
        raise MagbenchError(f"world size {world_size}: must be at least 1")
    return zlib.crc32(sample_id.encode("utf-8")) % world_size


def shard_samples(samples: Sequence[VideoSample], rank: int, world_size: int) -> list[VideoSample]:
    """The samples of shard ``rank``, in dataset order."""
    if not 0 <= rank < world_size:
        raise MagbenchError(f"shard {rank}: must be in [0, {world_size})")
    return [s for s in samples if shard_of(s.sample_id, world_size) == rank]


@dataclass
class ShardPlan:
    """The split of one launch: shard -> sample ids and record file."""

    world_size: int
    launcher: str
    shards: list[list[str]]
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, sample_ids: Sequence[str], world_size: int, launcher: str, **extra: Any) -> "ShardPlan":
        shards: list[list[str]] = [[] for _ in range(world_size)]
        for sid in sample_ids:
            shards[shard_of(sid, world_size)].append(sid)
        return cls(world_size=world_size, launcher=launcher, shards=shards, extra=dict(extra))

    @property
    def sample_ids(self) -> list[str]:
        return [sid for shard in self.shards for sid in shard]

    def records(self, rank: int) -> str:
        return records_name(rank, self.world_size)

    def empty_shards(self) -> list[int]:
        return [r for r, ids in enumerate(self.shards) if not ids]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["records"] = [self.records(r) for r in range(self.world_size)]
        return d

    def write(self, run_path: Path) -> None:
        atomic_write_json(Path(run_path) / PLAN, self.to_dict())

    @classmethod
    def read(cls, run_path: Path) -> "ShardPlan | None":
        """The plan of the latest launch, or None for runs started without one."""
        path = Path(run_path) / PLAN
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise MagbenchError(f"{path}: unreadable shard plan ({exc}); delete it, the next launch rewrites it") from exc
        return cls(
            world_size=int(d["world_size"]), launcher=str(d.get("launcher", "?")),
            shards=[list(s) for s in d["shards"]], created_at=str(d.get("created_at", "")),
            extra=dict(d.get("extra", {})),
        )
