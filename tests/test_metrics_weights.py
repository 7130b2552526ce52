"""Metric weights: declared as hub artefacts, checked before any backbone is built, and loaded
from the places the download command puts them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from magbench.errors import MissingWeightsError
from magbench.hub import ARTIFACTS
from magbench.metrics.bestmatch import BestMatch
from magbench.metrics.consistency import BackgroundConsistency, SubjectConsistency
from magbench.metrics.correspondence import Correspondence
from magbench.metrics.reconstruction import LPIPS
from magbench.metrics.weights import ALEXNET, ALEXNET_FILE, CLIP, DINO

NEEDS = {LPIPS: ALEXNET, BestMatch: ALEXNET, Correspondence: ALEXNET,
         SubjectConsistency: DINO, BackgroundConsistency: CLIP}


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    for art in (ALEXNET, DINO, CLIP):
        monkeypatch.delenv(art.env_var, raising=False)
    return tmp_path


def test_metric_artefacts_are_registered_for_the_download_command():
    for art in (ALEXNET, DINO, CLIP):
        assert ARTIFACTS[art.name] is art
        assert art.download_command == "magbench download --metrics"
        assert art.required
    assert DINO.repo_id == "timm/vit_base_patch16_224.dino"
    assert CLIP.repo_id == "timm/vit_base_patch32_clip_224.openai"
    assert ALEXNET.fetch is not None and ALEXNET.find_local is not None
    for cls, art in NEEDS.items():
        assert art in cls.weights


@pytest.mark.parametrize("cls", list(NEEDS), ids=lambda c: c.__name__)
def test_missing_weights_fail_within_a_second_naming_the_download_command(cls, empty_caches):
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError, match="magbench download --metrics"):
        cls()
    assert time.perf_counter() - start < 1.0


def test_alexnet_is_found_in_the_torch_hub_checkpoints_folder(empty_caches):
    assert not ALEXNET.is_present()
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, ckpt / ALEXNET_FILE)
    assert ALEXNET.local_path() == ckpt


def test_alexnet_checkpoint_is_loaded_into_the_lpips_trunk(empty_caches):
    import torchvision

    torch.manual_seed(11)
    features = torchvision.models.alexnet(weights=None).features
    # torchvision's key layout; the classifier is left out only to keep the file small.
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    ckpt = Path(torch.hub.get_dir()) / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / ALEXNET_FILE)
    metric = LPIPS()
    convs = [m for m in metric.model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    tv_convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == len(tv_convs) == 5
    for ours, theirs in zip(convs, tv_convs):
        assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)


def test_weights_dir_without_the_file_is_refused_at_once(tmp_path: Path):
    with pytest.raises(MissingWeightsError, match="lacks model.safetensors"):
        SubjectConsistency(weights_dir=str(tmp_path))
    with pytest.raises(MissingWeightsError, match="lacks open_clip_model.safetensors"):
        BackgroundConsistency(weights_dir=str(tmp_path))
    with pytest.raises(MissingWeightsError, match=ALEXNET_FILE):
        BestMatch(weights_dir=str(tmp_path))


def test_default_set_keeps_the_weight_free_part_of_correspondence_without_alexnet(empty_caches):
    """Without AlexNet the default set drops LPIPS-only metrics but still computes correspondence's
    PSNR/SSIM (which need no weights), and says what it left out."""
    import torch

    from magbench.metrics.base import MetricInputs
    from magbench.scoring import create_metrics

    metrics, skipped = create_metrics(["lpips", "correspondence"], "cpu", {}, is_default=True)
    assert [m.name for m in metrics] == ["correspondence"] and "lpips" in skipped
    assert "ran without them: lpips=False" in skipped["correspondence"]
    assert metrics[0].config()["options"].get("lpips") is False  # recorded in the run's identity
    g = torch.Generator().manual_seed(0)
    ctx, gen = torch.rand(4, 3, 16, 16, generator=g), torch.rand(2, 3, 16, 16, generator=g)
    res = metrics[0](MetricInputs(generated=gen, target=gen, context=ctx, correspondences=[1, 3]))
    assert set(res.values) == {"corr_psnr", "corr_ssim"}
