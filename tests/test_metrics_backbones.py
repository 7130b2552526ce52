"""The backbone cache: the default metric set shares one AlexNet per (weights, device)."""

from __future__ import annotations

import torch

from magbench.metrics.backbones import shared_backbone
from magbench.metrics.bestmatch import BestMatch
from magbench.metrics.correspondence import Correspondence
from magbench.metrics.reconstruction import LPIPS


def test_lpips_backed_metrics_share_one_alexnet():
    metrics = [LPIPS(random_weights=True), BestMatch(random_weights=True), Correspondence(random_weights=True)]
    assert metrics[0].model is metrics[1].model is metrics[2].model
    assert not any(p.requires_grad for p in metrics[0].model.parameters())


def test_random_backbone_does_not_depend_on_the_global_rng():
    torch.manual_seed(2)
    first = shared_backbone("test-net", None, "cpu", lambda: torch.nn.Linear(3, 3)).weight.clone()
    torch.manual_seed(4)  # nothing holds the first one any more: this is a fresh build
    again = shared_backbone("test-net", None, "cpu", lambda: torch.nn.Linear(3, 3)).weight
    assert torch.equal(first, again)
    assert not torch.equal(again, torch.nn.Linear(3, 3).weight)


def test_a_backbone_lives_only_while_a_metric_holds_it():
    built = []

    def build():
        built.append(1)
        return torch.nn.Linear(2, 2)

    net = shared_backbone("test-weak", None, "cpu", build)
    assert shared_backbone("test-weak", None, "cpu", build) is net and len(built) == 1
    del net
    shared_backbone("test-weak", None, "cpu", build)
    assert len(built) == 2
