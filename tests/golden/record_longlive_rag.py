"""Record the LongLive-RAG parity golden from the reference code.

Reference: qixinhu11/LongLive-RAG @ 973884a3cd3ad4b314c3d4ab42274c52e7a0b22a (main, 2026-06-04).
Usage: ``python tests/golden/record_longlive_rag.py /path/to/LongLive-RAG`` (a checkout of that
commit, outside this package) -> ``tests/data/golden/longlive_rag.safetensors``.

Runs the reference's own ``CausalInferencePipeline.inference`` (retrieval: latent descriptors by
its ``LatentAE`` encoder, cosine top-K over the evicted frames, recency guard) with its
``WanDiffusionWrapper``, ``FlowMatchScheduler`` and latent-memory ``CausalWanModel``
(``causal_model_latentmem.py``: keys cached before RoPE, rotated to their cache slots when read,
evicted frames moved to CPU lists, retrieved frames at position 0), float32 on the CPU, for the
tiny model of ``tiny.py`` and a tiny ``LatentAE`` (``tiny.TINY_AE``, seeded weights saved as the
checkpoint the pipeline loads), with ``configs/causal_forcing_latentmem.yaml``'s settings:
``model_kwargs = {local_attn_size: 12, timestep_shift: 5.0, sink_size: 1, memory_size: 6,
recent_exclude: 5, use_latentmem: true, compression_method: ae}``, steps [1000, 750, 500, 250]
warped, ``context_noise: 0``.

3 context blocks + 7 generated blocks = 30 frames: the 12-frame cache evicts 6 times (from block
4 on), and blocks 6 to 9 retrieve (1, 4, 6 and 6 frames).

Context: the pipeline has no context path; as ``record_longlive.py`` does for LongLive, each
context block goes through the pipeline's own loop with the wrapper's denoising calls returning
the context latents as x0 without running the model, so the loop's clean pass (with the block's
retrieval) is the block's one model call, its descriptors are those of the context latents, and
its eviction happens in that call.

Recorded besides the inputs, the tiny encoder's weights (``ae.encoder.*``) and every denoising
x0: the retrieval log (chosen pool entries and
their similarities per block), every frame's descriptor, and the cache contents at the end: the
device cache (K before RoPE, V) and the CPU pool of evicted frames, every layer.

Stubbed: flash-attn (float32 SDPA), the text encoder (fixed random embeddings), the VAE (decode
skipped), the CUDA memory helpers, and the GPU's copy semantics of the CPU offload (see
``transfer`` below); the pipeline's hard-coded Wan-1.3B sizes are scaled to the tiny
model (2 transformer blocks, 6 tokens per frame, caches of 2 heads x 32 channels).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden import _reference as ref  # noqa: E402
from golden.tiny import (  # noqa: E402
    DATA, FRAME_TOKENS, LATENT_SHAPE, PROMPT_TOKENS, TINY, TINY_AE, digest, save, tiny_encoder_weights, tiny_weights,
)

CONTEXT_BLOCKS, GEN_BLOCKS = 3, 7
MODEL_KWARGS = {"local_attn_size": 12, "timestep_shift": 5.0, "sink_size": 1, "memory_size": 6, "recent_exclude": 5,
                "use_latentmem": True, "compression_method": "ae"}


class _Args(dict):
    """The pipeline reads its config both as a mapping and by attribute (OmegaConf)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def main(root: Path) -> None:
    ref.setup(
        root, ["wan", "wan.modules", "utils", "pipeline", "ae"],
        {"wan.modules.tokenizers": ["HuggingfaceTokenizer"], "wan.modules.t5": ["umt5_xxl"],
         "wan.modules.vae": ["_video_vae"], "einops": ["repeat", "rearrange"],
         "utils.memory": ["gpu", "get_cuda_free_memory_gb", "DynamicSwapInstaller",
                          "move_model_to_device_with_memory_preservation", "log_gpu_memory"]},
    )
    import ae.config as aec
    import ae.model as aem
    import pipeline.causal_inference as pci
    import utils.wan_wrapper as ww
    import wan.modules.causal_model_latentmem as cml
    import wan.modules.model as wm

    cml.attention = ref.sdpa
    wm.flash_attention = ref.sdpa
    # Device transfers as on the GPU: the model offloads evicted frames with
    # ``f.to("cpu", non_blocking=True)``, a copy of the frames before the cache is rolled when the
    # cache is on the GPU (the reference's setting); on the CPU ``.to("cpu")`` returns the tensor
    # itself, a view of the cache that the roll right after overwrites (the pool would hold the
    # next frames instead). Here such a transfer copies, as it does from the GPU.
    to = torch.Tensor.to

    def transfer(self, *args, **kwargs):
        out = to(self, *args, **kwargs)
        return out.clone() if kwargs.get("non_blocking") and out is self else out

    torch.Tensor.to = transfer  # type: ignore[method-assign]
    ref.patch_from_pretrained(cml.CausalWanModel, lambda **kw: cml.CausalWanModel(model_type="t2v", **TINY, **kw))

    # The tiny retrieval autoencoder, saved where the pipeline loads it from (as train.py saves).
    ae_cfg = aec.AEConfig(**TINY_AE)
    ae = aem.LatentAE(ae_cfg)
    ae_weights = tiny_encoder_weights([(k, tuple(v.shape)) for k, v in ae.state_dict().items()])
    tmp = Path(tempfile.mkdtemp())
    torch.save({"model": ae_weights, "config": vars(ae_cfg)}, tmp / "ae.pt")
    encoder_weights = {k: v for k, v in ae_weights.items() if k.startswith("encoder.")}

    torch.manual_seed(0)
    wrapper = ww.WanDiffusionWrapper(
        timestep_shift=5.0, is_causal=True, local_attn_size=MODEL_KWARGS["local_attn_size"],
        sink_size=MODEL_KWARGS["sink_size"], memory_size=MODEL_KWARGS["memory_size"], use_latentmem=True,
    )
    weights = tiny_weights([(k, tuple(v.shape)) for k, v in wrapper.model.state_dict().items()])
    wrapper.model.load_state_dict(weights, strict=True)
    wrapper.model.eval().requires_grad_(False)

    g = torch.Generator().manual_seed(11)
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

    model_kwargs = _Args(MODEL_KWARGS, ae_ckpt=str(tmp / "ae.pt"))
    args = _Args(
        denoising_step_list=[1000, 750, 500, 250], warp_denoising_step=True, num_frame_per_block=3,
        context_noise=0, model_kwargs=model_kwargs,
    )
    text = lambda text_prompts: {"prompt_embeds": prompt}  # noqa: E731
    pipe = pci.CausalInferencePipeline(args, device="cpu", generator=wrapper, text_encoder=text, vae=object())
    assert pipe.compression_method == "ae" and pipe.ae_model is not None
    pipe.ae_model.float()
    pipe.num_transformer_blocks = TINY["num_layers"]
    pipe.frame_seq_length = FRAME_TOKENS
    proxy = ref.TorchProxy(seed=15, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
    pci.torch = proxy
    hook = ref.RecordingHook()
    wrapper.register_forward_hook(hook, with_kwargs=True)
    with torch.no_grad():
        _, output = pipe.inference(noise=full_noise, text_prompts=["tiny"], return_latents=True, skip_vae_decode=True)

    assert torch.equal(output[:, :n_ctx], context)
    den = [c for c in hook.calls if c["start"] >= ctx_tokens and float(c["t"].flatten()[0]) != 0.0]
    assert len(den) == 4 * GEN_BLOCKS and len(proxy.draws) == 3 * (CONTEXT_BLOCKS + GEN_BLOCKS)
    draws = proxy.draws[3 * CONTEXT_BLOCKS :]  # the context blocks' re-noising draws are discarded
    log = pipe.memory_indices_log
    assert [e["query_frame"] for e in log] == [18, 21, 24, 27]
    selected = torch.full((len(log), MODEL_KWARGS["memory_size"]), -1.0)
    sims = torch.zeros(len(log), MODEL_KWARGS["memory_size"])
    for i, e in enumerate(log):
        k = len(e["selected_pool_indices"][0])
        selected[i, :k] = torch.tensor(e["selected_pool_indices"][0], dtype=torch.float32)
        sims[i, :k] = torch.tensor(e["selected_similarities"][0])
    end = int(pipe.kv_cache1[0]["local_end_index"].item())
    tensors = {
        "prompt_embeds": prompt, "context": context, "noise": noise,
        "step_noise": torch.stack(draws).view(GEN_BLOCKS, 3, 1, 3, *LATENT_SHAPE),
        "x0": torch.stack([c["x0"] for c in den]).view(GEN_BLOCKS, 4, 1, 3, *LATENT_SHAPE),
        "timesteps": torch.tensor([float(c["t"].flatten()[0]) for c in den[:4]]),
        "output": output,
        "starts": torch.tensor([c["start"] // FRAME_TOKENS for c in hook.calls], dtype=torch.float32),
        "retrieval_block_starts": torch.tensor([e["query_frame"] for e in log], dtype=torch.float32),
        "retrieval_entries": selected, "retrieval_similarities": sims,
        "descriptors": torch.stack(pipe.latent_descriptors, dim=1),  # [B, frames, D]
        "cache_k": torch.stack([c["k"][:, :end].clone() for c in pipe.kv_cache1]),
        "cache_v": torch.stack([c["v"][:, :end].clone() for c in pipe.kv_cache1]),
        "host_k": torch.stack([torch.cat(c["cpu_k_frames"], dim=1) for c in pipe.kv_cache1]),
        "host_v": torch.stack([torch.cat(c["cpu_v_frames"], dim=1) for c in pipe.kv_cache1]),
        # The encoder half of the tiny autoencoder (drawn with the decoder's names in the sort
        # order, so stored rather than regenerated).
        **{f"ae.{k}": v for k, v in encoder_weights.items()},
    }
    meta = {
        "reference": "qixinhu11/LongLive-RAG", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "config": "configs/causal_forcing_latentmem.yaml", "model_kwargs": MODEL_KWARGS,
        "denoising_step_list": [1000, 750, 500, 250], "warp": True,
        "context_blocks": CONTEXT_BLOCKS, "generated_blocks": GEN_BLOCKS, "tiny": TINY, "tiny_ae": TINY_AE,
        "weights_sha256": digest(weights), "encoder_weights_sha256": digest(encoder_weights), "frame_tokens": FRAME_TOKENS,
        "retrieval_log": log,
    }
    save(DATA / "longlive_rag.safetensors", tensors, meta)
    print("retrieval", [(e["query_frame"], e["num_evicted"], e["selected_pool_indices"]) for e in log])
    print("host frames", tensors["host_k"].shape, "cache", tensors["cache_k"].shape, "starts", tensors["starts"].tolist())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ref/llrag"))
