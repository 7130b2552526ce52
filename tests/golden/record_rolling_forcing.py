"""Record the Rolling Forcing parity golden from the reference code.

Reference: TencentARC/RollingForcing @ a1477d09e85dc759a6a6728f55f77f59342ce388 (main,
2025-10-31). Usage: ``python tests/golden/record_rolling_forcing.py /path/to/RollingForcing`` (a
checkout of that commit, outside this package) -> ``tests/data/golden/rolling_forcing.safetensors``.

Runs the reference's own ``CausalInferencePipeline.inference_rolling_forcing``
(``pipeline/rolling_forcing_inference.py``) with its ``WanDiffusionWrapper``,
``FlowMatchScheduler`` and ``CausalWanModel`` cache code (``wan/modules/causal_model.py``: the
first block cached before RoPE and rotated on read as the "anchor", the working cache, the
``updating_cache`` pass), float32 on the CPU, for the tiny model of ``tiny.py`` with
``configs/rolling_forcing_dmd.yaml``'s settings: ``denoising_step_list [1000, 800, 600, 400,
200]`` warped (a rolling window of 5 blocks), ``timestep_shift 5.0``, ``context_noise 0``, blocks
of 3 frames. 11 blocks (33 latent frames, 15 windows): the 24-frame cache (sink + 21 frames) fills
at block 7 and evicts at blocks 8, 9 and 10; the cache-update pass stops attending the sink from
block 7 on.

Context: the reference has no working context path (``inference_rolling_forcing`` reads
``current_start_frame`` before assigning it when ``initial_latent`` is given, and its windows
start at frame 0 regardless), so the golden is text-to-video from the start of the video.

Stubbed: flash-attn (float32 SDPA), the text encoder (fixed random embeddings), the VAE (unused:
latents are returned). The reference's hard-coded Wan-1.3B sizes are scaled to the tiny model:
2 transformer blocks, 6 tokens per frame (``frame_length``, ``block_length``,
``max_attention_size = 21 frames`` of every self-attention; the pipeline's ``frame_seq_length``),
cache tensors of 2 heads x 32 channels; cache lengths stay in frames as the reference's (24).

Recorded: the prompt embedding, the initial noise, the re-noising noise each block actually used
at each step (the reference draws a whole window's noise per block and keeps the block's slice),
every window's x0 (all blocks in flight), the final latents, the cache-update passes' positions
and, after the last window, every layer's cache (K, V) with its end indices.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden import _reference as ref  # noqa: E402
from golden.tiny import DATA, FRAME_TOKENS, LATENT_SHAPE, PROMPT_TOKENS, TINY, digest, save, tiny_weights  # noqa: E402

BLOCKS = 11
STEPS = [1000, 800, 600, 400, 200]
CACHE_FRAMES = 24  # the pipeline's kv_cache_size = 1560 * 24
ATTENTION_FRAMES = 21  # CausalWanSelfAttention.max_attention_size = 21 * frame_length


class _Proxy(ref.TorchProxy):
    """The reference's torch, with its 1560 x 24-token KV cache scaled to the tiny frame."""

    def zeros(self, shape, **kwargs):
        shape = list(shape)
        if len(shape) == 4 and shape[1] == 1560 * CACHE_FRAMES:
            shape[1] = FRAME_TOKENS * CACHE_FRAMES
        return super().zeros(shape, **kwargs)


