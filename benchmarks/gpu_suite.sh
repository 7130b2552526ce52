#!/usr/bin/env bash
# The GPU benchmarks in one call (the device machine has no network: wheels travel in .whl/).
# Usage: bash benchmarks/gpu_suite.sh PART  (PART: speed | kernels | e2e | cli | fused | graphs | vae | defaults | final | gpus2 | issue22).
# magbench must be installed (pip install --no-deps -e .): the scripts import it.
# Results go to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0
export OUT=${OUT:-/tmp/magbench-bench}; mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
case "${1:-kernels}" in
  speed)
    # Issue 14: flash-attn-4 against SDPA at the real shapes (asserts), the profile of one block per
    # backend, and the A/B of the two backends in one run, memory full, decode included.
    timeout 170 python3 benchmarks/check_flash.py --out "$OUT/check_flash.json" 2>&1 | grep -v Warn | tail -14
    timeout 170 python3 benchmarks/profile_wan.py --policies mag --attention sdpa,flash --out "$OUT/profile_mag.json" 2>&1 | grep -v Warn | tail -32
    timeout 330 python3 benchmarks/bench_wan.py --settings mag:66,self-forcing:66,full-history:120 --attention sdpa,flash \
      --warmup 2 --blocks 4 --out "$OUT/wan_flash_ab.json" 2>&1 | tail -9
    ;;
  fused)
    # A/B of the fused elementwise groups, same machine, same call.
    timeout 110 python3 benchmarks/check_fused.py 2>&1 | grep -v Warn | tail -3
    timeout 190 python3 benchmarks/bench_wan.py --policies mag,self-forcing --histories 21 --out "$OUT/wan_fused.json" 2>&1 | tail -6
    timeout 130 python3 benchmarks/bench_wan.py --policies mag,self-forcing --histories 21 --no-fused --out "$OUT/wan_eager_ab.json" 2>&1 | tail -6
    timeout 130 python3 benchmarks/bench_wan.py --policies mag,self-forcing --histories 21 --overlap-decode --out "$OUT/wan_fused_overlap.json" 2>&1 | tail -6
    ;;
  graphs)
    # CUDA graphs for the denoising passes, A/B with and without the fused groups, memory full.
    timeout 150 python3 benchmarks/check_graphs.py 2>&1 | grep -v Warn | tail -3
    for v in "" "--no-fused" "--cuda-graphs" "--cuda-graphs --no-fused"; do
      timeout 100 python3 benchmarks/bench_wan.py --policies mag,self-forcing --histories 66 --warmup 2 --blocks 4 --no-vae $v \
        --out "$OUT/wan_graphs_ab$(echo $v | tr -d ' -').json" 2>&1 | tail -4 | head -2 | sed "s/^/[$v] /"
    done
    timeout 110 python3 benchmarks/bench_wan.py --policies mag,self-forcing --histories 66 --warmup 2 --blocks 4 --cuda-graphs \
      --out "$OUT/wan_graphs_e2e.json" 2>&1 | tail -4 | head -2
    ;;
  vae)
    timeout ${VAE_TIMEOUT:-300} python3 benchmarks/bench_vae.py ${VAE_ARGS:-} --out "$OUT/vae.json" 2>&1 | grep -v "float32\|Warn" | tail -8
    ;;
  defaults)
    # The shipped defaults end to end: fused elementwise groups, channels-last VAE.
    timeout 150 python3 benchmarks/bench_wan.py --policies mag,self-forcing --histories 66 --warmup 2 --blocks 4 \
      --out "$OUT/wan_defaults_e2e.json" 2>&1 | tail -4 | head -3
    timeout 300 python3 benchmarks/bench_throughput.py --method mag --samples 2 --warmup 1 --out "$OUT/throughput_mag_defaults.json" 2>&1 | tail -16
    ;;
  final)
    # The VAE variants, then the shipped defaults end to end (fused groups, channels-last VAE
    # with fused norms).
    timeout 300 python3 benchmarks/bench_vae.py ${VAE_ARGS:-} --out "$OUT/vae_fused_norms.json" 2>&1 | grep -v "float32\|Warn" | tail -6
    timeout 200 python3 benchmarks/bench_wan.py --policies mag,self-forcing --histories 66 --warmup 2 --blocks 4 \
      --out "$OUT/wan_defaults_e2e_fused_norms.json" 2>&1 | tail -4 | head -3
    ;;
  kernels)
    timeout 150 python3 benchmarks/bench_bestmatch.py --device cuda --frames 64 --height 480 --width 832 --repeats 5 --naive-pairs 512 --out "$OUT/bestmatch.json" 2>&1 | tail -12
    timeout 260 python3 benchmarks/bench_wan.py --out "$OUT/wan_eager.json" 2>&1 | tail -14
    timeout 150 python3 benchmarks/bench_wan.py --policies mag,self-forcing --histories 21 --overlap-decode --out "$OUT/wan_overlap.json" 2>&1 | tail -6
    ;;
  e2e)
    timeout 200 python3 benchmarks/bench_wan.py --policies mag,self-forcing --histories 21 --compile --no-vae --out "$OUT/wan_compile.json" 2>&1 | tail -6
    timeout 240 python3 benchmarks/bench_throughput.py --method mag --samples 2 --warmup 1 --out "$OUT/throughput_mag.json" 2>&1 | tail -14
    ;&
  cli)
    # Run the CLI away from the checkout: its magbench/ folder would shadow the installed package.
    cd /tmp
    # One GPU through the CLI, plain, through the torchrun launcher, and with CUDA graphs: the
    # same records, timings aside. METHOD=mag|self-forcing|full-history (default self-forcing).
    export MAGBENCH_CACHE=/tmp/mbcache
    M=${METHOD:-self-forcing}
    time timeout 150 python3 -m magbench run --method $M --opt random_weights=true --limit 2 --metrics psnr,ssim --out /tmp/r1 -q 2>&1 | tail -8
    timeout 150 python3 -m magbench run --method $M --opt random_weights=true --limit 2 --metrics psnr,ssim --out /tmp/r2 -q --gpus 1 2>&1 | tail -8
    timeout 150 python3 -m magbench run --method $M --opt random_weights=true --opt cuda_graphs=true --limit 2 --metrics psnr,ssim --out /tmp/r3 -q 2>&1 | tail -8
    python3 - <<'PY' 2>&1 | tee "$OUT/one_gpu_runs_${M}.txt"
