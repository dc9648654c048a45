#!/usr/bin/env bash
# Compile-check the CUDA sources of weightcast._C on a machine without a GPU
# or a CUDA build of torch:
#   1. every csrc/cuda/*.cu with plain nvcc -c (they include no torch header),
#      for each architecture in WEIGHTCAST_CHECK_ARCHS (default "80 90");
#   2. csrc/cuda/*.cpp (the torch glue) with g++ -fsyntax-only against torch's
#      headers, the CUDA headers, and a stub of the one header the CPU torch
#      wheel lacks (c10/cuda/impl/cuda_cmake_macros.h).
# Exit 0 when all pass, 1 on a compile error, 77 when nvcc or torch is missing
# (the pytest wrapper turns 77 into a skip).
set -euo pipefail
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."

NVCC=${NVCC:-$(command -v nvcc || true)}
if [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [ -z "$NVCC" ]; then echo "check_cuda: nvcc not found (set NVCC=...)"; exit 77; fi
TORCH_DIR=$("$PYTHON" -c "import os, torch; print(os.path.dirname(torch.__file__))" 2>/dev/null) || {
  echo "check_cuda: torch is not importable"; exit 77; }
CUDA_INC=$(dirname "$(dirname "$(readlink -f "$NVCC")")")/include
[ -f "$CUDA_INC/cuda_runtime_api.h" ] || CUDA_INC=/usr/local/cuda/include
PY_INC=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['include'])")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/stub/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$work/stub/c10/cuda/impl/cuda_cmake_macros.h"

archs=${WEIGHTCAST_CHECK_ARCHS:-"80 90"}
gencode=()
for a in $archs; do gencode+=(-gencode "arch=compute_${a},code=sm_${a}"); done

status=0
for cu in csrc/cuda/*.cu; do
  [ -e "$cu" ] || continue
  if "$NVCC" -c -std=c++17 -O3 -lineinfo "${gencode[@]}" -Xcompiler -Wall,-Werror -Werror all-warnings \
      "$cu" -o "$work/$(basename "$cu").o"; then
    echo "ok   nvcc (sm ${archs}) $cu"
  else
    echo "FAIL nvcc (sm ${archs}) $cu"; status=1
  fi
done
for cpp in csrc/cuda/*.cpp; do
  [ -e "$cpp" ] || continue
  if "${CXX:-g++}" -std=c++20 -fsyntax-only -Wall -Werror -Wno-unknown-pragmas -DWEIGHTCAST_WITH_CUDA \
      -I"$work/stub" -I"$TORCH_DIR/include" -I"$TORCH_DIR/include/torch/csrc/api/include" \
      -I"$CUDA_INC" -I"$PY_INC" "$cpp"; then
    echo "ok   g++ -fsyntax-only $cpp"
  else
    echo "FAIL g++ -fsyntax-only $cpp"; status=1
  fi
done
exit $status
