"""Record the Infinity-RoPE parity golden from the reference code.

Reference: yesiltepe-hidir/infinity-rope @ 63d7b84f043a2536ccb62d5171ed54dfadc0a721 (main,
2026-02-21). Usage: ``python tests/golden/record_infinity_rope.py /path/to/infinity-rope`` (a
checkout of that commit, outside this package) -> ``tests/data/golden/infinity_rope.safetensors``.

Runs the reference's own ``CausalInferencePipeline.inference`` (``pipeline/causal_inference.py``,
its context path ``initial_latent``) with its ``WanDiffusionWrapper``, ``FlowMatchScheduler`` and
``CausalWanModel`` cache code (``wan/modules/causal_model.py``: keys cached before RoPE, the
whole window re-rotated by ``block_relativistic_rope`` on every pass, the sink frame kept rotated
at 0), float32 on the CPU, for the tiny model of ``tiny.py`` with ``configs/self_forcing_dmd.yaml``'s
settings: ``model_kwargs = {timestep_shift: 5.0, local_attn_size: 6, sink_size: 1}``,
``denoising_step_list [1000, 750, 500, 250]`` warped, ``context_noise 0``. 2 context blocks, then
6 generated blocks: 24 frames through a 6-frame window, which rolls from the third block on
(6 times). One prompt without the reference's scene syntax: no KV flush, no RoPE cut.

Stubbed: flash-attn (float32 SDPA), the text encoder (fixed random embeddings), the VAE (unused:
latents are returned), the CUDA memory helpers. The reference's hard-coded Wan-1.3B sizes are
scaled to the tiny model: 2 transformer blocks, 6 tokens per frame (every self-attention's
``max_attention_size = local_attn_size * 1560`` and the pipeline's ``frame_seq_length``), cache
tensors of 2 heads x 32 channels.

Recorded: the prompt embedding, the context latents, each generated block's initial noise and
re-noising draws, the x0 of every denoising pass, the final latents, the calls' positions and,
after the last block, every layer's cache (K, V; its first frame rotated at 0, the rest before
RoPE) with its end indices.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden import _reference as ref  # noqa: E402
from golden.tiny import DATA, FRAME_TOKENS, LATENT_SHAPE, PROMPT_TOKENS, TINY, digest, save, tiny_weights  # noqa: E402

LOCAL_ATTN, SINK = 6, 1
CONTEXT_BLOCKS, GEN_BLOCKS = 2, 6
STEPS = [1000, 750, 500, 250]


def main(root: Path) -> None:
    ref.setup(
        root, ["wan", "wan.modules", "utils", "pipeline", "demo_utils"],
        {"wan.modules.tokenizers": ["HuggingfaceTokenizer"], "wan.modules.t5": ["umt5_xxl"],
         "wan.modules.vae": ["_video_vae"], "einops": ["repeat", "rearrange"],
         "demo_utils.memory": ["gpu", "get_cuda_free_memory_gb", "DynamicSwapInstaller",
                               "move_model_to_device_with_memory_preservation"]},
    )
    import pipeline.causal_inference as pci
    import utils.wan_wrapper as ww
    import wan.modules.causal_model as cm
    import wan.modules.model as wm

    cm.attention = ref.sdpa
    wm.flash_attention = ref.sdpa
    # The wrapper also passes loading options (low_cpu_mem_usage, device_map): the tiny model takes
    # the cache settings only.
    ref.patch_from_pretrained(
        cm.CausalWanModel,
        lambda **kw: cm.CausalWanModel(model_type="t2v", **TINY, local_attn_size=kw["local_attn_size"], sink_size=kw["sink_size"]),
    )

    torch.manual_seed(0)
    model_kwargs = {"timestep_shift": 5.0, "local_attn_size": LOCAL_ATTN, "sink_size": SINK}
    wrapper = ww.WanDiffusionWrapper(**model_kwargs, is_causal=True)
    for blk in wrapper.model.blocks:
        blk.self_attn.max_attention_size = LOCAL_ATTN * FRAME_TOKENS
    weights = tiny_weights([(k, tuple(v.shape)) for k, v in wrapper.model.state_dict().items()])
    wrapper.model.load_state_dict(weights, strict=True)
    wrapper.model.eval().requires_grad_(False)

    g = torch.Generator().manual_seed(10)
    prompt = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    context = torch.randn(1, 3 * CONTEXT_BLOCKS, *LATENT_SHAPE, generator=g)
    noise = torch.randn(1, 3 * GEN_BLOCKS, *LATENT_SHAPE, generator=g)

    args = types.SimpleNamespace(
        denoising_step_list=STEPS, warp_denoising_step=True, num_frame_per_block=3,
        independent_first_frame=False, context_noise=0, model_kwargs=types.SimpleNamespace(**model_kwargs),
    )
    text = lambda text_prompts: {"prompt_embeds": prompt}  # noqa: E731
    vae = types.SimpleNamespace(decode_to_pixel=lambda x, use_cache=False: x)
    pipe = pci.CausalInferencePipeline(args, device="cpu", generator=wrapper, text_encoder=text, vae=vae)
    pipe.num_transformer_blocks = TINY["num_layers"]
    pipe.frame_seq_length = FRAME_TOKENS
    proxy = ref.TorchProxy(seed=14, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
    pci.torch = proxy
    hook = ref.RecordingHook()
    wrapper.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        _, output = pipe.inference(noise=noise, text_prompts=["tiny"], initial_latent=context, return_latents=True)

    n_ctx = 3 * CONTEXT_BLOCKS
    assert torch.equal(output[:, :n_ctx], context)
    ctx_tokens = n_ctx * FRAME_TOKENS
    gen = [c for c in hook.calls if c["start"] >= ctx_tokens]
    den = [c for c in gen if float(c["t"].flatten()[0]) != 0.0]
    ctx_passes = [c for c in hook.calls if c["start"] < ctx_tokens]
    assert len(ctx_passes) == CONTEXT_BLOCKS and all(torch.equal(c["x"], context[:, 3 * j : 3 * j + 3]) for j, c in enumerate(ctx_passes))
    assert len(den) == 4 * GEN_BLOCKS and len(gen) == 5 * GEN_BLOCKS and len(proxy.draws) == 3 * GEN_BLOCKS
    x0 = torch.stack([c["x0"] for c in den]).view(GEN_BLOCKS, 4, 1, 3, *LATENT_SHAPE)
    step_noise = torch.stack(proxy.draws).view(GEN_BLOCKS, 3, 1, 3, *LATENT_SHAPE)
    timesteps = torch.tensor([float(c["t"].flatten()[0]) for c in den[:4]])
    cache = pipe.kv_cache1
    tensors = {
        "prompt_embeds": prompt, "context": context, "noise": noise, "step_noise": step_noise,
        "x0": x0, "timesteps": timesteps, "output": output,
        "starts": torch.tensor([c["start"] // FRAME_TOKENS for c in hook.calls], dtype=torch.float32),
        "cache_end": torch.tensor([[float(c["global_end_index"]), float(c["local_end_index"])] for c in cache]),
    }
    for i, c in enumerate(cache):
        tensors[f"cache.{i}.k"] = c["k"]
        tensors[f"cache.{i}.v"] = c["v"]
    meta = {
        "reference": "yesiltepe-hidir/infinity-rope", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "model_kwargs": model_kwargs, "denoising_step_list": STEPS, "warp": True,
        "context_blocks": CONTEXT_BLOCKS, "generated_blocks": GEN_BLOCKS, "tiny": TINY,
        "weights_sha256": digest(weights), "frame_tokens": FRAME_TOKENS,
    }
    save(DATA / "infinity_rope.safetensors", tensors, meta)
    print("timesteps", timesteps.tolist(), "calls", len(hook.calls), "cache end", tensors["cache_end"].tolist())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/work/ref/ir"))
