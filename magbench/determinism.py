"""Records across devices: what makes them depend on the GPU or process that computed them, what
magbench pins, and the tolerance for what is left.

Two GPUs through torchrun gave the mean PSNR of one GPU, but per-sample values that differed by
up to about 1e-4 (relative) for the samples placed on the second GPU. Reading the code, the
sources are, most likely first:

1. **Inductor autotuning.** On CUDA the fused elementwise groups of the Wan model (RMSNorm over
   the model width, LayerNorm + modulation: ``baselines/wan/model.py``) and the VAE's RMS norms
   run through ``torch.compile``. A reduction kernel that Inductor emits with several Triton
   configurations (block sizes, warps) is benchmarked on the device at its first call and the
   fastest is kept; configurations reduce in different orders, so when two are close in time,
   two processes can keep different ones and round differently. Inductor's on-disk autotune
   cache would make back-to-back runs on one host agree, which fits what was seen (one GPU plain
   and through torchrun gave equal records; only the concurrently started second rank differed).
   A last-bit difference in bfloat16 is then carried through every denoising step and block. PyTorch's ``TORCHINDUCTOR_DETERMINISTIC=1`` (``torch._inductor.config.
   deterministic``) picks one configuration by heuristics instead; its speed cost has not been
   measured here, so it is not on by default. ``--opt fused_elementwise=false`` avoids the
   compiled groups altogether (slower, see benchmarks/RESULTS.md).
2. **cuDNN algorithm choice.** With ``torch.backends.cudnn.benchmark`` on, convolution
   algorithms are chosen by timing. :func:`configure` sets it off (PyTorch's default, made
   explicit so that no imported library's setting decides), so the choice is by cuDNN's
   heuristics: the same on identical GPUs.
3. **TF32.** PyTorch lets cuDNN run float32 convolutions in TF32 by default; the metric
   backbones (LPIPS's AlexNet) run in float32. :func:`configure` turns TF32 off for
   convolutions and matmuls, so scores are float32 scores, as the references compute them (the
   generators run in bfloat16 and are unaffected).
4. **Random numbers.** Every draw of the methods uses an explicit generator seeded per sample
   (the sampler's noise, random weights, pseudo prompt embeddings) and the harness reseeds the
   global generators per sample, so nothing depends on what a process ran before. CUDA's Philox
   stream for a seed does depend on the launch grid, i.e. the GPU model (its SM count) or MIG
   slice: two identical GPUs draw the same noise, different models do not.

What was verified: nothing on a GPU (this module was written on a CPU-only machine). On the CPU,
processes give equal records (``tests/test_runners_cli.py``). GPU records of different
processes are compared with :data:`GPU_RTOL` (:func:`record_differences`), ten times the
largest difference seen; per-frame values were not measured and get the same tolerance.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

# Relative tolerance between records computed on different GPUs (or processes) with the same
# configuration: 10x the largest per-sample difference seen between two GPUs (about 1e-4).
GPU_RTOL = 1e-3
# Records of different CPU processes agree to rounding (they are equal in practice).
CPU_RTOL = 1e-6
# Absolute floor, for values near zero (LPIPS of a near-perfect frame).
ATOL = 1e-6
# Fields that legitimately differ between two runs of the same thing: wall clock and memory.
VOLATILE = ("timing", "memory", "finished_at", "traceback")


def configure() -> None:
    """Pin what is cheap to pin, process-wide: cuDNN algorithms by heuristics (no timing-based
    benchmark), float32 convolutions and matmuls in full float32 (no TF32)."""
    import torch

    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def tolerance(device: str | None) -> float:
    """The relative tolerance for comparing records made on ``device`` ("cpu", "cuda:1", ...)."""
    return GPU_RTOL if str(device or "cpu").startswith("cuda") else CPU_RTOL


def record_differences(
    a: dict[str, Any],
    b: dict[str, Any],
    rtol: float = GPU_RTOL,
    atol: float = ATOL,
    ignore: Iterable[str] = VOLATILE,
) -> list[str]:
    """Where two records of one sample differ beyond the tolerance, as "path: a vs b" lines.

    Floats compare with ``math.isclose(rel_tol=rtol, abs_tol=atol)``; everything else (status,
    ids, integers such as matched frame indices) exactly. ``ignore`` names top-level fields or
    dotted paths (``"extra.bestmatch_indices"``) to skip.
    """
    skip = set(ignore)
    out: list[str] = []
    _diff(a, b, "", rtol, atol, skip, out)
    return out


def _diff(a: Any, b: Any, path: str, rtol: float, atol: float, skip: set[str], out: list[str]) -> None:
    if path in skip:
        return
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if sub in skip:
                continue
            if k not in a or k not in b:
                out.append(f"{sub}: only in {'b' if k not in a else 'a'}")
                continue
            _diff(a[k], b[k], sub, rtol, atol, skip, out)
        return
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} vs {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", rtol, atol, skip, out)
        return
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
            if math.isclose(a, b, rel_tol=rtol, abs_tol=atol) or (math.isnan(a) and math.isnan(b)):
                return
    elif a == b:
        return
    out.append(f"{path}: {a!r} vs {b!r}")
