"""Shared fixtures. Tests are hermetic: caches point into a temporary folder and the hub is
offline, so nothing here can reach (or wait for) the network."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

_SESSION_CACHE = Path(os.environ.get("PYTEST_MAGBENCH_CACHE", "")) if os.environ.get("PYTEST_MAGBENCH_CACHE") else None


@pytest.fixture(scope="session", autouse=True)
def _hermetic_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("env")
    old = {k: os.environ.get(k) for k in ("MAGBENCH_CACHE", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HF_HOME", "TORCH_HOME", "COLUMNS")}
    # Rich wraps output at the console width (80 when not a terminal; it reads COLUMNS on every
    # print), so where a message breaks depends on the length of the temporary path it names
    # (pytest-9 vs pytest-153, or --basetemp) and a substring assert could pass or fail by run.
    # A wide console for the code under test, here and in subprocesses (they inherit it).
    os.environ["COLUMNS"] = "400"
    os.environ["MAGBENCH_CACHE"] = str(root / "magbench")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(root / "hf")
    os.environ["HF_HUB_CACHE"] = str(root / "hf" / "hub")
    os.environ["TORCH_HOME"] = str(root / "torch")
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic leave-and-return set (3 videos, 10 s, 64x112), written once."""
    from magbench.data.synthetic import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth")
    generate(out, SynthConfig(n=3, height=64, width=112, seconds=10.0, seed=0))
    return out


# Metrics that need no downloaded weights: the LPIPS family runs on the lpips package's
# random backbone (pnet_rand) in tests.
TEST_METRICS = "psnr,ssim,lpips,bestmatch,correspondence"
TEST_METRIC_OPTS = ["lpips.random_weights=true", "bestmatch.random_weights=true", "correspondence.random_weights=true"]


def wait_for_lines(path: Path, n: int, proc=None, timeout: float = 300) -> None:
    """Until record file ``path`` holds ``n`` whole lines: with the pipelined harness a sample's
    record is appended by the writer thread while the next sample already generates."""
    deadline = time.monotonic() + timeout
    wait_for_file(path, proc, timeout)
    while path.read_bytes().count(b"\n") < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never reached {n} lines")
        time.sleep(0.01)


def wait_for_file(path: Path, proc=None, timeout: float = 300) -> None:
    """Until the process under test creates ``path`` (it does so when it reaches the point the test
    needs): synchronisation on that event; the short pause between looks is only a poll interval."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read()[-2000:] if getattr(proc, "stderr", None) else ""
            raise AssertionError(f"the process ended (code {proc.returncode}) before creating {path.name}: {err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} never appeared")
        time.sleep(0.01)