from magbench.store import RunDir
drop = ("timing", "memory", "finished_at", "method_config", "config")
def recs(d):
    return {r["sample_id"]: {k: v for k, v in r.items() if k not in drop} for r in RunDir(d).records()}
a, b, c = recs("/tmp/r1"), recs("/tmp/r2"), recs("/tmp/r3")
print("plain vs torchrun --gpus 1, records equal (timings aside):", bool(a) and a == b, "| samples", len(a), len(b))
print("plain vs cuda_graphs=true, records equal (timings aside):", bool(a) and a == c, "| samples", len(c))
for d in ("/tmp/r1", "/tmp/r3"):
    for r in RunDir(d).records():
        t, m = r.get("timing", {}), r.get("memory", {})
        print(d, r["sample_id"], r["status"], r.get("error"), "fps", t.get("fps"), "first_block_s", t.get("first_block_s"), "peak_vram", m.get("peak_device_bytes"), "kv_end", m.get("kv_bytes_end"))
PY
    ;;
  issue22)
    # Issue 22, in order of importance (about 5, 3 and 3 minutes): the paper's table's cost (4 Wan
    # methods x 2 memory sources on a 15 s 480x832 clip, one load per method, the stage profile of
    # one sample, the estimate on 1/2/4/8 GPUs); the pipelined harness against the serial one (mag,
    # one load, three 15 s clips); magbench run's start-up, cold then warm compilation cache.
    timeout 540 python3 benchmarks/bench_table_cost.py --budget-s 420 --out "$OUT/table_cost.json" 2>&1 | grep -v Warn | tail -40
    timeout 330 python3 benchmarks/bench_throughput.py --method mag --pipeline-ab --samples 3 --warmup 0 --seconds 15 \
      --size 480x832 --out "$OUT/throughput_ab.json" 2>&1 | grep -v Warn | tail -20
    timeout 400 python3 benchmarks/bench_startup.py --method mag --repeats 2 --out "$OUT/startup.json" 2>&1 | grep -v Warn | tail -14
    ;;
  gpus2)
    # Issue 14's scaling check (needs a 2-GPU machine): the same N samples (default 24 synthetic
    # leave-and-return videos at 480x832, SECS=15 s each) through one GPU and through torchrun on
    # two, each timed from the command's start (process start-up, model load and warm-up
    # included), then samples/hour and whether the records agree within GPU_RTOL
    # (magbench/determinism.py). DET=1 adds both again with Inductor's deterministic mode.
    cd /tmp
    export MAGBENCH_CACHE=/tmp/mbcache
    M=${METHOD:-mag}
    python3 -m magbench data synth --out /tmp/synth_gpus2 --n ${N:-24} --size 480x832 --seconds ${SECS:-15} | tail -1
    A="--method $M --opt random_weights=true --dataset synthetic:/tmp/synth_gpus2 --metrics psnr,ssim -q"
    V="g1 g2"; [ "${DET:-0}" = 1 ] && V="g1 g2 g1d g2d"
    for v in $V; do
      G=""; case $v in g2*) G="--gpus 2";; esac
      D=0; case $v in *d) D=1;; esac
      t0=$(date +%s.%N)
      TORCHINDUCTOR_CACHE_DIR=/tmp/ind_$v TORCHINDUCTOR_DETERMINISTIC=$D timeout ${RUN_TIMEOUT:-1500} python3 -m magbench run $A --out /tmp/$v $G 2>&1 | tail -2
      python3 -c "import sys; print(sys.argv[1], 'wall_s', round(float(sys.argv[3]) - float(sys.argv[2]), 1))" $v $t0 $(date +%s.%N) | tee -a "$OUT/two_gpus_wall.txt"
    done
    python3 - <<'PY' 2>&1 | tee "$OUT/two_gpus_${M}.txt"
