"""The official MAG-Bench, hosted in the HuggingFace repository ``xilluill/MAG``.

The repository also holds the MAG checkpoints; only the benchmark's CSV and videos are fetched.
A local copy can be used instead with ``--dataset magbench:PATH`` or ``MAGBENCH_DATA=PATH``; to
make one by hand: ``hf download xilluill/MAG --include '*.csv' --include '**/*.csv'
--include '**/*.mp4' --local-dir PATH`` (what ``magbench download`` prints when it fails).
"""

from __future__ import annotations

from magbench.data.dataset import Dataset, load_csv_dataset
from magbench.hub import HubArtifact, register_artifact

MAGBENCH = register_artifact(
    HubArtifact(
        name="magbench",
        repo_id="xilluill/MAG",
        revision="main",
        files=("*.csv", "**/*.csv", "**/*.mp4"),
        required=(),
        env_var="MAGBENCH_DATA",
        download_command="magbench download --dataset magbench",
        description="MAG-Bench: leave-and-return camera videos, CSV + mp4",
        find_local=None,
    )
)


def _find_local_magbench(art: HubArtifact):
    """A cached snapshot counts as present only if it holds a CSV in the schema and videos."""
    from magbench.hub import _cached_snapshot

    snap = _cached_snapshot(art)
    if snap is None:
        return None
    from magbench.data.dataset import _has_columns

    if any(_has_columns(c) for c in snap.glob("**/*.csv")) and any(snap.glob("**/*.mp4")):
        return snap
    return None


object.__setattr__(MAGBENCH, "find_local", _find_local_magbench)


def load_magbench() -> Dataset:
    root = MAGBENCH.require()  # immediate, offline: names the download command
    return load_csv_dataset(root, dataset_id="magbench", revision=MAGBENCH.revision)
