import os
from pathlib import Path

import pytest

from magbench.errors import MagbenchError, MissingWeightsError
from magbench.hub import HubArtifact


def _fake_hf_cache(root: Path, repo_id: str, revision: str, files: dict[str, bytes]) -> Path:
    """The HuggingFace cache layout: refs/<rev> -> commit, snapshots/<commit>/<files>."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / revision).write_text(commit)
    for name, data in files.items():
        p = repo / "snapshots" / commit / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return repo / "snapshots" / commit


def test_artifact_in_the_hf_cache_is_found_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snap = _fake_hf_cache(tmp_path, "org/model", "main", {"weights.safetensors": b"x"})
    art = HubArtifact("m", "org/model", required=("weights.safetensors",))
    assert art.local_path() == snap


def test_artifact_missing_a_required_file_is_not_present_and_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _fake_hf_cache(tmp_path, "org/model", "main", {"config.json": b"{}"})
    art = HubArtifact("m", "org/model", required=("weights.safetensors",), download_command="magbench download --method m")
    assert not art.is_present()
    with pytest.raises(MissingWeightsError, match="magbench download --method m"):
        art.require()


def test_env_var_points_at_a_local_copy(tmp_path, monkeypatch):
    (tmp_path / "w.bin").write_bytes(b"1")
    monkeypatch.setenv("MY_WEIGHTS", str(tmp_path))
    art = HubArtifact("m", "org/model", required=("w.bin",), env_var="MY_WEIGHTS")
    assert art.require() == tmp_path
    monkeypatch.setenv("MY_WEIGHTS", str(tmp_path / "nope"))
    with pytest.raises(MissingWeightsError, match="MY_WEIGHTS"):
        art.require()


def test_download_calls_snapshot_download_with_revision_and_patterns(tmp_path, monkeypatch):
    calls = {}

    def fake_snapshot_download(**kw):  # only the network call is replaced
        calls.update(kw)
        (tmp_path / "a.safetensors").write_bytes(b"1")
        return str(tmp_path)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    art = HubArtifact("m", "org/model", revision="abc123", files=("*.safetensors",), required=("a.safetensors",))
    assert art.download() == tmp_path
    assert calls["repo_id"] == "org/model" and calls["revision"] == "abc123"
    assert calls["allow_patterns"] == ["*.safetensors"]


def test_download_offline_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    art = HubArtifact("m", "org/definitely-not-cached", files=("*.json",))
    with pytest.raises(MagbenchError, match="could not download org/definitely-not-cached"):
        art.download()


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _mag_weights_files() -> dict[str, bytes]:
    return {"checkpoints/bc400/config.json": b"{}", "checkpoints/bc400/diffusion_pytorch_model.safetensors": b"w"}


def _magbench_files() -> dict[str, bytes]:
    return {"MAG-Bench/magbench.csv": b"video_path,raw_caption,duration(sec)\na.mp4,x,1\n", "MAG-Bench/videos/a.mp4": b"v"}


def test_glob_required_entries_need_one_matching_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    _fake_hf_cache(tmp_path, "org/model", "main", {"deep/down/model.safetensors": b"x"})
    assert HubArtifact("m", "org/model", required=("*.safetensors",)).is_present()  # * crosses folders
    assert not HubArtifact("m", "org/model", required=("*.bin",)).is_present()
    # No required files: something matching the artefact's own patterns must be there.
    assert HubArtifact("m", "org/model", files=("deep/*",)).is_present()
    assert not HubArtifact("m", "org/model", files=("*.pt",)).is_present()


def test_downloading_only_the_dataset_leaves_the_mag_weights_absent(tmp_path, monkeypatch):
    from magbench.baselines.wan.checkpoint import MAG
    from magbench.data.magbench_hub import MAGBENCH

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("MAGBENCH_MAG", raising=False)
    monkeypatch.delenv("MAGBENCH_DATA", raising=False)
    snap = _fake_hf_cache(tmp_path, "xilluill/MAG", "main", _magbench_files())  # one snapshot, shared
    assert MAGBENCH.is_present() and not MAG.is_present()
    for name, data in _mag_weights_files().items():  # then the weights land in the same snapshot
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        (snap / name).write_bytes(data)
    assert MAG.is_present() and MAG.local_path() == snap


def test_weights_only_snapshot_does_not_count_as_the_dataset(tmp_path, monkeypatch):
    from magbench.baselines.wan.checkpoint import MAG
    from magbench.data.magbench_hub import MAGBENCH

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("MAGBENCH_MAG", raising=False)
    monkeypatch.delenv("MAGBENCH_DATA", raising=False)
    _fake_hf_cache(tmp_path, "xilluill/MAG", "main", _mag_weights_files())
    assert MAG.is_present() and not MAGBENCH.is_present()


def test_mag_patterns_fetch_model_folders_at_any_depth_and_no_videos():
    from huggingface_hub.utils import filter_repo_objects

    from magbench.baselines.wan.checkpoint import MAG

    repo = ["README.md", "a/b/gen/config.json", "a/b/gen/diffusion_pytorch_model.bin", "mem/config.json",
            "mem/diffusion_pytorch_model-00001-of-00002.safetensors", "mem/diffusion_pytorch_model.safetensors.index.json",
            "MAG-Bench/videos/a.mp4", "MAG-Bench/magbench.csv"]
    got = sorted(filter_repo_objects(repo, allow_patterns=list(MAG.files)))
    assert got == sorted(p for p in repo if "/config.json" in p or "diffusion_pytorch_model" in p)


def test_resolved_commit_is_the_snapshot_the_local_copy_came_from(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    _fake_hf_cache(tmp_path / "hub", "org/model", "main", {"w.safetensors": b"x"})
    art = HubArtifact("m", "org/model", required=("w.safetensors",), env_var="MY_COPY")
    assert art.resolved_commit() == COMMIT
    # A --local-dir download records its commit in .cache/huggingface/download/*.metadata.
    local = tmp_path / "local"
    (local / ".cache" / "huggingface" / "download").mkdir(parents=True)
    (local / ".cache" / "huggingface" / "download" / "w.safetensors.metadata").write_text(f"{'f' * 40}\netag\n1.0\n")
    (local / "w.safetensors").write_bytes(b"x")
    monkeypatch.setenv("MY_COPY", str(local))
    assert art.resolved_commit() == "f" * 40
    (local / ".cache" / "huggingface" / "download" / "w.safetensors.metadata").unlink()
    assert art.resolved_commit() is None  # a hand-made copy: origin unknown
    monkeypatch.setenv("MY_COPY", str(tmp_path / "absent"))
    assert art.resolved_commit() is None


def test_a_pinned_revision_is_downloaded_and_then_used_for_lookups(tmp_path, monkeypatch):
    from rich.console import Console

    from magbench.download import fetch
    from magbench.hub import pinned_revisions

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("MAGBENCH_CACHE", str(tmp_path / "mb"))
    pinned = "a" * 40
    _fake_hf_cache(tmp_path / "hub", "org/model", "main", {"w.safetensors": b"main"})
    art = HubArtifact("m", "org/model", files=("*.safetensors",), required=("w.safetensors",))
    assert art.resolved_commit() == COMMIT
    calls = {}

    def fake_snapshot_download(**kw):  # writes the pinned commit's snapshot as the hub client would
        calls.update(kw)
        snap = tmp_path / "hub" / "models--org--model" / "snapshots" / kw["revision"]
        snap.mkdir(parents=True)
        (snap / "w.safetensors").write_bytes(b"pinned")
        return str(snap)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    fetch(art, Console(file=open(tmp_path / "log", "w")), revision=pinned)
    assert calls["revision"] == pinned and pinned_revisions() == {"m": pinned}
    assert art.effective_revision == pinned and art.resolved_commit() == pinned


def test_a_failed_pinned_download_keeps_the_previous_pin(tmp_path, monkeypatch):
    from rich.console import Console

    from magbench.download import fetch
    from magbench.hub import pinned_revisions

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAGBENCH_CACHE", str(tmp_path / "mb"))
    art = HubArtifact("m", "org/not-cached", files=("*.json",))
    with pytest.raises(MagbenchError, match="could not download org/not-cached@v2"):
        fetch(art, Console(file=open(tmp_path / "log", "w")), revision="v2")
    assert pinned_revisions() == {}


def test_revision_option_names_the_artefact_when_the_selection_spans_repositories():
    from magbench.download import parse_revisions

    a = HubArtifact("wan", "org/wan")
    b = HubArtifact("mag", "org/mag")
    c = HubArtifact("mag-data", "org/mag")
    assert parse_revisions(["v1"], [b, c]) == {"mag": "v1", "mag-data": "v1"}
    assert parse_revisions(["mag=abc"], [a, b]) == {"mag": "abc"}
    with pytest.raises(MagbenchError, match="ARTEFACT=v1"):
        parse_revisions(["v1"], [a, b])
    with pytest.raises(MagbenchError, match="'nope' is not among"):
        parse_revisions(["nope=v1"], [a, b])


def test_run_manifest_records_the_commit_of_the_dataset_it_used(synth_dir, tmp_path, monkeypatch):
    import shutil

    from magbench.harness import Harness, RunConfig
    from magbench.store import RunDir

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("MAGBENCH_DATA", raising=False)
    snap = _fake_hf_cache(tmp_path / "hub", "xilluill/MAG", "main", {})
    shutil.copytree(synth_dir, snap, dirs_exist_ok=True)  # a MAG-Bench-schema CSV + videos
    cfg = RunConfig(method="oracle", dataset="magbench", out=tmp_path / "run", device="cpu", metrics=["psnr"], limit=1)
    s = Harness(cfg).run(progress=False)
    assert s.ok == 1, s.records[0].get("error")
    assert RunDir(s.run_dir).manifest()["artifacts"] == {"magbench": COMMIT}
