"""Record the MAG parity golden from the reference code.

Reference: Xilluill/MAG @ 08008c604c872b8a86123e3c4d13e4dda5806e08. Usage:
``python tests/golden/record_mag.py /path/to/MAG`` (a checkout of that commit, outside this
package; a ``git archive`` export needs a ``REFERENCE_COMMIT`` file) ->
``tests/data/golden/mag.safetensors``.

Runs the reference's own ``memory_generation_pipeline`` (``pipeline/memory_generation_pipeline.py``:
its ``__init__``, ``init_state``, ``_initialize_cache``, ``generator_wrapper`` / ``memory_wrapper``
of ``model/memory_generation_model.py``, ``FlowMatchScheduler``, and ``CausalWanModel`` with the
``CausalWanSelfAttention_block_cache`` inference branch of ``wan/modules/causal_model.py``) in
float32 on the CPU, for the tiny model of ``tiny.py``: the generator has the seeded weights of
``tiny.WEIGHT_SEED``, the memory model its own (``MEMORY_WEIGHT_SEED``). Cache settings as
``configs/magbench_inference.yaml``: ``cache_mode: block_compress``, ``local_attn_size: 21``
(ring slots, one frame per block), ``sink_size: 2``, ``num_frame_per_block: 3``,
``denoising_step_list [1000, 750, 500, 250]`` warped, ``timestep_shift: 5.0``
(``mixed_precision`` off: float32).

Three recordings, one pipeline each (as ``inference_magbench.py``: ``init_state`` then the
inference function), sharing the context latents, the initial noise and the re-noising draws (the
same seeded draws in the same order, checked):

* ``inference_w_initial_video`` (``--use_memory_model``): 20 context blocks through the memory
  model's cache-update pass (t = 0, empty prompt), then 6 generated blocks. Block ``b`` writes
  ring slot ``b % 21``: the 21 slots are full after block 20, blocks 21..25 overwrite slots 0..4,
  and generated blocks 22..25 read a ring with 1..4 slots overwritten;
* the same with ``gt_latent`` (``--use_gt``): 3 generated blocks whose cache-update passes run on
  ground-truth latents (random here) instead of the generated ones;
* ``inference_w_initial_video_only_generator`` (without ``--use_memory_model``, the paper's
  ablation), same block_compress cache: the generator runs the context and cache-update passes
  with the generation prompt; 3 generated blocks.

Stubbed: flash-attn (float32 SDPA, ``_reference.sdpa``, for self- and cross-attention), the text
encoder (fixed random embeddings: one for the prompt, one for ``""``, which the memory model is
conditioned on), the VAE (``decode_to_pixel`` returns the latents). The pipeline's hard-coded
Wan-1.3B sizes are scaled to the tiny model: 2 transformer blocks, 6 tokens per frame, cache
tensors of 2 heads x 32 channels, cross-attention caches of ``text_len`` tokens instead of 512.
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

MEMORY_WEIGHT_SEED = WEIGHT_SEED + 1
CONFIG = {  # configs/magbench_inference.yaml (mixed_precision off: the golden is float32)
    "cache_mode": "block_compress", "local_attn_size": 21, "sink_size": 2, "num_frame_per_block": 3,
    "denoising_step_list": [1000, 750, 500, 250], "warp_denoising_step": True, "timestep_shift": 5.0,
    "mixed_precision": False,
}
CONTEXT_BLOCKS, GEN_BLOCKS = 20, 6
GT_BLOCKS, ONLY_GENERATOR_BLOCKS = 3, 3
DRAW_SEED = 12


class TinyTorch(ref.TorchProxy):
    """``_reference.TorchProxy`` plus the cross-attention caches: ``long_dmd_model`` allocates
    ``[B, 512, 12, 128]`` (UMT5's padded length); the tiny model's context is ``text_len`` tokens."""

    def zeros(self, shape: Any, **kwargs: Any) -> torch.Tensor:
        shape = list(shape)
        if len(shape) == 4 and shape[1:] == [512, 12, 128]:
            shape[1] = TINY["text_len"]
        return super().zeros(shape, **kwargs)


def main(root: Path) -> None:
    ref.setup(
        root, ["wan", "wan.modules", "utils", "pipeline", "model"],
        {"wan.modules.tokenizers": ["HuggingfaceTokenizer"], "wan.modules.t5": ["umt5_xxl"],
         "wan.modules.vae": ["_video_vae"], "einops": ["repeat", "rearrange"]},
    )
    import model.long_dmd_model as ldm
    import pipeline.memory_generation_pipeline as mgp
    import wan.modules.causal_model as cm
    import wan.modules.model as wm

    cm.attention = ref.sdpa
    wm.flash_attention = ref.sdpa

    seeds = {"generator": WEIGHT_SEED, "memory": MEMORY_WEIGHT_SEED}
    hashes: dict[str, str] = {}

    def from_pretrained(cls, path, **kw):
        # the pipeline passes args.generator_ckpt / args.memory_ckpt: here the names of the seeds
        m = cls(model_type="t2v", **TINY, **kw)
        w = tiny_weights([(k, tuple(v.shape)) for k, v in m.state_dict().items()], seed=seeds[path])
        m.load_state_dict(w, strict=True)
        hashes[path] = digest(w)
        return m

    cm.CausalWanModel.from_pretrained = classmethod(from_pretrained)

    g = torch.Generator().manual_seed(9)
    prompt = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    empty = torch.randn(1, PROMPT_TOKENS, TINY["text_dim"], generator=g)
    context = torch.randn(1, 3 * CONTEXT_BLOCKS, *LATENT_SHAPE, generator=g)
    noise = torch.randn(1, 3 * GEN_BLOCKS, *LATENT_SHAPE, generator=g)
    gt = torch.randn(1, 3 * GT_BLOCKS, *LATENT_SHAPE, generator=g)

    class TextEncoder(torch.nn.Module):  # WanTextEncoder's interface
        def __init__(self, device: Any = "cpu") -> None:
            super().__init__()

        def forward(self, text_prompts: list[str]) -> dict:
            e = empty if all(p == "" for p in text_prompts) else prompt
            return {"prompt_embeds": e.expand(len(text_prompts), -1, -1)}

    class VAE(torch.nn.Module):  # WanVAEWrapper's interface; the golden keeps latents
        device = torch.device("cpu")

        def __init__(self, device: Any = "cpu") -> None:
            super().__init__()

        def decode_to_pixel(self, latent, use_cache=False, offload_cpu=False):
            return latent

    mgp.WanTextEncoder, mgp.WanVAEWrapper = TextEncoder, VAE

    def run(function: str, n_blocks: int, gt_latent: torch.Tensor | None = None) -> dict[str, Any]:
        args = types.SimpleNamespace(**CONFIG, generator_ckpt="generator", memory_ckpt="memory")
        proxy = TinyTorch(seed=DRAW_SEED, heads=TINY["num_heads"], head_dim=TINY["dim"] // TINY["num_heads"])
        mgp.torch = ldm.torch = proxy  # cache allocation + the re-noising draws
        torch.manual_seed(0)
        pipe = mgp.memory_generation_pipeline(args, device="cpu")
        pipe.num_transformer_blocks = TINY["num_layers"]
        pipe.frame_seq_length = FRAME_TOKENS
        calls: list[dict[str, Any]] = []
        gen_wrapper, mem_wrapper = pipe.generator_wrapper, pipe.memory_wrapper

        def recorded(model: str, fn):
            def call(noisy_input, timestep, conditional_dict, current_start_frame, update_cache=False, **kw):
                out = fn(noisy_input, timestep, conditional_dict, current_start_frame, update_cache=update_cache, **kw)
                calls.append({
                    "model": model, "start": int(current_start_frame), "update": bool(update_cache),
                    "t": float(timestep.flatten()[0]), "x": noisy_input.detach().clone(),
                    "empty_prompt": conditional_dict["prompt_embeds"] is pipe.empty_conditional_dict["prompt_embeds"]
                    or torch.equal(conditional_dict["prompt_embeds"], empty),
                    "x0": None if out is None else out.detach().clone(),
                })
                return out
            return call

        pipe.generator_wrapper = recorded("generator", gen_wrapper)
        pipe.memory_wrapper = recorded("memory", mem_wrapper)
        n = 3 * n_blocks
        with torch.no_grad():
            pipe.init_state(noise[:, :n])
            _, output = getattr(pipe, function)(
                noise=noise[:, :n], text_prompts=["tiny"], initial_latent=context, gt_latent=gt_latent,
            )
        kv = pipe.kv_cache1[0]
        assert kv["k"].shape[1] == CONFIG["local_attn_size"] * FRAME_TOKENS, "block_compress: a ring of local_attn_size frames"
        assert torch.equal(output[:, : 3 * CONTEXT_BLOCKS], context)
        return {"calls": calls, "draws": proxy.draws, "output": output[:, 3 * CONTEXT_BLOCKS :]}

    def check_and_stack(rec: dict[str, Any], n_blocks: int, writer: str, commit_inputs: torch.Tensor | None):
        calls = rec["calls"]
        den = [c for c in calls if not c["update"]]
        upd = [c for c in calls if c["update"]]
        assert all(c["model"] == "generator" and not c["empty_prompt"] for c in den)
        assert len(den) == 4 * n_blocks and len(upd) == CONTEXT_BLOCKS + n_blocks
        assert all(c["model"] == writer for c in upd)
        assert all(c["empty_prompt"] == (writer == "memory") for c in upd)
        assert [c["start"] for c in upd] == [3 * b for b in range(CONTEXT_BLOCKS + n_blocks)]
        assert all(c["t"] == 0.0 for c in upd)
        for j, c in enumerate(upd[:CONTEXT_BLOCKS]):
            assert torch.equal(c["x"], context[:, 3 * j : 3 * j + 3])
        x0 = torch.stack([c["x0"] for c in den]).view(n_blocks, 4, 1, 3, *LATENT_SHAPE)
        for b, c in enumerate(upd[CONTEXT_BLOCKS:]):  # what each generated block's cache-update pass ran on
            want = x0[b, -1] if commit_inputs is None else commit_inputs[:, 3 * b : 3 * b + 3]
            assert torch.equal(c["x"], want)
        assert torch.equal(rec["output"], torch.cat(list(x0[:, -1]), dim=1))
        assert len(rec["draws"]) == 3 * n_blocks
        steps = torch.stack(rec["draws"]).view(n_blocks, 3, 1, 3, *LATENT_SHAPE)
        starts = torch.tensor([[c["start"], c["model"] == "memory", c["update"], c["t"]] for c in calls], dtype=torch.float32)
        timesteps = torch.tensor([c["t"] for c in den[:4]])
        return x0, steps, starts, timesteps

    main_rec = run("inference_w_initial_video", GEN_BLOCKS)
    x0, step_noise, starts, timesteps = check_and_stack(main_rec, GEN_BLOCKS, "memory", None)
    gt_rec = run("inference_w_initial_video", GT_BLOCKS, gt_latent=gt)
    gt_x0, gt_steps, gt_starts, _ = check_and_stack(gt_rec, GT_BLOCKS, "memory", gt)
    og_rec = run("inference_w_initial_video_only_generator", ONLY_GENERATOR_BLOCKS)
    og_x0, og_steps, og_starts, _ = check_and_stack(og_rec, ONLY_GENERATOR_BLOCKS, "generator", None)
    # The shorter runs' draws are the main run's first ones (same seed, same order): not stored twice.
    assert torch.equal(gt_steps, step_noise[:GT_BLOCKS]) and torch.equal(og_steps, step_noise[:ONLY_GENERATOR_BLOCKS])
    # The first generated block reads only what the context wrote: identical in the main and gt runs.
    assert torch.equal(gt_x0[0], x0[0]) and not torch.equal(gt_x0[1], x0[1])

    tensors = {
        "prompt_embeds": prompt, "empty_embeds": empty, "context": context, "noise": noise, "step_noise": step_noise,
        "x0": x0, "output": main_rec["output"], "timesteps": timesteps, "calls": starts,
        "gt.latents": gt, "gt.x0": gt_x0, "gt.calls": gt_starts,
        "only_generator.x0": og_x0, "only_generator.calls": og_starts,
    }
    meta = {
        "reference": "Xilluill/MAG", "commit": ref.git_commit(root), "script": Path(__file__).name,
        "config": CONFIG, "functions": {
            "main": "inference_w_initial_video", "gt": "inference_w_initial_video (gt_latent)",
            "only_generator": "inference_w_initial_video_only_generator",
        },
        "context_blocks": CONTEXT_BLOCKS, "generated_blocks": GEN_BLOCKS, "gt_blocks": GT_BLOCKS,
        "only_generator_blocks": ONLY_GENERATOR_BLOCKS, "tiny": TINY, "frame_tokens": FRAME_TOKENS,
        "weights_seed": WEIGHT_SEED, "memory_weights_seed": MEMORY_WEIGHT_SEED,
        "weights_sha256": hashes["generator"], "memory_weights_sha256": hashes["memory"],
        "calls_columns": ["start_frame", "memory_model", "update_cache", "timestep"],
    }
    path = DATA / "mag.safetensors"
    save(path, tensors, meta)
    print("timesteps", timesteps.tolist(), "calls", len(main_rec["calls"]), "bytes", path.stat().st_size)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ref/mag"))
