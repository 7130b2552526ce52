"""Records across devices: pinned settings and the tolerance for comparing records."""

import torch

from magbench.determinism import CPU_RTOL, GPU_RTOL, configure, record_differences, tolerance


def _record(psnr=20.0, frames=(19.0, 21.0), indices=(0, 1)):
    return {"sample_id": "s", "status": "ok", "metrics": {"psnr": psnr, "lpips": 0.0},
            "per_frame": {"psnr": list(frames)}, "extra": {"bestmatch_indices": list(indices)},
            "timing": {"fps": 10.0}, "finished_at": "t1"}


def test_configure_turns_off_timing_based_cudnn_choice_and_tf32():
    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    try:
        torch.backends.cudnn.benchmark = torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        configure()
        assert not torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_gpu_records_agree_within_the_documented_tolerance_and_not_beyond():
    a = _record()
    b = _record(psnr=20.0 * (1 + 1e-4), frames=(19.0 * (1 - 5e-4), 21.0)) | {"timing": {"fps": 99.0}, "finished_at": "t2"}
    assert record_differences(a, b, rtol=GPU_RTOL) == []  # timings and wall clock never count
    assert record_differences(a, b, rtol=CPU_RTOL) == ["metrics.psnr: 20.0 vs 20.002", "per_frame.psnr[0]: 19.0 vs 18.9905"]
    c = _record(psnr=20.1)
    assert record_differences(a, c) == ["metrics.psnr: 20.0 vs 20.1"]


def test_integers_and_strings_compare_exactly_unless_ignored():
    a, b = _record(), _record(indices=(0, 2))
    assert record_differences(a, b) == ["extra.bestmatch_indices[1]: 1 vs 2"]
    assert record_differences(a, b, ignore=("timing", "finished_at", "extra.bestmatch_indices")) == []
    assert record_differences(a, a | {"status": "failed"}) == ["status: 'ok' vs 'failed'"]
    assert record_differences(a, {k: v for k, v in a.items() if k != "extra"}) == ["extra: only in a"]


def test_tolerance_follows_the_device():
    assert tolerance("cuda:1") == tolerance("cuda") == GPU_RTOL
    assert tolerance("cpu") == tolerance(None) == CPU_RTOL
