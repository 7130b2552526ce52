"""One loaded method serving several harnesses (``Harness(config, method=...)``): both memory
sources of a method after one load, as benchmarks of the paper's table run them."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from magbench.errors import MagbenchError
from magbench.harness import Harness, RunConfig, load_method
from magbench.protocol import ReplayProtocol
from magbench.store import RunDir, record_line

sys.path.insert(0, str(Path(__file__).parent / "plugins"))  # magbench_test_methods


def _lines(run: Path) -> list[dict]:
    out = []
    for rec in RunDir(run).records():
        data = json.loads(record_line(rec))
        for k in ("timing", "memory", "finished_at"):
            data.pop(k)
        out.append(data)
    return out


def test_a_loaded_method_runs_both_memory_sources_without_loading_again(synth_dir, tmp_path):
    import magbench_test_methods as plugins

    plugins.CountsLoads.loads = plugins.CountsLoads.closes = 0
    base = RunConfig(method="magbench_test_methods:CountsLoads", dataset=f"synthetic:{synth_dir}", device="cpu",
                     metrics=["psnr"], limit=2)
    method = load_method(base)
    for source in ("generated", "ground-truth"):
        cfg = replace(base, out=tmp_path / source, protocol=ReplayProtocol(memory_source=source))
        assert Harness(cfg, method=method).run(progress=False).ok == 2
    assert (plugins.CountsLoads.loads, plugins.CountsLoads.closes) == (1, 0)  # the caller closes it
    # The same records as a harness that loads (and closes) its own method.
    own = replace(base, out=tmp_path / "own")
    Harness(own).run(progress=False)
    assert (plugins.CountsLoads.loads, plugins.CountsLoads.closes) == (2, 1)
    assert _lines(tmp_path / "own") == _lines(tmp_path / "generated")


def test_a_method_of_other_options_is_refused_in_one_line(synth_dir, tmp_path):
    cfg = RunConfig(method="replay-context", dataset=f"synthetic:{synth_dir}", device="cpu", out=tmp_path / "r")
    other = load_method(RunConfig(method="repeat-last", device="cpu"))
    with pytest.raises(MagbenchError, match=r"Harness\(method=\.\.\.\): the method given is .*load_method") as exc:
        Harness(cfg, method=other)
    assert "\n" not in str(exc.value) and not (tmp_path / "r").exists()
