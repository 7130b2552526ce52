"""Replaying a golden's inputs through magbench's model, memory and sampler (CPU, float32)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from golden.tiny import DATA, LATENT_SHAPE, WEIGHT_SEED, digest, load, tiny_weights

TOLERANCE = 1e-5  # relative: max |ours - reference| / max |reference|, per output


def golden(name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return load(DATA / f"{name}.safetensors")


def tiny_model(meta: dict[str, Any], seed: int = WEIGHT_SEED, sha_key: str = "weights_sha256"):
    """The tiny model with the seeded weights; ``seed``/``sha_key``: another network's (MAG's
    memory model)."""
    from magbench.baselines.wan.model import CausalWan, WanConfig

    cfg = WanConfig.tiny()
    for k, v in meta["tiny"].items():
        assert getattr(cfg, k) == v, f"magbench's tiny config differs from the golden's: {k}"
    model = CausalWan(cfg)
    weights = tiny_weights([(k, tuple(v.shape)) for k, v in model.state_dict().items()], seed=seed)
    assert digest(weights) == meta[sha_key], "the seeded tiny weights differ from the recording's"
    model.load_state_dict(weights, strict=True)
    model.eval().requires_grad_(False)
    model.fuse_qkv()  # as the methods run it
    return model


def method_memory(name: str, num_layers: int, **options: Any):
    """The memory policy exactly as the registered method builds it."""
    import magbench.baselines.wan  # noqa: F401
    from magbench.registry import METHODS

    return METHODS.get(name)(config="tiny", random_weights=True, **options).make_memory(num_layers)


def rel_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max())


def run_blocks(
    sampler, t: dict[str, torch.Tensor], blocks: range, on_block: Callable[[int], None] | None = None,
    memory_input: Callable[[int, torch.Tensor], torch.Tensor] | None = None, block_frames: int = 3,
) -> list[list[torch.Tensor]]:
    """Denoise + commit the golden's generated blocks; returns each block's per-step x0.
    ``memory_input(b, x0)``: what block ``b``'s cache-update pass runs on (default its x0; the
    ground-truth memory source commits other latents)."""
    steps = t["step_noise"].shape[1] + 1
    bf = block_frames
    shape = (1, bf, *LATENT_SHAPE)
    out = []
    for b in blocks:
        if on_block is not None:
            on_block(b)
        rec: list[torch.Tensor] = []
        noise = t["noise"][:, bf * b : bf * b + bf]
        step_noise = [t["step_noise"][b, i].reshape(shape) for i in range(steps - 1)]
        x0 = sampler.denoise(noise, step_noise=step_noise, record=rec)
        sampler.commit(x0 if memory_input is None else memory_input(b, x0))
        out.append(rec)
    return out


def worst_error(ours: list[list[torch.Tensor]], reference: torch.Tensor) -> float:
    """Max relative error over every denoising output (block b, step i)."""
    worst = 0.0
    for b, rec in enumerate(ours):
        assert len(rec) == reference.shape[1]
        for i, x0 in enumerate(rec):
            worst = max(worst, rel_error(x0, reference[b, i]))
    return worst
