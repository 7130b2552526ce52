"""`magbench download`: every artefact is tried, all failures are named with the way to fetch them by hand."""

import shlex
from pathlib import Path

import pytest
from rich.console import Console

from magbench.download import fetch_all, hf_download_command, manual_hint, missing_weights_message
from magbench.errors import MagbenchError
from magbench.hub import HubArtifact


def _art(name, fetch=None, **kw):
    return HubArtifact(name=name, repo_id=f"org/{name}", required=("w.safetensors",), fetch=fetch, **kw)


def test_every_artefact_is_tried_and_all_failures_are_reported(tmp_path):
    tried = []

    def fails(art):
        tried.append(art.name)
        raise MagbenchError(f"{art.name}: could not download (offline)")

    def works(art):
        tried.append(art.name)
        (tmp_path / "w.safetensors").write_bytes(b"")
        return tmp_path

    arts = [_art("a", fails), _art("b", works), _art("c", fails, env_var="MAGBENCH_C_DIR")]
    console = Console(record=True, width=300)
    with pytest.raises(MagbenchError, match=r"2 of 3 downloads failed: a \(could not download \(offline\)\); c \(could not download"):
        fetch_all(arts, console)
    assert tried == ["a", "b", "c"]
    out = console.export_text()
    assert "b: ready at" in out and "a: failed" in out and "c: failed" in out
    assert "set MAGBENCH_C_DIR=DIR" in out


def test_all_present_is_no_error(tmp_path, monkeypatch):
    (tmp_path / "w.safetensors").write_bytes(b"")
    monkeypatch.setenv("MAGBENCH_X_DIR", str(tmp_path))
    console = Console(record=True)
    fetch_all([_art("x", env_var="MAGBENCH_X_DIR")], console)
    assert "already present" in console.export_text()


def test_hints_use_the_hf_command_of_huggingface_hub():
    files = HubArtifact("w", "Wan-AI/Wan2.1-T2V-1.3B", files=("config.json", "diffusion_pytorch_model.safetensors"))
    assert hf_download_command(files) == "hf download Wan-AI/Wan2.1-T2V-1.3B config.json diffusion_pytorch_model.safetensors"
    globs = HubArtifact("d", "xilluill/MAG", revision="abc123", files=("*.csv", "**/*.mp4"), repo_type="dataset")
    cmd = hf_download_command(globs, local_dir="DIR")
    assert shlex.split(cmd) == ["hf", "download", "xilluill/MAG", "--include", "*.csv", "--include", "**/*.mp4",
                                "--repo-type", "dataset", "--revision", "abc123", "--local-dir", "DIR"]
    assert manual_hint(HubArtifact("d", "xilluill/MAG", files=("*.csv",), env_var="MAGBENCH_DATA")).endswith("then set MAGBENCH_DATA=DIR")


def test_hf_download_command_parses_with_the_installed_cli():
    """The flags exist in huggingface_hub's own `hf download` (parsed, nothing fetched)."""
    from click.testing import CliRunner

    pytest.importorskip("huggingface_hub.cli.hf")
    from huggingface_hub.cli.hf import app

    art = HubArtifact("d", "xilluill/MAG", revision="v1", files=("*.csv",), repo_type="dataset")
    args = shlex.split(hf_download_command(art, local_dir="DIR"))[1:] + ["--help"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output


def test_weights_not_on_the_hub_are_explained_with_their_url():
    from magbench.metrics.weights import ALEXNET

    assert manual_hint(ALEXNET) == (
        "by hand: download https://download.pytorch.org/models/alexnet-owt-7be5be79.pth into a folder DIR, "
        "then set MAGBENCH_ALEXNET_DIR=DIR"
    )


def test_skip_warning_names_the_download_command_and_the_local_copy_variable():
    from magbench.harness import create_metrics

    metrics, skipped = create_metrics(["psnr", "lpips"], "cpu", {}, is_default=True)
    assert [m.name for m in metrics] == ["psnr"] or "lpips" in skipped
    if "lpips" in skipped:  # the hermetic test environment has no AlexNet weights
        assert skipped["lpips"] == (
            "weights alexnet-torchvision missing: run `magbench download --metrics`, or point "
            "MAGBENCH_ALEXNET_DIR at a local copy"
        )
    assert missing_weights_message([_art("a", env_var="A_DIR"), _art("b")]) == (
        "weights a, b missing: run `magbench download --metrics`, or point A_DIR at a local copy"
    )


def test_every_local_copy_variable_is_documented_in_the_readme():
    from magbench.download import status_table
    from magbench.hub import ARTIFACTS

    status_table(None)  # imports every component, which registers its artefacts
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    variables = {a.env_var for a in ARTIFACTS.values() if a.env_var}
    assert {"MAGBENCH_DATA", "MAGBENCH_ALEXNET_DIR", "MAGBENCH_MAG"} <= variables
    assert [v for v in sorted(variables) if f"| `{v}` |" not in readme] == []
