"""Record the LongLive parity golden from the reference code.

Reference: NVlabs/LongLive @ e52d9ef6865d843282a6b5e9d46d03b35f88929d (branch ``v1.0``, the
LongLive-1.3B model; ``main`` is LongLive 2.0). Usage:
``python tests/golden/record_longlive.py /path/to/LongLive`` (a checkout of that commit, outside
this package) -> ``tests/data/golden/longlive.safetensors``.

Runs the reference's own ``CausalInferencePipeline.inference`` with its ``WanDiffusionWrapper``,
``FlowMatchScheduler`` and ``CausalWanModel`` cache code (clone-then-apply cache updates, sink
protection on recompute passes, ``_set_all_modules_max_attention_size``), float32 on the CPU, for
the tiny model of ``tiny.py`` with ``configs/longlive_inference.yaml``'s settings:
``model_kwargs = {local_attn_size: 12, timestep_shift: 5.0, sink_size: 3}``, steps
[1000, 750, 500, 250] warped, ``context_noise: 0``. 2 context blocks + 5 generated blocks = 21
frames: the 12-frame cache rolls 3 times.

Context: LongLive's pipeline has no context path; as baselines.md 5.2, each context block goes
through the generator once at t = 0 with the prompt at its absolute position. Done inside the
pipeline's own loop: for the first blocks the wrapper's denoising calls return the context
latents as x0 without running the model (they would only write the block's slot, which the
clean pass then overwrites), so the loop's clean pass is the block's one model call, at the
first pass's position in the cache bookkeeping (it evicts and advances the pointers).

Stubbed: flash-attn (float32 SDPA), the text encoder (fixed random embeddings), the VAE (unused),
the CUDA memory helpers; the pipeline's hard-coded Wan-1.3B sizes are scaled to the tiny model
(2 transformer blocks, 6 tokens per frame, caches of 2 heads x 32 channels).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden import _reference as ref  # noqa: E402
from golden.tiny import DATA, FRAME_TOKENS, LATENT_SHAPE, PROMPT_TOKENS, TINY, digest, save, tiny_weights  # noqa: E402

LOCAL_ATTN, SINK = 12, 3
CONTEXT_BLOCKS, GEN_BLOCKS = 2, 5


def main(root: Path) -> None:
    ref.setup(
        root, ["wan", "wan.modules", "utils", "pipeline"],
        {"wan.modules.tokenizers": ["HuggingfaceTokenizer"], "wan.modules.t5": ["umt5_xxl"],
         "wan.modules.vae": ["_video_vae"], "einops": ["repeat", "rearrange"],
         "utils.memory": ["gpu", "get_cuda_free_memory_gb", "DynamicSwapInstaller",
                          "move_model_to_device_with_memory_preservation", "log_gpu_memory"]},
    )
    import pipeline.causal_inference as pci
    import utils.wan_wrapper as ww
    import wan.modules.causal_model as cm
    import wan.modules.model as wm

    cm.attention = ref.sdpa
    wm.flash_attention = ref.sdpa
    ref.patch_from_pretrained(cm.CausalWanModel, lambda **kw: cm.CausalWanModel(model_type="t2v", **TINY, **kw))

    torch.manual_seed(0)
    model_kwargs = {"local_attn_size": LOCAL_ATTN, "timestep_shift": 5.0, "sink_size": SINK}
    wrapper = ww.WanDiffusionWrapper(**model_kwargs, is_causal=True)
    weights = tiny_weights([(k, tuple(v.shape)) for k, v in wrapper.model.state_dict().items()])
    wrapper.model.load_state_dict(weights, strict=True)
    wrapper.model.eval().requires_grad_(False)

    g = torch.Generator().manual_seed(8)
    prompt = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    context = torch.randn(1, 3 * CONTEXT_BLOCKS, *LATENT_SHAPE, generator=g)
    noise = torch.randn(1, 3 * GEN_BLOCKS, *LATENT_SHAPE, generator=g)
    n_ctx = 3 * CONTEXT_BLOCKS
    full_noise = torch.cat([torch.zeros_like(context), noise], dim=1)  # context slots: unused

    ctx_tokens = n_ctx * FRAME_TOKENS
    model_forward = wrapper.forward

    def forward(noisy_image_or_video, conditional_dict, timestep, kv_cache=None, crossattn_cache=None, current_start=None, **kw):
        start = current_start or 0
        if start < ctx_tokens and bool((timestep != 0).any()):
            f = start // FRAME_TOKENS
            return torch.zeros_like(noisy_image_or_video), context[:, f : f + noisy_image_or_video.shape[1]].clone()
        return model_forward(noisy_image_or_video, conditional_dict, timestep, kv_cache=kv_cache,
                             crossattn_cache=crossattn_cache, current_start=current_start, **kw)

    wrapper.forward = forward  # type: ignore[method-assign]

    args = types.SimpleNamespace(
        denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, num_frame_per_block=3,
        context_noise=0, model_kwargs=types.SimpleNamespace(**model_kwargs),
    )
    text = lambda text_prompts: {"prompt_embeds": prompt}  # noqa: E731
    vae = types.SimpleNamespace(decode_to_pixel=lambda x, use_cache=False: x)
    pipe = pci.CausalInferencePipeline(args, device="cpu", generator=wrapper, text_encoder=text, vae=vae)
    pipe.num_transformer_blocks = TINY["num_layers"]
    pipe.frame_seq_length = FRAME_TOKENS
    proxy = ref.TorchProxy(seed=12, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
    pci.torch = proxy
    hook = ref.RecordingHook()
    wrapper.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        _, output = pipe.inference(noise=full_noise, text_prompts=["tiny"], return_latents=True)

    assert torch.equal(output[:, :n_ctx], context)
    gen = [c for c in hook.calls if c["start"] >= ctx_tokens]
    den = [c for c in gen if float(c["t"].flatten()[0]) != 0.0]
    ctx_passes = [c for c in hook.calls if c["start"] < ctx_tokens and float(c["t"].flatten()[0]) == 0.0]
    assert len(ctx_passes) == CONTEXT_BLOCKS and all(torch.equal(c["x"], context[:, 3 * j : 3 * j + 3]) for j, c in enumerate(ctx_passes))
    assert len(den) == 4 * GEN_BLOCKS and len(proxy.draws) == 3 * (CONTEXT_BLOCKS + GEN_BLOCKS)
    draws = proxy.draws[3 * CONTEXT_BLOCKS :]  # the context blocks' re-noising draws are discarded
    x0 = torch.stack([c["x0"] for c in den]).view(GEN_BLOCKS, 4, 1, 3, *LATENT_SHAPE)
    step_noise = torch.stack(draws).view(GEN_BLOCKS, 3, 1, 3, *LATENT_SHAPE)
    timesteps = torch.tensor([float(c["t"].flatten()[0]) for c in den[:4]])
    tensors = {
        "prompt_embeds": prompt, "context": context, "noise": noise, "step_noise": step_noise,
        "x0": x0, "timesteps": timesteps, "output": output,
        "starts": torch.tensor([c["start"] // FRAME_TOKENS for c in hook.calls], dtype=torch.float32),
    }
    meta = {
        "reference": "NVlabs/LongLive", "branch": "v1.0", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "model_kwargs": model_kwargs, "denoising_step_list": args.denoising_step_list, "warp": True,
        "context_blocks": CONTEXT_BLOCKS, "generated_blocks": GEN_BLOCKS, "tiny": TINY,
        "weights_sha256": digest(weights), "frame_tokens": FRAME_TOKENS,
    }
    save(DATA / "longlive.safetensors", tensors, meta)
    print("timesteps", timesteps.tolist(), "calls", len(hook.calls), "starts", tensors["starts"].tolist())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ref/ll"))
