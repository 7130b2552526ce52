"""Record the CausVid parity golden from the reference code.

Reference: tianweiy/CausVid @ ca2115039172dfa3a02deee1534408a09680f29f (master). Usage:
``python tests/golden/record_causvid.py /path/to/CausVid`` (a checkout of that commit, outside
this package) -> ``tests/data/golden/causvid.safetensors``.

Runs the reference's own ``InferencePipeline`` (``causvid/models/wan/causal_inference.py``: its
``start_latents`` ingestion, 21-frame cache, 3-step loop) with its ``CausalWanDiffusionWrapper``
(shift-8 ``FlowMatchScheduler``, nearest-grid sigma) and ``CausalWanModel`` cache code, float32
on the CPU, for the tiny model of ``tiny.py`` with ``configs/wan_causal_dmd.yaml``'s settings
(``denoising_step_list [1000, 757, 522, 0]``, no warp, 3-frame blocks). The rollouts are
``minimal_inference/longvideo_autoregressive_inference.py``'s loop (``--num_overlap_frames 3``):
each call generates into 21 frames from ``start_latents`` = [anchor, the previous call's last 2
latents]; 3 calls (21, 21 and 9 frames: the cache restarts at position 0 twice). The first call
starts from the context as baselines.md 5.2's faithful variant: [anchor, last 2 of 6 context
latents]. The anchors stand for the VAE encoding of one pixel frame (the script's ``encode`` of
``video[-9]``); the VAE is outside this parity check, so they are fixed random latents, recorded.

Stubbed: flash-attn (float32 SDPA), the text encoder (fixed random embeddings), the VAE, the
package ``__init__`` that imports SDXL; ``device="cuda"`` in the pipeline's re-noising becomes
the CPU; the pipeline's hard-coded Wan-1.3B sizes are scaled to the tiny model (2 transformer
blocks, 6 tokens per frame, cache tensors of 2 heads x 32 channels; its 32760-token cache length
is kept: a rollout writes at most 21 frames at absolute positions, so the length never binds).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden import _reference as ref  # noqa: E402
from golden.tiny import DATA, FRAME_TOKENS, LATENT_SHAPE, PROMPT_TOKENS, TINY, digest, save, tiny_weights  # noqa: E402

CONTEXT_BLOCKS = 2
ROLLOUT_FRAMES = (21, 21, 9)
OVERLAP = 3


def main(root: Path) -> None:
    base = "causvid.models.wan.wan_base.modules"
    ref.setup(
        root, ["causvid", "causvid.models", "causvid.models.wan", "causvid.models.wan.wan_base", base],
        {f"{base}.tokenizers": ["HuggingfaceTokenizer"], f"{base}.t5": ["umt5_xxl"], f"{base}.vae": ["_video_vae"],
         "einops": ["repeat", "rearrange"]},
    )
    import causvid.models.wan.causal_model as cm
    import causvid.models.wan.wan_base.modules.model as wm
    import causvid.models.wan.wan_wrapper as ww

    cm.attention = ref.sdpa
    wm.flash_attention = ref.sdpa
    ref.patch_from_pretrained(ww.WanModel, lambda **kw: torch.nn.Module())  # replaced by the causal model
    ref.patch_from_pretrained(cm.CausalWanModel, lambda **kw: cm.CausalWanModel(model_type="t2v", **TINY, **kw))

    g = torch.Generator().manual_seed(9)
    prompt = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    context = torch.randn(1, 3 * CONTEXT_BLOCKS, *LATENT_SHAPE, generator=g)
    anchors = torch.randn(len(ROLLOUT_FRAMES), 1, 1, *LATENT_SHAPE, generator=g)

    class Text:
        def __call__(self, text_prompts):
            return {"prompt_embeds": prompt}

    class Vae:
        def decode_to_pixel(self, x):
            return x

    models = sys.modules["causvid.models"]
    models.get_diffusion_wrapper = lambda model_name: ww.CausalWanDiffusionWrapper  # type: ignore[attr-defined]
    models.get_text_encoder_wrapper = lambda model_name: Text  # type: ignore[attr-defined]
    models.get_vae_wrapper = lambda model_name: Vae  # type: ignore[attr-defined]
    import causvid.models.wan.causal_inference as ci

    args = types.SimpleNamespace(
        model_name="causal_wan", denoising_step_list=[1000, 757, 522, 0], warp_denoising_step=False, num_frame_per_block=3,
    )
    torch.manual_seed(0)
    pipe = ci.InferencePipeline(args, device="cpu")
    weights = tiny_weights([(k, tuple(v.shape)) for k, v in pipe.generator.model.state_dict().items()])
    pipe.generator.model.load_state_dict(weights, strict=True)
    pipe.generator.eval().requires_grad_(False)
    pipe.num_transformer_blocks = TINY["num_layers"]
    pipe.frame_seq_length = FRAME_TOKENS
    proxy = ref.TorchProxy(seed=13, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
    ci.torch = proxy
    hook = ref.RecordingHook()
    pipe.generator.register_forward_hook(hook, with_kwargs=True)

    start = torch.cat([anchors[0], context[:, -(OVERLAP - 1) :]], dim=1)
    gen_noise, outputs = [], []
    with torch.no_grad():
        for r, frames in enumerate(ROLLOUT_FRAMES):
            noise = torch.randn(1, frames, *LATENT_SHAPE, generator=g)
            _, latents = pipe.inference(noise=noise, text_prompts=["tiny"], start_latents=start, return_latents=True)
            assert torch.equal(latents[:, :OVERLAP], start)
            gen_noise.append(noise[:, OVERLAP:])
            outputs.append(latents[:, OVERLAP:])
            if r + 1 < len(ROLLOUT_FRAMES):
                start = torch.cat([anchors[r + 1], latents[:, -(OVERLAP - 1) :]], dim=1)

    den = [c for c in hook.calls if int(c["t"].flatten()[0]) != 0]
    blocks = sum(f - OVERLAP for f in ROLLOUT_FRAMES) // 3
    assert len(den) == 3 * blocks and len(proxy.draws) == 2 * blocks
    x0 = torch.stack([c["x0"] for c in den]).view(blocks, 3, 1, 3, *LATENT_SHAPE)
    step_noise = torch.stack(proxy.draws).view(blocks, 2, 1, 3, *LATENT_SHAPE)
    timesteps = torch.tensor([float(c["t"].flatten()[0]) for c in den[:3]])
    tensors = {
        "prompt_embeds": prompt, "context": context, "anchors": anchors, "noise": torch.cat(gen_noise, dim=1),
        "step_noise": step_noise, "x0": x0, "timesteps": timesteps, "output": torch.cat(outputs, dim=1),
        "starts": torch.tensor([c["start"] // FRAME_TOKENS for c in hook.calls], dtype=torch.float32),
    }
    meta = {
        "reference": "tianweiy/CausVid", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "denoising_step_list": args.denoising_step_list, "warp": False, "shift": 8.0,
        "rollout_frames": list(ROLLOUT_FRAMES), "overlap": OVERLAP, "context_blocks": CONTEXT_BLOCKS,
        "generated_blocks": blocks, "tiny": TINY, "weights_sha256": digest(weights), "frame_tokens": FRAME_TOKENS,
    }
    save(DATA / "causvid.safetensors", tensors, meta)
    print("timesteps", timesteps.tolist(), "calls", len(hook.calls), "starts", tensors["starts"].tolist())


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ref/cv"))
