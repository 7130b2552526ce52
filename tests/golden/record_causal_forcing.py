"""Record the Causal Forcing parity golden from the reference code.

Reference: thu-ml/Causal-Forcing @ 1fc7bbc19a503c1bce80ecef08158b20e702f386 (main, 2026-07-23).
Usage: ``python tests/golden/record_causal_forcing.py /path/to/Causal-Forcing`` (a checkout of
that commit, outside this package) -> ``tests/data/golden/causal_forcing.safetensors``.

Runs the reference's own ``CausalInferencePipeline.inference`` (its context path,
``initial_latent``: one t = 0 pass per context block) with its ``WanDiffusionWrapper``,
``FlowMatchScheduler`` and ``CausalWanModel`` cache code, float32 on the CPU, for the tiny model
of ``tiny.py``, twice:

* chunk-wise (``configs/causal_forcing_dmd_chunkwise.yaml``: ``num_frame_per_block: 3``, steps
  [1000, 750, 500, 250] warped, shift 5): 4 context blocks + 6 generated blocks, 30 frames;
* frame-wise (``configs/causal_forcing_dmd_framewise.yaml``: ``num_frame_per_block: 1``, same
  steps; keys prefixed ``framewise.``): 12 context frames + 12 generated frames, 24 frames.

Both configs leave ``local_attn_size`` at -1, a 21-frame cache that the code never evicts, so it
cannot run past 21 frames; as for Self-Forcing (``record_self_forcing.py``), the code's own
window ``local_attn_size: 21`` (identical for the first 21 frames) lets it continue, and the cache
rolls 3 times in each run. Recorded besides the inputs and every denoising x0: the cache contents
at the end (K after RoPE, as the reference caches them, and V, every layer).

Stubbed: flash-attn (float32 SDPA), the text encoder (fixed random embeddings), the VAE (unused),
the CUDA memory helpers; the pipeline's hard-coded Wan-1.3B sizes are scaled to the tiny model (2
transformer blocks, 6 tokens per frame, caches of 2 heads x 32 channels).
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
RUNS = {"": (3, 12, 18), "framewise.": (1, 12, 12)}  # prefix: (frames per block, context frames, generated frames)


def _run(pci, ww, prompt, context, noise, block: int, seed: int):
    torch.manual_seed(0)
    model_kwargs = {"timestep_shift": 5.0, "local_attn_size": LOCAL_ATTN, "sink_size": SINK}
    wrapper = ww.WanDiffusionWrapper(**model_kwargs, is_causal=True)
    weights = tiny_weights([(k, tuple(v.shape)) for k, v in wrapper.model.state_dict().items()])
    wrapper.model.load_state_dict(weights, strict=True)
    wrapper.model.eval().requires_grad_(False)
    args = types.SimpleNamespace(
        denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, num_frame_per_block=block,
        independent_first_frame=False, context_noise=0, model_kwargs=model_kwargs,
    )
    text = lambda text_prompts: {"prompt_embeds": prompt}  # noqa: E731
    vae = types.SimpleNamespace(decode_to_pixel=lambda x, use_cache=False: x)
    pipe = pci.CausalInferencePipeline(args, device="cpu", generator=wrapper, text_encoder=text, vae=vae)
    pipe.num_transformer_blocks = TINY["num_layers"]
    pipe.frame_seq_length = FRAME_TOKENS
    proxy = ref.TorchProxy(seed=seed, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
    pci.torch = proxy
    hook = ref.RecordingHook()
    wrapper.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        _, output = pipe.inference(noise=noise, text_prompts=["tiny"], initial_latent=context, return_latents=True)
    gen = noise.shape[1] // block
    den = [c for c in hook.calls if float(c["t"].flatten()[0]) != 0.0]
    assert len(den) == 4 * gen and len(proxy.draws) == 3 * gen
    end = int(pipe.kv_cache1[0]["local_end_index"].item())
    return {
        "x0": torch.stack([c["x0"] for c in den]).view(gen, 4, 1, block, *LATENT_SHAPE),
        "step_noise": torch.stack(proxy.draws).view(gen, 3, 1, block, *LATENT_SHAPE),
        "timesteps": torch.tensor([float(c["t"].flatten()[0]) for c in den[:4]]),
        "output": output,
        "starts": torch.tensor([c["start"] // FRAME_TOKENS for c in hook.calls], dtype=torch.float32),
        "cache_k": torch.stack([c["k"][:, :end].clone() for c in pipe.kv_cache1]),
        "cache_v": torch.stack([c["v"][:, :end].clone() for c in pipe.kv_cache1]),
    }, weights, model_kwargs


def main(root: Path) -> None:
    ref.setup(
        root, ["wan", "wan.modules", "utils", "pipeline", "demo_utils"],
        {"wan.modules.tokenizers": ["HuggingfaceTokenizer"], "wan.modules.t5": ["umt5_xxl"],
         "wan.modules.vae": ["_video_vae"], "einops": ["repeat", "rearrange"],
         "demo_utils.memory": ["gpu", "get_cuda_free_memory_gb", "DynamicSwapInstaller", "move_model_to_device_with_memory_preservation"]},
    )
    import pipeline.causal_inference as pci
    import utils.wan_wrapper as ww
    import wan.modules.causal_model as cm
    import wan.modules.model as wm

    cm.attention = ref.sdpa
    wm.flash_attention = ref.sdpa
    ref.patch_from_pretrained(cm.CausalWanModel, lambda **kw: cm.CausalWanModel(model_type="t2v", **TINY, **kw))

    g = torch.Generator().manual_seed(10)
    prompt = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    tensors: dict[str, torch.Tensor] = {"prompt_embeds": prompt}
    meta_runs = {}
    weights = None
    for prefix, (block, n_ctx, n_gen) in RUNS.items():
        context = torch.randn(1, n_ctx, *LATENT_SHAPE, generator=g)
        noise = torch.randn(1, n_gen, *LATENT_SHAPE, generator=g)
        out, weights, model_kwargs = _run(pci, ww, prompt, context, noise, block, seed=14 + block)
        tensors.update({prefix + "context": context, prefix + "noise": noise})
        tensors.update({prefix + k: v for k, v in out.items()})
        meta_runs[prefix or "chunkwise."] = {"num_frame_per_block": block, "context_frames": n_ctx, "generated_frames": n_gen}
    meta = {
        "reference": "thu-ml/Causal-Forcing", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "model_kwargs": model_kwargs, "denoising_step_list": [1000, 750, 500, 250], "warp": True, "runs": meta_runs,
        "tiny": TINY, "weights_sha256": digest(weights), "frame_tokens": FRAME_TOKENS,
    }
    save(DATA / "causal_forcing.safetensors", tensors, meta)
    print({k: v.shape for k, v in tensors.items() if "cache" in k}, tensors["starts"].tolist())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ref/causalf"))
