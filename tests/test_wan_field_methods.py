"""The field's methods (reward-forcing, causal-forcing, longlive-rag) through ``magbench run`` on
the tiny config with random weights (CPU), in both memory sources; offline without weights they
fail before any work, naming the download command."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import magbench.baselines.wan  # noqa: F401  (registers the methods)
from magbench.errors import MissingWeightsError
from magbench.registry import METHODS

NEW = ["reward-forcing", "causal-forcing", "causal-forcing-framewise", "longlive-rag"]


def _cli(*args):
    """``magbench ARGS`` in this process: its exit code."""
    from magbench import cli

    old = sys.argv
    sys.argv = ["magbench", *map(str, args)]
    try:
        cli.main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    return 0


@pytest.mark.parametrize("source", ["generated", "ground-truth"])
@pytest.mark.parametrize("name", NEW)
def test_method_runs_through_magbench_run_on_the_tiny_config(name, source, synth_dir, tmp_path):
    out = tmp_path / "run"
    code = _cli(
        "run", "--method", name, "--dataset", f"synthetic:{synth_dir}", "--opt", "config=tiny", "--opt",
        "random_weights=true", "--limit", "1", "--device", "cpu", "--metrics", "psnr", "--memory-source", source,
        "--out", out,
    )
    assert code == 0
    record = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    assert record["status"] == "ok" and record["memory"]["kv_bytes_end"] > 0
    # LongLive-RAG's evicted frames live in host memory, reported beside the device bytes;
    # the other memories are on the device only.
    assert (record["memory"]["host_bytes_end"] > 0) == (name == "longlive-rag")


@pytest.mark.parametrize("name", NEW)
def test_offline_without_weights_the_run_fails_at_once_naming_the_download(name, synth_dir, tmp_path, capsys):
    code = _cli("run", "--method", name, "--dataset", f"synthetic:{synth_dir}", "--limit", "1", "--device", "cpu",
                "--metrics", "psnr", "--out", tmp_path / "run")
    assert code == 2
    assert f"magbench download --method {name}" in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "run").exists()  # refused before the run began
    with pytest.raises(MissingWeightsError, match="magbench download --method"):  # the first missing one's
        METHODS.get(name)().load("cpu", torch.float32)


@pytest.mark.parametrize("name", NEW)
def test_method_lists_exactly_its_own_weights(name):
    names = [w.name for w in METHODS.get(name).needs.weights]
    assert names[0] == "wan2.1-t2v-1.3b-diffusers" and len(names) >= 2
    assert all(w.download_command == f"magbench download --method {name}" for w in METHODS.get(name).needs.weights[1:])


@pytest.mark.parametrize("name", ["reward-forcing", "longlive-rag"])
def test_cuda_graphs_are_refused_where_the_memory_decides_per_block(name):
    from magbench.errors import MagbenchError

    with pytest.raises(MagbenchError, match="cuda_graphs"):
        METHODS.get(name)(cuda_graphs=True)