import os
from pathlib import Path
from magbench.determinism import GPU_RTOL, record_differences
from magbench.store import RunDir
wall = dict(line.split(" wall_s ") for line in (Path(os.environ["OUT"]) / "two_gpus_wall.txt").read_text().splitlines() if line)
def recs(d):
    return {r["sample_id"]: r for r in RunDir(d).records()} if Path(d).is_dir() else {}
for v, w in wall.items():
    ok = sum(r["status"] == "ok" for r in recs(f"/tmp/{v}").values())
    print(f"{v}: {ok} samples ok in {float(w):.1f} s = {ok / max(float(w), 1e-9) * 3600:.0f} samples/hour (start-up included)")
if "g1" in wall and "g2" in wall:
    print(f"two GPUs / one GPU: {float(wall['g1']) / float(wall['g2']):.2f}x")
def rel(a, b):
    keys = [k for k in a.get("metrics", {}) if isinstance(a["metrics"][k], float)]
    return max([abs(a["metrics"][k] - b["metrics"][k]) / max(abs(a["metrics"][k]), 1e-12) for k in keys] or [0.0])
for one, two in (("/tmp/g1", "/tmp/g2"), ("/tmp/g1d", "/tmp/g2d"), ("/tmp/g1", "/tmp/g1d")):
    a, b = recs(one), recs(two)
    if not a or not b:
        continue
    print(f"{one} vs {two}: samples {len(a)} / {len(b)}")
    for sid in sorted(a):
        if sid in b:
            d = record_differences(a[sid], b[sid], rtol=0.0, atol=0.0)
            print(f"  {sid}: equal={not d} max_rel_metric_diff={rel(a[sid], b[sid]):.2e} "
                  f"within_GPU_RTOL={not record_differences(a[sid], b[sid], rtol=GPU_RTOL)}")
PY
    ;;
esac
