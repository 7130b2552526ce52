"""Record the MAG memory-reconstruction parity golden from the reference code.

Reference: Xilluill/MAG @ 08008c604c872b8a86123e3c4d13e4dda5806e08. Usage:
``python tests/golden/record_mag_reconstruction.py /path/to/MAG`` (a checkout of that commit,
outside this package; a ``git archive`` export needs a ``REFERENCE_COMMIT`` file) ->
``tests/data/golden/mag_reconstruction.safetensors``.

Runs the reference's own block-compression test (``inference_compress.py``): its
``MemoryModelPipeline.inference_block_compress_multi_step`` (``pipeline/causal_inference_pipeline.py``,
with ``block_mask_type='history_compress'`` as the script passes) over ``CausalWanModel._forward_train``
and ``generate_all_history_block_compress_mask`` (``wan/modules/causal_model.py``), the reference's
``FlowMatchScheduler`` and warped ``denoising_step_list``, configured by ``configs/bc_inference.yaml``
merged over ``configs/default_config.yaml`` (as the script does; ``mixed_precision`` off: float32),
in float32 on the CPU, for the tiny model of ``tiny.py`` with the memory model's seeded weights
(``WEIGHT_SEED + 1``, as ``record_mag.py``; the script's ``--checkpoint_path`` is the memory model).

Two videos through one pipeline, in order, as the script's loop runs them: video A (7 blocks =
21 latent frames, the config's ``image_or_video_shape``) with caption A, then video B (2 blocks)
with caption B. The pipeline keeps the first call's text embedding (``empty_condition_dict``) and
conditions video B on caption A: recorded as it happens (``b.prompt_used``) and checked.

Recorded: the clean latents, the pipeline's noise draws (the initial noise and the fresh noise of
each re-noising step, drawn through ``torch.randn_like`` in the pipeline module, here from a
seeded generator), the x0 after every denoising step, the final latents, the warped timesteps and
the reference mask reduced to latent frames (query frame x key frame over the clean + noisy
sequence; checked constant over each frame's tokens), built by the reference's own
``generate_all_history_block_compress_mask`` and expanded with ``create_mask`` of its mask_mod.

Stubbed: the text encoder (fixed random embeddings), the VAE (``decode_to_pixel`` returns the
latents: the test compares latents; ``inference_compress.py`` encodes the video before the call),
``demo_utils.memory`` (imported by the pipeline module, absent from the repository, unused here).
``flex_attention`` and ``create_block_mask`` run uncompiled (the reference wraps the same
functions in ``torch.compile``). Sizes: 2 transformer blocks, 6 tokens per latent frame.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from golden import _reference as ref  # noqa: E402
from golden.tiny import DATA, FRAME_TOKENS, LATENT_SHAPE, PROMPT_TOKENS, TINY, WEIGHT_SEED, digest, save, tiny_weights  # noqa: E402

MEMORY_WEIGHT_SEED = WEIGHT_SEED + 1  # the memory model's weights, as record_mag.py
BLOCKS_A, BLOCKS_B = 7, 2
DRAW_SEED = 21


def load_config(root: Path) -> dict[str, Any]:
    """``configs/bc_inference.yaml`` over ``configs/default_config.yaml`` (the script's
    ``OmegaConf.merge``; both are flat), float32."""
    import yaml

    cfg = yaml.safe_load((root / "configs" / "default_config.yaml").read_text())
    cfg.update(yaml.safe_load((root / "configs" / "bc_inference.yaml").read_text()))
    cfg["mixed_precision"] = False
    return cfg


def frame_mask(dense: torch.Tensor, frame_tokens: int) -> torch.Tensor:
    """[L, L] token mask -> [L/ft, L/ft] frame mask, checking each tile is constant."""
    n = dense.shape[0] // frame_tokens
    tiles = dense.view(n, frame_tokens, n, frame_tokens)
    fm = tiles[:, 0, :, 0]
    assert torch.equal(tiles, fm[:, None, :, None].expand_as(tiles)), "the mask is not constant over a frame's tokens"
    return fm


def main(root: Path) -> None:
    ref.setup(
        root, ["wan", "wan.modules", "utils", "pipeline", "model", "demo_utils"],
        {"wan.modules.tokenizers": ["HuggingfaceTokenizer"], "wan.modules.t5": ["umt5_xxl"],
         "wan.modules.vae": ["_video_vae"], "einops": ["repeat", "rearrange"],
         "demo_utils.memory": ["gpu", "get_cuda_free_memory_gb", "DynamicSwapInstaller",
                               "move_model_to_device_with_memory_preservation"]},
    )
    from torch.nn.attention.flex_attention import create_block_mask, create_mask, flex_attention

    import pipeline.causal_inference_pipeline as cip
    import wan.modules.causal_model as cm
    import wan.modules.model as wm

    cm.flex_attention = flex_attention  # the reference compiles these same functions
    cm.create_block_mask = create_block_mask
    cm.attention = ref.sdpa  # flash-attn in the cache branches (not reached here)
    wm.flash_attention = ref.sdpa  # the cross-attention

    hashes: dict[str, str] = {}

    def from_pretrained(cls, path, **kw):
        m = cls(model_type="t2v", **TINY, **kw)
        w = tiny_weights([(k, tuple(v.shape)) for k, v in m.state_dict().items()], seed=MEMORY_WEIGHT_SEED)
        m.load_state_dict(w, strict=True)
        hashes[path] = digest(w)
        return m

    cm.CausalWanModel.from_pretrained = classmethod(from_pretrained)

    g = torch.Generator().manual_seed(17)
    prompt_a = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    prompt_b = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    clean_a = torch.randn(1, 3 * BLOCKS_A, *LATENT_SHAPE, generator=g)
    clean_b = torch.randn(1, 3 * BLOCKS_B, *LATENT_SHAPE, generator=g)
    prompts = {"caption a": prompt_a, "caption b": prompt_b}
    encoded: list[str] = []

    class TextEncoder(torch.nn.Module):  # WanTextEncoder's interface
        def __init__(self, device: Any = "cpu") -> None:
            super().__init__()

        def forward(self, text_prompts: list[str]) -> dict:
            encoded.append(text_prompts[0])
            return {"prompt_embeds": prompts[text_prompts[0]].expand(len(text_prompts), -1, -1)}

    class VAE(torch.nn.Module):  # WanVAEWrapper's interface; the golden keeps latents
        device = torch.device("cpu")

        def __init__(self, device: Any = "cpu") -> None:
            super().__init__()

        def decode_to_pixel(self, latent, use_cache=False):
            return latent

    cip.WanTextEncoder, cip.WanVAEWrapper = TextEncoder, VAE
    cfg = load_config(root)
    assert cfg["cache_mode"] == "block_compress" and cfg["num_frame_per_block"] == 3 and cfg["warp_denoising_step"]
    args = types.SimpleNamespace(**cfg, checkpoint_path="memory")
    proxy = ref.TorchProxy(seed=DRAW_SEED, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
    cip.torch = proxy  # the noise draws (randn_like) of the pipeline module
    torch.manual_seed(0)
    pipe = cip.MemoryModelPipeline(args, device="cpu")
    model = pipe.generator.model

    calls: list[dict[str, Any]] = []

    def on_forward(module, args_, kwargs, output):
        calls.append({
            "x": kwargs["x"].permute(0, 2, 1, 3, 4).detach().clone(), "t": kwargs["t"].detach().clone(),
            "clean": kwargs["clean_x"].permute(0, 2, 1, 3, 4).detach().clone(), "mask": kwargs["block_mask_type"],
            "context": kwargs["context"].detach().clone(),
        })

    model.register_forward_hook(on_forward, with_kwargs=True)
    x0s: list[torch.Tensor] = []
    to_x0 = pipe.scheduler._convert_flow_pred_to_x0

    def recorded_x0(flow_pred, xt, timestep):
        out = to_x0(flow_pred=flow_pred, xt=xt, timestep=timestep)
        x0s.append(out.detach().clone())
        return out

    pipe.scheduler._convert_flow_pred_to_x0 = recorded_x0

    def run(clean: torch.Tensor, caption: str) -> dict[str, Any]:
        first_call, first_draw = len(calls), len(proxy.draws)
        with torch.no_grad():
            _, latents, loss = pipe.inference_block_compress_multi_step(
                text_prompts=[caption], initial_latent=clean, block_mask_type="history_compress",
            )
        mine, draws = calls[first_call:], proxy.draws[first_draw:]
        assert len(mine) == 4 and all(c["mask"] == "history_compress" for c in mine)
        assert all(torch.equal(c["clean"], clean) for c in mine)
        steps = torch.stack([x.unflatten(0, clean.shape[:2]) for x in x0s[-4:]])
        assert torch.equal(latents, steps[-1])
        assert len(draws) == 4  # the initial noise, then one fresh draw per re-noising step
        noise = torch.stack([d.reshape(clean.shape) for d in draws])
        assert torch.equal(mine[0]["x"], noise[0])
        ts = torch.stack([c["t"][0, 0] for c in mine]).float()
        assert all(torch.equal(c["t"], torch.full_like(c["t"], float(c["t"][0, 0]))) for c in mine)
        assert abs(loss - float(((latents.double() - clean.double()) ** 2).mean())) < 1e-9
        used = next(n for n, e in prompts.items() if torch.equal(mine[0]["context"], e))
        return {"x0": steps, "noise": noise, "timesteps": ts, "prompt_used": used}

    rec_a = run(clean_a, "caption a")
    rec_b = run(clean_b, "caption b")
    assert encoded == ["caption a"], "the text encoder runs once: the first video's caption is kept"
    assert rec_a["prompt_used"] == "caption a" and rec_b["prompt_used"] == "caption a"
    assert torch.equal(rec_a["timesteps"], rec_b["timesteps"])

    def reference_frame_mask(frames: int) -> torch.Tensor:
        ft = FRAME_TOKENS
        bm = model.generate_all_history_block_compress_mask(
            num_frames=frames, frame_seqlen=ft, device="cpu", num_frame_per_block=3, local_attn_size=model.local_attn_size,
        )
        total = 2 * frames * ft
        dense = create_mask(bm.mask_mod, None, None, total, total, device="cpu")[0, 0]
        return frame_mask(dense, ft)

    tensors = {
        "prompt_a": prompt_a, "prompt_b": prompt_b, "timesteps": rec_a["timesteps"],
        "a.clean": clean_a, "a.noise": rec_a["noise"], "a.x0": rec_a["x0"], "a.mask": reference_frame_mask(3 * BLOCKS_A).float(),
        "b.clean": clean_b, "b.noise": rec_b["noise"], "b.x0": rec_b["x0"], "b.mask": reference_frame_mask(3 * BLOCKS_B).float(),
    }
    meta = {
        "reference": "Xilluill/MAG", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "function": "MemoryModelPipeline.inference_block_compress_multi_step", "block_mask_type": "history_compress",
        "config": {k: cfg[k] for k in ("denoising_step_list", "warp_denoising_step", "timestep_shift", "num_frame_per_block",
                                       "local_attn_size", "sink_size", "cache_mode", "mixed_precision")},
        "blocks": {"a": BLOCKS_A, "b": BLOCKS_B}, "prompt_used": {"a": rec_a["prompt_used"], "b": rec_b["prompt_used"]},
        "tiny": TINY, "frame_tokens": FRAME_TOKENS, "memory_weights_seed": MEMORY_WEIGHT_SEED,
        "memory_weights_sha256": hashes["memory"], "noise_columns": ["initial", "step 1", "step 2", "step 3"],
    }
    path = DATA / "mag_reconstruction.safetensors"
    save(path, tensors, meta)
    print("timesteps", rec_a["timesteps"].tolist(), "bytes", path.stat().st_size)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ref/mag"))
