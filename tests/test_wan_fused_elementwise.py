"""The compiled (fused) elementwise groups of the Wan block compute what the eager ones do.

On CUDA the block runs these functions through torch.compile; here they are compiled for the
CPU with the same settings, which checks the graphs capture whole and agree numerically."""

import math

import pytest
import torch

from magbench.baselines.wan import model as wan


def _inputs(dtype):
    g = torch.Generator().manual_seed(0)
    B, L, H, D, F = 1, 24, 2, 32, 3
    r = lambda *s: torch.randn(*s, generator=g).to(dtype)  # noqa: E731
    return {
        "qk_norm_rope": (r(B, L, H * D), r(B, L, H * D), (torch.rand(H * D, generator=g) + 0.5).to(dtype),
                         (torch.rand(H * D, generator=g) + 0.5).to(dtype), 1e-6, H,
                         torch.randn(L, 1, D // 2, generator=g), torch.randn(L, 1, D // 2, generator=g)),
        "norm_modulate": (r(B, L, H * D), r(B, F, H * D), r(B, F, H * D), 1e-6, F),
        "gated_residual": (r(B, L, H * D), r(B, L, H * D), r(B, F, H * D), F),
        "residual_layer_norm": (r(B, L, H * D), r(B, L, H * D), r(B, F, H * D), (torch.rand(H * D, generator=g) + 0.5).to(dtype),
                                r(H * D), 1e-6, F),
        "add_norm_modulate": (r(B, L, H * D), r(B, L, H * D), r(B, F, H * D), r(B, F, H * D), 1e-6, F),
        "rms_norm": (r(B, L, H * D), (torch.rand(H * D, generator=g) + 0.5).to(dtype), 1e-6),
    }


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_compiled_elementwise_groups_equal_eager(dtype, tol):
    for name, args in _inputs(dtype).items():
        fn = getattr(wan, name)
        eager = fn(*args)
        fused = torch.compile(fn, fullgraph=True, dynamic=False)(*args)
        eager = eager if isinstance(eager, tuple) else (eager,)
        fused = fused if isinstance(fused, tuple) else (fused,)
        for a, b in zip(eager, fused):
            assert a.shape == b.shape and a.dtype == b.dtype
            rel = (a.float() - b.float()).norm() / a.float().norm()
            assert rel < tol, (name, float(rel))


def test_grouped_functions_compute_the_block_as_written_in_float64():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1, 6, 8, generator=g, dtype=torch.float64), torch.randn(1, 6, 8, generator=g, dtype=torch.float64)
    gate, shift, scale = (torch.randn(1, 2, 8, generator=g, dtype=torch.float64) for _ in range(3))
    w, b = torch.rand(8, generator=g, dtype=torch.float64) + 0.5, torch.randn(8, generator=g, dtype=torch.float64)
    x1 = x + (y.view(1, 2, 3, 8) * gate[:, :, None]).view(1, 6, 8)
    got_x, got_n = wan.residual_layer_norm(x, y, gate, w, b, 1e-6, 2)
    torch.testing.assert_close(got_x, x1)
    torch.testing.assert_close(got_n, torch.nn.functional.layer_norm(x1, (8,), w, b, 1e-6))
    got_x, got_h = wan.add_norm_modulate(x, y, shift, scale, 1e-6, 2)
    ln = torch.nn.functional.layer_norm(x + y, (8,), eps=1e-6).view(1, 2, 3, 8)
    torch.testing.assert_close(got_x, x + y)
    torch.testing.assert_close(got_h, (ln * (1 + scale[:, :, None]) + shift[:, :, None]).view(1, 6, 8))
    lin = torch.nn.Linear(8, 16).double()
    torch.testing.assert_close(wan.linear_gelu(x, lin, fused=True), 0.5 * lin(x) * (1 + torch.tanh(
        math.sqrt(2 / math.pi) * (lin(x) + 0.044715 * lin(x) ** 3))))


def test_fused_path_is_used_only_on_cuda_and_when_asked():
    x = torch.zeros(1)
    assert wan.elementwise(wan.gated_residual, True, x) is wan.gated_residual  # CPU: eager
    assert wan.elementwise(wan.gated_residual, False, x) is wan.gated_residual


def test_kernel_choices_belong_to_each_model_not_the_process():
    a = wan.CausalWan(wan.WanConfig.tiny(), attention="sdpa", fused_elementwise=False)
    b = wan.CausalWan(wan.WanConfig.tiny())
    assert (a.attention.backend, a.fused_elementwise) == ("sdpa", False)
    assert (b.attention.backend, b.fused_elementwise) == ("auto", True)
    a.set_kernels(attention="flash", fused_elementwise=True)
    assert all(blk.self_attn.attention.backend == blk.cross_attn.attention.backend == "flash" for blk in a.blocks)
    assert all(blk.fused_elementwise and blk.self_attn.fused_elementwise for blk in a.blocks)
    assert (b.attention.backend, b.fused_elementwise) == ("auto", True)


@pytest.mark.parametrize("name", ["mag", "self-forcing", "full-history"])
def test_each_method_loads_with_the_fused_default_and_the_option_overrides_it(name, tmp_path):
    from magbench.registry import METHODS

    import magbench.baselines.wan  # noqa: F401

    for opts, want in (({}, True), ({"fused_elementwise": False, "attention": "sdpa"}, False)):
        m = METHODS.get(name)(config="tiny", random_weights=True, resolution=[16, 32], prompt_cache=str(tmp_path), **opts)
        m.load("cpu", torch.float32)
        for model in filter(None, (m.generator, m.memory_model)):
            assert model.fused_elementwise is want
            assert model.attention.backend == opts.get("attention", "auto")
