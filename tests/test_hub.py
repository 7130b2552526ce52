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