def main(root: Path) -> None:
    ref.setup(
        root, ["wan", "wan.modules", "utils", "pipeline"],
        {"wan.modules.tokenizers": ["HuggingfaceTokenizer"], "wan.modules.t5": ["umt5_xxl"],
         "wan.modules.vae": ["_video_vae"], "einops": ["repeat", "rearrange"]},
    )
    import pipeline.rolling_forcing_inference as rfi
    import utils.wan_wrapper as ww
    import wan.modules.causal_model as cm
    import wan.modules.model as wm

    cm.attention = ref.sdpa
    wm.flash_attention = ref.sdpa
    ref.patch_from_pretrained(cm.CausalWanModel, lambda **kw: cm.CausalWanModel(model_type="t2v", **TINY, **kw))

    torch.manual_seed(0)
    model_kwargs = {"timestep_shift": 5.0}
    wrapper = ww.WanDiffusionWrapper(**model_kwargs, is_causal=True)
    for blk in wrapper.model.blocks:
        sa = blk.self_attn
        sa.frame_length = FRAME_TOKENS
        sa.max_attention_size = ATTENTION_FRAMES * FRAME_TOKENS
        sa.block_length = 3 * FRAME_TOKENS
    weights = tiny_weights([(k, tuple(v.shape)) for k, v in wrapper.model.state_dict().items()])
    wrapper.model.load_state_dict(weights, strict=True)
    wrapper.model.eval().requires_grad_(False)

    g = torch.Generator().manual_seed(9)
    prompt = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    noise = torch.randn(1, 3 * BLOCKS, *LATENT_SHAPE, generator=g)

    args = types.SimpleNamespace(
        denoising_step_list=STEPS, warp_denoising_step=True, num_frame_per_block=3,
        independent_first_frame=False, context_noise=0, model_kwargs=model_kwargs,
    )
    text = lambda text_prompts: {"prompt_embeds": prompt}  # noqa: E731
    vae = types.SimpleNamespace(decode_to_pixel=lambda x, use_cache=False: x)
    pipe = rfi.CausalInferencePipeline(args, device="cpu", generator=wrapper, text_encoder=text, vae=vae)
    pipe.num_transformer_blocks = TINY["num_layers"]
    pipe.frame_seq_length = FRAME_TOKENS
    proxy = _Proxy(seed=13, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
    rfi.torch = proxy

    calls: list[dict] = []

    def hook(module, args_, kwargs, output):
        calls.append({
            "start": int(kwargs["current_start"]) // FRAME_TOKENS, "update": bool(kwargs.get("updating_cache")),
            "t": kwargs["timestep"].detach().clone(), "x": kwargs["noisy_image_or_video"].detach().clone(),
            "x0": output[1].detach().clone(),
        })

    wrapper.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        _, output = pipe.inference_rolling_forcing(noise=noise, text_prompts=["tiny"], return_latents=True)

    n_steps = len(STEPS)
    windows = BLOCKS + n_steps - 1
    den = [c for c in calls if not c["update"]]
    upd = [c for c in calls if c["update"]]
    assert len(den) == len(upd) == windows and len(calls) == 2 * windows

    # The re-noising noise each block used: per window, one whole-window draw per block not at
    # its last step (blocks in order), of which the block keeps its own 3 frames.
    step_noise = torch.zeros(BLOCKS, n_steps - 1, 1, 3, *LATENT_SHAPE)
    draws = iter(proxy.draws)
    starts, ends = [], []
    for w in range(windows):
        first, last = max(0, w - n_steps + 1), min(BLOCKS - 1, w)
        starts.append(first)
        ends.append(last)
        assert den[w]["start"] == 3 * first and den[w]["x"].shape[1] == 3 * (last - first + 1)
        for b in range(first, last + 1):
            step = w - b
            if step == n_steps - 1:
                continue
            d = next(draws)
            j = b - first
            step_noise[b, step] = d[3 * j : 3 * j + 3].unsqueeze(0)
    assert next(draws, None) is None

    timesteps = pipe.denoising_step_list.float()
    cache = pipe.kv_cache_clean
    tensors = {
        "prompt_embeds": prompt, "noise": noise, "step_noise": step_noise, "timesteps": timesteps,
        "window_x0": torch.cat([c["x0"] for c in den], dim=1),  # every window's x0, windows in order
        "window_t": torch.cat([c["t"] for c in den], dim=1),
        "window_first_block": torch.tensor(starts, dtype=torch.float32),
        "window_last_block": torch.tensor(ends, dtype=torch.float32),
        "update_starts": torch.tensor([c["start"] for c in upd], dtype=torch.float32),
        "output": output,
        "cache_end": torch.tensor([[float(c["global_end_index"]), float(c["local_end_index"])] for c in cache]),
    }
    for i, c in enumerate(cache):
        tensors[f"cache.{i}.k"] = c["k"]
        tensors[f"cache.{i}.v"] = c["v"]
    meta = {
        "reference": "TencentARC/RollingForcing", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "model_kwargs": model_kwargs, "denoising_step_list": STEPS, "warp": True, "blocks": BLOCKS,
        "cache_frames": CACHE_FRAMES, "attention_frames": ATTENTION_FRAMES, "tiny": TINY,
        "weights_sha256": digest(weights), "frame_tokens": FRAME_TOKENS,
    }
    save(DATA / "rolling_forcing.safetensors", tensors, meta)
    print("timesteps", timesteps.tolist(), "windows", windows, "cache end", tensors["cache_end"].tolist())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/ref/rf"))
