#!/usr/bin/env bash
# Build the +cuXYZ weightcast wheel on a machine with nvcc (no GPU needed), check it, and smoke-test it installed.
#
#   tools/build_cuda_wheel.sh [OUTDIR]        (default: dist/; a cp310-abi3 wheel, version 0.1.0+cu130)
#
# 1. Downloads a CUDA build of torch and the build tools into a wheelhouse in a cache folder outside the clone
#    (several GB, once; later runs find every file there and download nothing).
# 2. Makes the build environment there from the wheelhouse alone (pip --no-index), once.
# 3. Refuses a torch whose CUDA major differs from nvcc's (torch.utils.cpp_extension would refuse it too; a minor
#    difference only warns).
# 4. Copies the source tree (the files git knows, committed or not) to a temporary folder, so that the clone's own
#    build (weightcast/_build_info.json, build/) is left as it was, and runs that copy's tools/build_wheel.sh with
#    WEIGHTCAST_FORCE_CUDA=1: pip wheel, tools/check_wheel.py (tags, version, linked libraries, a cubin for every
#    architecture and PTX for each +PTX one, the shipped weights and Triton kernels), and tools/smoke_installed.py
#    in a fresh virtual environment that gets the same CUDA torch from the wheelhouse (with no GPU visible it checks
#    that every op runs on the C++ kernels and that import says so in one warning).
# Prints the time of each step at the end.
#
# Environment:
#   WEIGHTCAST_CUDA_CACHE  the cache folder (default: ~/.cache/weightcast-cuda): wheelhouse/ and build-venv/
#   TORCH_SPEC             the CUDA torch (default "torch===2.13.0": the registry's torch 2.13.0, which is the
#                          CUDA 13.0 build; "===" matches the version string exactly, so a "2.13.0+cpu" wheel that
#                          pip finds elsewhere is never taken). Another CUDA: e.g. PIP_INDEX_URL set to PyTorch's
#                          own cu1XY index with TORCH_SPEC="torch==2.13.0+cu1XY".
#   CUDA_HOME              the toolkit whose nvcc compiles (default: the one of nvcc on the PATH, or /usr/local/cuda)
#   TORCH_CUDA_ARCH_LIST   GPU architectures (default "8.0;9.0+PTX": A100, H100/H200, PTX for newer GPUs)
#   MAX_JOBS               parallel compile jobs (default 2)
#   PYTHON                 the Python that makes the build environment (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT=${1:-dist}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CACHE=${WEIGHTCAST_CUDA_CACHE:-$HOME/.cache/weightcast-cuda}
TORCH_SPEC=${TORCH_SPEC:-torch===2.13.0}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0+PTX}
export MAX_JOBS=${MAX_JOBS:-2}
export PIP_DISABLE_PIP_VERSION_CHECK=1
case "$CACHE/" in "$ROOT"/*) echo "WEIGHTCAST_CUDA_CACHE=$CACHE is inside the clone; put it outside"; exit 1;; esac

if [ -z "${CUDA_HOME:-}" ]; then
  # nvcc's own toolkit root (its TOP), right even where the nvcc on the PATH is a wrapper script outside the toolkit
  # (torch would then take the wrapper's grandparent folder, e.g. /usr/local, and find no cuda_runtime.h)
  top=$( (nvcc -dryrun -c -x cu /dev/null -o /dev/null 2>&1 || true) | sed -n 's/^#\$ TOP=//p' | head -n 1)
  if [ -n "$top" ]; then CUDA_HOME=$(readlink -f "$top"); else CUDA_HOME=/usr/local/cuda; fi
fi
[ -x "$CUDA_HOME/bin/nvcc" ] && [ -f "$CUDA_HOME/include/cuda_runtime.h" ] || {
  echo "CUDA_HOME=$CUDA_HOME has no bin/nvcc or include/cuda_runtime.h: install the CUDA toolkit or set CUDA_HOME"; exit 1; }
export CUDA_HOME

timings=()
timed() {  # timed NAME COMMAND...: run it and remember how long it took
  local name=$1 start=$SECONDS
  shift
  "$@"
  timings+=("$name $((SECONDS - start))s")
  echo "time: $name $((SECONDS - start))s"
}

mkdir -p "$CACHE/wheelhouse"
# numpy, safetensors, tqdm, scikit-learn: weightcast's dependencies, so that the smoke test installs offline too
requirements=("$TORCH_SPEC" setuptools wheel ninja numpy safetensors tqdm scikit-learn)
before=$(du -sm "$CACHE/wheelhouse" | cut -f1)
timed download "${PYTHON:-python3}" -m pip download --quiet -d "$CACHE/wheelhouse" "${requirements[@]}"
echo "wheelhouse: $CACHE/wheelhouse, $(du -sm "$CACHE/wheelhouse" | cut -f1) MB ($(( $(du -sm "$CACHE/wheelhouse" | cut -f1) - before )) MB new)"
export PIP_NO_INDEX=1 PIP_FIND_LINKS="$CACHE/wheelhouse"  # from here on pip installs from the wheelhouse only

venv=$CACHE/build-venv
make_build_venv() {
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "${requirements[@]}"
}
"$venv/bin/python" -c "import torch, setuptools, wheel, ninja" 2>/dev/null || timed build-venv make_build_venv
"$venv/bin/python" -m pip install --quiet "${requirements[@]}"  # a no-op unless TORCH_SPEC changed
torch_cuda=$("$venv/bin/python" -c "import torch; print(torch.version.cuda or '')")
torch_version=$("$venv/bin/python" -c "import torch; print(torch.__version__)")
nvcc_cuda=$("$CUDA_HOME/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\.[0-9]*\).*/\1/p')
echo "torch $torch_version (CUDA ${torch_cuda:-none}); nvcc $CUDA_HOME/bin/nvcc (CUDA $nvcc_cuda)"
[ -n "$torch_cuda" ] || { echo "$TORCH_SPEC is not a CUDA build of torch (torch.version.cuda is None)"; exit 1; }
if [ "${torch_cuda%%.*}" != "${nvcc_cuda%%.*}" ]; then
  echo "torch is built for CUDA $torch_cuda but nvcc is CUDA $nvcc_cuda: the CUDA major must match (torch's"
  echo "cpp_extension refuses another one). Point CUDA_HOME at a CUDA $torch_cuda toolkit (the PyPI wheels"
  echo "nvidia-cuda-nvcc, nvidia-cuda-crt, nvidia-cuda-cccl, nvidia-cuda-runtime and nvidia-nvvm of that version"
  echo "make one), or choose the torch built for CUDA $nvcc_cuda with TORCH_SPEC."
  exit 1
fi

src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git ls-files --cached --others --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$src"
export WEIGHTCAST_FORCE_CUDA=1
# the smoke test's fresh environment gets this torch from the wheelhouse
export WEIGHTCAST_SMOKE_TORCH="$TORCH_SPEC"
timed "build+check+smoke" env PYTHON="$venv/bin/python" PATH="$venv/bin:$PATH" bash "$src/tools/build_wheel.sh" "$OUT"

wheel=$(ls -t "$OUT"/weightcast-*.whl | head -n 1)
echo "wheel: $wheel ($(du -k "$wheel" | cut -f1) KiB)"
echo "timings (load now: $(cut -d' ' -f1-3 /proc/loadavg)): ${timings[*]}"
