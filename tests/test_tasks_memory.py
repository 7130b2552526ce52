"""The memory tasks (``memory-recall``, ``memory-reconstruction``): scoring, records, refusals.

Scores are checked against formulas written out here (PSNR by hand in float64, SSIM with
scikit-image's ``structural_similarity`` in the configuration the repository's SSIM matches);
the tasks run end to end through the harness on tiny random-weight methods (CPU).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import magbench.baselines  # noqa: F401
from magbench.errors import MagbenchError
from magbench.harness import Harness, RunConfig
from magbench.method import RecalledBlock
from magbench.tasks import TASKS
from magbench.tasks.memory import MemoryPart, score_blocks

TINY = {"config": "tiny", "random_weights": True}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _u8(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x.clamp(0, 1) * 255) / 255


def test_block_scores_match_formulas_by_hand():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    clip = _u8(torch.rand(21, 3, 24, 24, generator=g))
    noisy = (clip + 0.05 * torch.randn(clip.shape, generator=g)).clamp(0, 1)
    lat = torch.randn(2, 1, 3, 4, 4, 4, generator=g)
    blocks = [
        RecalledBlock(0, 0, noisy[:9], latents=lat[0], reference_latents=lat[0] * 0.5),
        RecalledBlock(1, 9, noisy[9:], latents=lat[1], reference_latents=lat[1]),
    ]
    s = score_blocks(blocks, clip)
    rec = _u8(noisy).double().numpy()
    gt = clip.double().numpy()
    psnr = [10 * np.log10(1 / np.mean((rec[i] - gt[i]) ** 2)) for i in range(21)]
    ssim = [structural_similarity(rec[i], gt[i], data_range=1, channel_axis=0, gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False) for i in range(21)]
    assert s.age == [1, 0] and s.start == [0, 9] and s.frames == [9, 12]
    np.testing.assert_allclose(s.psnr, [np.mean(psnr[:9]), np.mean(psnr[9:])], rtol=1e-9)
    np.testing.assert_allclose(s.ssim, [np.mean(ssim[:9]), np.mean(ssim[9:])], atol=1e-5)
    np.testing.assert_allclose(s.latent_mse, [float((lat[0] * 0.5).double().square().mean()), 0.0], rtol=1e-9)
    means = s.means()
    assert means["recall_psnr"] == pytest.approx(np.mean(psnr)) and means["recall_latent_mse"] == pytest.approx(np.mean(s.latent_mse))
    assert s.lpips is None and "recall_lpips" not in means


def test_blocks_out_of_place_are_refused():
    clip = torch.rand(21, 3, 24, 24)
    with pytest.raises(MagbenchError, match="block 1 has frames"):
        score_blocks([RecalledBlock(0, 0, clip[:9]), RecalledBlock(1, 12, clip[9:])], clip)
    with pytest.raises(MagbenchError, match="expected 0..1"):
        score_blocks([RecalledBlock(1, 9, clip[9:]), RecalledBlock(0, 0, clip[:9])], clip)


def test_tasks_are_registered_with_what_they_need():
    assert {"memory-recall", "memory-reconstruction"} <= set(TASKS.names())
    assert TASKS.get("memory-recall").requires == frozenset({"recall"})
    assert TASKS.get("memory-reconstruction").requires == frozenset({"reconstruct"})


@pytest.mark.parametrize("task, method", [("memory-recall", "repeat-last"), ("memory-reconstruction", "self-forcing")])
def test_method_lacking_the_hook_is_refused_in_one_line(tmp_path, task, method):
    opts = TINY if method == "self-forcing" else {}
    with pytest.raises(MagbenchError) as err:
        Harness(RunConfig(method=method, task=task, out=tmp_path / "run", method_options=dict(opts)))
    msg = str(err.value)
    assert "\n" not in msg and method in msg and task in msg and ("recall" in msg or "reconstruct" in msg)
    assert not (tmp_path / "run").exists()


def _run(tmp_path, task: str, method: str, task_options=None, **options):
    cfg = RunConfig(
        method=method, task=task, out=tmp_path / f"{method}-{task}", limit=1, device="cpu", method_options=options,
        metric_options={"lpips": {"random_weights": True}}, task_options=dict(task_options or {}),
    )
    summary = Harness(cfg).run(progress=False)
    assert summary.ok == 1, [r.error for r in summary.records]
    return summary.records[0]


def test_recall_task_records_per_block_scores(tmp_path):
    rec = _run(tmp_path, "memory-recall", "self-forcing", **TINY)
    part = rec.part
    assert isinstance(part, MemoryPart)
    n = len(part.block_index)
    assert n >= 2 and part.block_age == list(range(n - 1, -1, -1)) and part.num_frames == 12 * n - 3
    assert len(part.block_psnr) == len(part.block_ssim) == len(part.block_lpips) == len(part.block_latent_mse) == n
    assert part.memory_bytes_per_frame == pytest.approx(part.memory_bytes / part.num_frames) and part.memory_bytes > 0
    for key in ("recall_psnr", "recall_ssim", "recall_lpips", "recall_latent_mse", "memory_bytes_per_frame"):
        assert np.isfinite(rec.metrics[key]), key
    assert rec.timing.extras["recall_s"] > 0
    line = json.loads(json.dumps(rec.to_json()))
    assert line["task"] == "memory-recall" and line["block_psnr"] == part.block_psnr


def test_reconstruction_task_runs_mag(tmp_path):
    rec = _run(tmp_path, "memory-reconstruction", "mag", **TINY)
    part = rec.part
    assert part.block_psnr and part.prompt == rec.caption and part.num_frames % 12 == 9
    assert part.memory_bytes > 0 and rec.timing.extras["reconstruct_s"] > 0


def test_reference_caption_reuse_gives_every_sample_the_first_selected_caption():
    """The reference's MemoryModelPipeline keeps the first video's caption embedding; with the
    option every sample gets the caption of the run's first selected sample, whatever runs first."""
    from types import SimpleNamespace

    samples = [SimpleNamespace(caption=f"caption {i}") for i in range(3)]
    harness = SimpleNamespace(selected_samples=lambda: samples)
    cls = TASKS.get("memory-reconstruction")
    reuse = cls(RunConfig(method="mag", task="memory-reconstruction", task_options={"reference_caption_reuse": True}))
    own = cls(RunConfig(method="mag", task="memory-reconstruction"))
    assert [reuse._caption(harness, s) for s in reversed(samples)] == ["caption 0"] * 3
    assert [own._caption(harness, s) for s in samples] == ["caption 0", "caption 1", "caption 2"]
    assert reuse.protocol_id() != own.protocol_id()  # never pooled
    with pytest.raises(MagbenchError, match="reference_caption_reuse"):
        cls(RunConfig(method="mag", task="memory-reconstruction", task_options={"reference_caption_reuse": "maybe"}))


def test_vae_roundtrip_is_the_ceiling_of_latent_mse(tmp_path):
    rec = _run(tmp_path, "memory-recall", "vae-roundtrip", **TINY)
    assert rec.metrics["recall_latent_mse"] == 0.0
    with pytest.raises(MagbenchError, match="replay"):
        Harness(RunConfig(method="vae-roundtrip", out=tmp_path / "replay", method_options=dict(TINY)))
