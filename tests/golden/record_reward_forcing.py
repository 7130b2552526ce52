"""Record the Reward Forcing parity golden from the reference code.

Reference: JaydenLyh/Reward-Forcing @ 4317f5a0d29d1cee6a0f2e80ed5f5724bee97c66 (main, "[fix] ema
sink", 2025-12-15). Usage: ``python tests/golden/record_reward_forcing.py /path/to/Reward-Forcing``
(a checkout of that commit, outside this package) -> ``tests/data/golden/reward_forcing.safetensors``.

Runs the reference's own ``CausalInferencePipeline.inference`` (its context path,
``initial_latent``: one t = 0 pass per context block) with its ``WanDiffusionWrapper``,
``FlowMatchScheduler`` and ``CausalWanModel`` cache code (keys cached before RoPE, rotated to
their cache slots when read; the EMA sink of ``incremental_update``), float32 on the CPU, for the
tiny model of ``tiny.py`` with ``configs/reward_forcing.yaml``'s settings: ``model_kwargs =
{timestep_shift: 5.0, local_attn_size: 9, sink_size: 3}``, steps [1000, 750, 500, 250] warped,
``context_noise: 0``. 2 context blocks + 5 generated blocks = 21 frames: the 9-frame cache evicts
4 times (blocks 3 to 6), each time folding the evicted block into the sink.

Recorded besides the inputs and every denoising x0: the cache contents, as the reference holds
them: the sink (K before RoPE and V, every layer) right after the first pass of every block (that
pass evicts, so this is the sink the block attends), and the whole cache at the end.

A second run (``strong.*``) sets the reference's ``compression_alpha`` to 0.5 (the code's own
parameter; its default 0.999 moves the sink by 0.1 % per eviction, an effect on the outputs
comparable to float noise): there a plain sink is rejected by the outputs too, not only by the
cache contents.

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

LOCAL_ATTN, SINK = 9, 3
CONTEXT_BLOCKS, GEN_BLOCKS = 2, 5
STRONG_ALPHA = 0.5


def _run(pci, ww, cm, prompt, context, noise, seed: int, alpha: float | None):
    torch.manual_seed(0)
    model_kwargs = {"timestep_shift": 5.0, "local_attn_size": LOCAL_ATTN, "sink_size": SINK}
    wrapper = ww.WanDiffusionWrapper("unused", **model_kwargs, is_causal=True)
    weights = tiny_weights([(k, tuple(v.shape)) for k, v in wrapper.model.state_dict().items()])
    wrapper.model.load_state_dict(weights, strict=True)
    wrapper.model.eval().requires_grad_(False)
    if alpha is not None:
        for m in wrapper.model.modules():
            if isinstance(m, cm.CausalWanSelfAttention):
                m.compression_alpha = alpha

    args = types.SimpleNamespace(
        denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, num_frame_per_block=3,
        independent_first_frame=False, context_noise=0, checkpoint_path="unused",
        model_kwargs=model_kwargs,
    )
    text = lambda text_prompts: {"prompt_embeds": prompt}  # noqa: E731
    vae = types.SimpleNamespace(decode_to_pixel=lambda x, use_cache=False: x)
    pipe = pci.CausalInferencePipeline(args, device="cpu", generator=wrapper, text_encoder=text, vae=vae)
    pipe.num_transformer_blocks = TINY["num_layers"]
    pipe.frame_seq_length = FRAME_TOKENS
    proxy = ref.TorchProxy(seed=seed, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
    pci.torch = proxy

    calls: list[dict] = []
    sinks: list[tuple[torch.Tensor, torch.Tensor]] = []  # after each block's first pass

    def hook(module, args_, kwargs, output):
        start = int(kwargs.get("current_start") or 0)
        first = not calls or calls[-1]["start"] != start
        x0 = output[1] if isinstance(output, tuple) else output
        calls.append({"start": start, "t": kwargs["timestep"].detach().clone(), "x0": x0.detach().clone()})
        if first:
            s = SINK * FRAME_TOKENS
            sinks.append((
                torch.stack([c["k"][:, :s].clone() for c in pipe.kv_cache1]),
                torch.stack([c["v"][:, :s].clone() for c in pipe.kv_cache1]),
            ))

    wrapper.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        _, output = pipe.inference(noise=noise, text_prompts=["tiny"], initial_latent=context, return_latents=True)
    end = int(pipe.kv_cache1[0]["local_end_index"].item())
    cache_k = torch.stack([c["k"][:, :end].clone() for c in pipe.kv_cache1])
    cache_v = torch.stack([c["v"][:, :end].clone() for c in pipe.kv_cache1])
    den = [c for c in calls if float(c["t"].flatten()[0]) != 0.0]
    assert len(den) == 4 * GEN_BLOCKS and len(proxy.draws) == 3 * GEN_BLOCKS
    assert len(sinks) == CONTEXT_BLOCKS + GEN_BLOCKS
    return {
        "x0": torch.stack([c["x0"] for c in den]).view(GEN_BLOCKS, 4, 1, 3, *LATENT_SHAPE),
        "step_noise": torch.stack(proxy.draws).view(GEN_BLOCKS, 3, 1, 3, *LATENT_SHAPE),
        "timesteps": torch.tensor([float(c["t"].flatten()[0]) for c in den[:4]]),
        "output": output,
        "starts": torch.tensor([c["start"] // FRAME_TOKENS for c in calls], dtype=torch.float32),
        "sink_k": torch.stack([k for k, _ in sinks]), "sink_v": torch.stack([v for _, v in sinks]),
        "cache_k": cache_k, "cache_v": cache_v,
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

    g = torch.Generator().manual_seed(9)
    prompt = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    context = torch.randn(1, 3 * CONTEXT_BLOCKS, *LATENT_SHAPE, generator=g)
    noise = torch.randn(1, 3 * GEN_BLOCKS, *LATENT_SHAPE, generator=g)

    main_run, weights, model_kwargs = _run(pci, ww, cm, prompt, context, noise, seed=13, alpha=None)
    strong, _, _ = _run(pci, ww, cm, prompt, context, noise, seed=13, alpha=STRONG_ALPHA)
    assert torch.equal(main_run["step_noise"], strong["step_noise"])
    alpha = cm.CausalWanSelfAttention(TINY["dim"], TINY["num_heads"]).compression_alpha
    tensors = {"prompt_embeds": prompt, "context": context, "noise": noise, "step_noise": main_run.pop("step_noise")}
    tensors.update(main_run)
    tensors.update({f"strong.{k}": v for k, v in strong.items() if k not in ("step_noise", "timesteps", "starts")})
    meta = {
        "reference": "JaydenLyh/Reward-Forcing", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "model_kwargs": model_kwargs, "denoising_step_list": [1000, 750, 500, 250], "warp": True,
        "compression_alpha": alpha, "strong_alpha": STRONG_ALPHA,
        "context_blocks": CONTEXT_BLOCKS, "generated_blocks": GEN_BLOCKS, "tiny": TINY,
        "weights_sha256": digest(weights), "frame_tokens": FRAME_TOKENS,
    }
    save(DATA / "reward_forcing.safetensors", tensors, meta)
    print("alpha", alpha, "starts", tensors["starts"].tolist(), "cache frames", tensors["cache_k"].shape[2] // FRAME_TOKENS)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ref/rewardf"))
