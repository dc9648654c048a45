#!/usr/bin/env bash
# The checks of weightcast._C that need a GPU, in one command for a lent GPU machine (device tool `run`):
#
#   bash tools/gpu_check.sh            # writes logs and benchmark JSON under ${OUT:-/tmp/gpu_check}
#
# 1. build _C with its CUDA kernels against the machine's CUDA torch (WEIGHTCAST_FORCE_CUDA=1; the arch list
#    defaults to the visible GPU's), editable, no dependencies fetched (the machine has no registry)
# 2. tests/test_native.py, test_ops_public.py, test_latent_ops.py, test_wnn.py, test_triton_kernels.py,
#    test_nowcast_ops.py and test_prune_obs_kernel.py on cpu and cuda
# 3. compute-sanitizer memcheck and racecheck over tools/sanitize_native.py (odd sizes, misaligned views,
#    every dtype pair), when compute-sanitizer is installed
# 4. benchmarks/bench_native_ops.py (bandwidth against copy_) and, if present, bench_triton_ops.py
# 5. benchmarks/bench_latent_jump.py --device cuda: every forecaster's jump against a ResNet-18 training step
#    (the latent jump's <= 5% target), written to benchmarks/results/latent/jump_cuda.{csv,md}
# 6. benchmarks/bench_nowcast_jump.py --device cuda: the nowcast jump against the study models' training steps
#    (the per-jump <= 5% target of the issue "forecast jumps that pay"), -> benchmarks/results/nowcast_jump_<gpu>.*
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
status=0
step() { echo; echo "=== $*"; }

step "build (CUDA)"
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
if ! WEIGHTCAST_FORCE_CUDA=1 MAX_JOBS=${MAX_JOBS:-16} "$PYTHON" -m pip install --no-build-isolation --no-deps \
      --no-index -e . >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"; echo "FAIL build"; exit 1
fi
"$PYTHON" -c "import weightcast as wc; print(wc.build_info())"

step "tests"
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_native.py tests/test_ops_public.py tests/test_latent_ops.py \
  tests/test_wnn.py tests/test_triton_kernels.py tests/test_nowcast_ops.py tests/test_prune_obs_kernel.py \
  "tests/test_integration.py::test_on_cuda_the_fused_grad_scaler_path_matches_the_plain_optimizer_and_reads_only_at_records" \
  2>&1 | tee "$OUT/tests.log" \
  | tail -15
[ "${PIPESTATUS[0]}" = 0 ] || status=1

SAN=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [ -n "$SAN" ]; then
  for tool in memcheck racecheck; do
    step "compute-sanitizer --tool $tool"
    "$SAN" --tool "$tool" --error-exitcode 3 "$PYTHON" tools/sanitize_native.py >"$OUT/sanitize_$tool.log" 2>&1
    rc=$?
    tail -5 "$OUT/sanitize_$tool.log"
    [ $rc = 0 ] || { echo "FAIL $tool (rc $rc)"; status=1; }
  done
else
  echo "compute-sanitizer not found; skipped"
fi

step "bandwidth"
(cd benchmarks && "$PYTHON" bench_native_ops.py --device cuda) 2>&1 | tee "$OUT/bench_native_ops.log"
cp benchmarks/results/bench_native_ops_*.json "$OUT"/ 2>/dev/null || true
if [ -f benchmarks/bench_triton_ops.py ]; then
  (cd benchmarks && "$PYTHON" bench_triton_ops.py) 2>&1 | tee "$OUT/bench_triton_ops.log" | tail -20
  cp benchmarks/results/bench_triton_ops_*.json "$OUT"/ 2>/dev/null || true
fi
step "jump cost"
"$PYTHON" benchmarks/bench_latent_jump.py --device cuda 2>&1 | tee "$OUT/bench_latent_jump.log" | tail -20
[ "${PIPESTATUS[0]}" = 0 ] || status=1
cp benchmarks/results/latent/jump_cuda.* "$OUT"/ 2>/dev/null || true
step "nowcast jump cost"
"$PYTHON" benchmarks/bench_nowcast_jump.py --device cuda 2>&1 | tee "$OUT/bench_nowcast_jump.log" | tail -30
[ "${PIPESTATUS[0]}" = 0 ] || status=1
cp benchmarks/results/nowcast_jump_*.csv benchmarks/results/nowcast_jump_*.md "$OUT"/ 2>/dev/null || true
echo; [ $status = 0 ] && echo "gpu_check: all passed" || echo "gpu_check: FAILED"
exit $status
