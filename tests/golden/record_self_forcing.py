"""Record the Self-Forcing parity golden from the reference code.

Reference: guandeh17/Self-Forcing @ 33593df3e81fa3ec10239271dd2c100facac6de1 (main, 2025-09-11).
Usage: ``python tests/golden/record_self_forcing.py /path/to/Self-Forcing`` (a checkout of that
commit, outside this package) -> ``tests/data/golden/self_forcing.safetensors``.

Runs the reference's own ``CausalInferencePipeline.inference`` (its context path,
``initial_latent``) with its ``WanDiffusionWrapper``, ``FlowMatchScheduler`` and
``CausalWanModel`` cache code, in float32 on the CPU, for the tiny model of ``tiny.py``:
``model_kwargs = {timestep_shift: 5.0, local_attn_size: 21, sink_size: 0}`` (the released
config plus the code's own 21-frame window, which is what lets it run past 21 frames),
``denoising_step_list [1000, 750, 500, 250]`` warped, 4 context blocks then 6 generated blocks
(30 frames: the 21-frame cache rolls 3 times). Stubbed: flash-attn (float32 SDPA), the text
encoder (fixed random embeddings) and the VAE (unused: latents are returned). The pipeline's
hard-coded Wan-1.3B sizes are scaled to the tiny model: 2 transformer blocks, 6 tokens per frame,
cache tensors of 2 heads x 32 channels (the cache length stays ``local_attn_size *
frame_seq_length``).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden import _reference as ref  # noqa: E402
from golden.tiny import DATA, FRAME_TOKENS, LATENT_SHAPE, PROMPT_TOKENS, TINY, digest, save, tiny_weights  # noqa: E402

LOCAL_ATTN, SINK = 21, 0
CONTEXT_BLOCKS, GEN_BLOCKS = 4, 6


def main(root: Path) -> None:
    ref.setup(
        root, ["wan", "wan.modules", "utils", "pipeline", "demo_utils"],
        {"wan.modules.tokenizers": ["HuggingfaceTokenizer"], "wan.modules.t5": ["umt5_xxl"],
         "wan.modules.vae": ["_video_vae"], "einops": ["repeat", "rearrange"],
         # low_memory helpers (query the CUDA device at import)
         "demo_utils.memory": ["gpu", "get_cuda_free_memory_gb", "DynamicSwapInstaller", "move_model_to_device_with_memory_preservation"]},
    )
    import pipeline.causal_inference as pci
    import utils.wan_wrapper as ww
    import wan.modules.causal_model as cm
    import wan.modules.model as wm

    cm.attention = ref.sdpa
    wm.flash_attention = ref.sdpa
    ref.patch_from_pretrained(cm.CausalWanModel, lambda **kw: cm.CausalWanModel(model_type="t2v", **TINY, **kw))

    torch.manual_seed(0)
    wrapper = ww.WanDiffusionWrapper(timestep_shift=5.0, is_causal=True, local_attn_size=LOCAL_ATTN, sink_size=SINK)
    shapes = [(k, tuple(v.shape)) for k, v in wrapper.model.state_dict().items()]
    weights = tiny_weights(shapes)
    wrapper.model.load_state_dict(weights, strict=True)
    wrapper.model.eval().requires_grad_(False)

    g = torch.Generator().manual_seed(7)
    prompt = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    context = torch.randn(1, 3 * CONTEXT_BLOCKS, *LATENT_SHAPE, generator=g)
    noise = torch.randn(1, 3 * GEN_BLOCKS, *LATENT_SHAPE, generator=g)

    args = types.SimpleNamespace(
        denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, num_frame_per_block=3,
        independent_first_frame=False, context_noise=0,
        model_kwargs={"timestep_shift": 5.0, "local_attn_size": LOCAL_ATTN, "sink_size": SINK},
    )
    text = lambda text_prompts: {"prompt_embeds": prompt}  # noqa: E731
    vae = types.SimpleNamespace(decode_to_pixel=lambda x, use_cache=False: x)
    pipe = pci.CausalInferencePipeline(args, device="cpu", generator=wrapper, text_encoder=text, vae=vae)
    pipe.num_transformer_blocks = TINY["num_layers"]
    pipe.frame_seq_length = FRAME_TOKENS
    proxy = ref.TorchProxy(seed=11, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
    pci.torch = proxy
    hook = ref.RecordingHook()
    wrapper.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        _, output = pipe.inference(noise=noise, text_prompts=["tiny"], initial_latent=context, return_latents=True)

    den = [c for c in hook.calls if float(c["t"].flatten()[0]) != 0.0]
    assert len(den) == 4 * GEN_BLOCKS and len(proxy.draws) == 3 * GEN_BLOCKS
    assert all(c["x"].shape[1] == 3 for c in hook.calls)
    x0 = torch.stack([c["x0"] for c in den]).view(GEN_BLOCKS, 4, 1, 3, *LATENT_SHAPE)
    step_noise = torch.stack(proxy.draws).view(GEN_BLOCKS, 3, 1, 3, *LATENT_SHAPE)
    timesteps = torch.tensor([float(c["t"].flatten()[0]) for c in den[:4]])
    tensors = {
        "prompt_embeds": prompt, "context": context, "noise": noise, "step_noise": step_noise,
        "x0": x0, "timesteps": timesteps, "output": output,
        "starts": torch.tensor([c["start"] // FRAME_TOKENS for c in hook.calls], dtype=torch.float32),
    }
    meta = {
        "reference": "guandeh17/Self-Forcing", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "model_kwargs": args.model_kwargs, "denoising_step_list": args.denoising_step_list, "warp": True,
        "context_blocks": CONTEXT_BLOCKS, "generated_blocks": GEN_BLOCKS, "tiny": TINY,
        "weights_sha256": digest(weights), "frame_tokens": FRAME_TOKENS,
    }
    save(DATA / "self_forcing.safetensors", tensors, meta)
    print("timesteps", timesteps.tolist(), "calls", len(hook.calls), "starts", tensors["starts"].tolist())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ref/sf"))
