#!/usr/bin/env python
"""Check a built weightcast wheel before it is shipped.

    python tools/check_wheel.py dist/weightcast-*.whl [--expect-native] [--expect-cuda]

Checks, from the archive alone (nothing is installed):
  * the package layout: weightcast/ with weightcast/kernels/ (the Triton folder, never a top-level
    `kernels` package: PyPI has an unrelated one), no tests/, csrc/, benchmarks/ or build debris;
  * the tags: cp310-abi3 when the wheel holds weightcast/_C (stable ABI), py3-none-any when it does not;
  * the version: METADATA's version equals _build_info.json's, and its local label matches the backends
    ("+cpu" for a C++-only build, "+cuXYZ" for a CUDA one, unless WEIGHTCAST_LOCAL_VERSION chose another);
  * the extension's shared-library dependencies (readelf -d): torch's own libraries, the C/C++ runtime,
    OpenMP (resolved to the libgomp that torch ships), and the CUDA runtime for a CUDA build; and, for an
    abi3 wheel, that it does not link libpython or libtorch_python (which would tie it to one CPython);
  * for a CUDA build, the GPU code in the extension (cuobjdump --list-elf / --list-ptx): a cubin (SASS) for every
    architecture of _build_info.json's cuda_arch_list, and PTX for each one marked +PTX. cuobjdump is looked for
    in $CUOBJDUMP, on the PATH, in $CUDA_HOME/bin, and in the copy Triton ships (a CUDA torch brings Triton);
  * the shipped data: every weights file (weightcast/**/*.safetensors, *.json) and Triton kernel (kernels/*.py)
    of the source tree (--source, default: the tree this script is in) is in the wheel.
Prints one line per check and exits 1 if any fails.
"""
from __future__ import annotations

import argparse
import email.parser
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

ALLOWED_NEEDED = re.compile(
    r"^(libc10\.so|libc10_cuda\.so|libtorch\.so|libtorch_cpu\.so|libtorch_cuda\.so|"
    r"libgomp\.so\.1|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libc\.so\.6|libm\.so\.6|"
    r"libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1|"
    r"libcudart\.so\.\d+)$")
FORBIDDEN_TOP = {"tests", "csrc", "benchmarks", "kernels", "tools", "build"}
SOURCE_TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Report:
    def __init__(self) -> None:
        self.failed = 0

    def check(self, ok: bool, what: str, detail: str = "") -> None:
        print(("ok   " if ok else "FAIL ") + what + (f": {detail}" if detail and not ok else ""))
        self.failed += not ok


def wheel_tags(zf: zipfile.ZipFile, dist_info: str) -> list[str]:
    text = zf.read(f"{dist_info}/WHEEL").decode()
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Tag:")]


def needed_libraries(data: bytes) -> list[str] | None:
    if shutil.which("readelf") is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".so") as f:
        f.write(data)
        f.flush()
        proc = subprocess.run(["readelf", "-d", f.name], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    out = proc.stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def find_cuobjdump() -> str | None:
    """cuobjdump from $CUOBJDUMP, the PATH, $CUDA_HOME/bin, or Triton's bundled copy; None when there is none."""
    candidates = [os.environ.get("CUOBJDUMP"), shutil.which("cuobjdump")]
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "cuobjdump"))
    triton = importlib.util.find_spec("triton")
    if triton is not None and triton.submodule_search_locations:
        candidates += [os.path.join(d, "backends", "nvidia", "bin", "cuobjdump")
                       for d in triton.submodule_search_locations]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def gpu_code(data: bytes, cuobjdump: str) -> tuple[set[str], set[str], list[str]]:
    """The SASS architectures (cubins, e.g. {"sm_80"}) and PTX architectures (e.g. {"compute_90"}) in an ELF shared
    library, and cuobjdump's listing ("ELF file 1: kernels.sm_80.cubin", "PTX file 1: kernels.sm_90.ptx")."""
    sass, ptx, listing = set(), set(), []
    with tempfile.NamedTemporaryFile(suffix=".so") as f:
        f.write(data)
        f.flush()
        for flag in ("--list-elf", "--list-ptx"):
            proc = subprocess.run([cuobjdump, flag, f.name], capture_output=True, text=True)
            if proc.returncode != 0 and "does not contain" not in proc.stderr:
                raise RuntimeError(f"{cuobjdump} {flag} failed: {proc.stderr.strip()}")
            listing += [line.strip() for line in proc.stdout.splitlines() if line.strip()]
            for m in re.finditer(r"\.(?:sm|compute)_(\w+)\.(cubin|ptx)\s*$", proc.stdout, re.MULTILINE):
                (sass if m[2] == "cubin" else ptx).add(("sm_" if m[2] == "cubin" else "compute_") + m[1])
    return sass, ptx, listing


def expected_gpu_code(arch_list: str) -> tuple[set[str], set[str]]:
    """TORCH_CUDA_ARCH_LIST ("8.0;9.0+PTX") -> the cubins ({"sm_80", "sm_90"}) and PTX ({"compute_90"}) it asks
    for."""
    sass, ptx = set(), set()
    for arch in re.split(r"[;\s]+", arch_list.strip()):
        if not arch:
            continue
        number = arch.removesuffix("+PTX").replace(".", "")
        sass.add(f"sm_{number}")
        if arch.endswith("+PTX"):
            ptx.add(f"compute_{number}")
    return sass, ptx


def shipped_data(source: str) -> list[str]:
    """Wheel paths of the weights files and Triton kernels that the source tree ``source`` ships."""
    weights = [p for pattern in ("*.safetensors", "*.json")
               for p in glob.glob(os.path.join(source, "weightcast", "**", pattern), recursive=True)
               if os.path.basename(p) != "_build_info.json"]
    kernels = glob.glob(os.path.join(source, "kernels", "**", "*.py"), recursive=True)
    wanted = [os.path.relpath(p, source) for p in weights]
    wanted += ["weightcast/" + os.path.relpath(p, source) for p in kernels]
    return sorted(w.replace(os.sep, "/") for w in wanted if "__pycache__" not in w)


def check(path: str, expect_native: bool, expect_cuda: bool, source: str | None = SOURCE_TREE) -> int:
    r = Report()
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        dist_info = next((n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")), None)
        r.check(dist_info is not None, "has a .dist-info")
        if dist_info is None:
            return 1
        tops = {n.split("/")[0] for n in names} - {dist_info}
        r.check(tops == {"weightcast"}, "only the weightcast package at the top level", f"found {sorted(tops)}")
        r.check(not (tops & FORBIDDEN_TOP), "no tests/, csrc/, benchmarks/ or top-level kernels/",
                f"found {sorted(tops & FORBIDDEN_TOP)}")
        r.check("weightcast/__init__.py" in names, "weightcast/__init__.py")
        r.check("weightcast/kernels/__init__.py" in names, "weightcast/kernels/__init__.py (Triton kernels)")
        debris = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".o", ".egg-info"))]
        r.check(not debris, "no build debris (__pycache__, .pyc, .o)", f"found {debris[:5]}")
        if source is not None:
            wanted = shipped_data(source)
            missing = [w for w in wanted if w not in names]
            r.check(not missing, f"ships the {len(wanted)} weights files and Triton kernels of {source}",
                    f"missing {missing[:5]}")

        ext = [n for n in names if re.fullmatch(r"weightcast/_C\.[^/]*so", n)]
        has_native = bool(ext)
        if expect_native or expect_cuda:
            r.check(has_native, "holds the native extension weightcast/_C")

        info = {}
        if "weightcast/_build_info.json" in names:
            info = json.loads(zf.read("weightcast/_build_info.json"))
        r.check(bool(info), "holds weightcast/_build_info.json")
        meta = email.parser.Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        version = meta["Version"]
        r.check(info.get("version") == version, "METADATA version == _build_info.json version",
                f"{version} vs {info.get('version')}")
        backends = info.get("backends", [])
        r.check(has_native == bool(backends), "_build_info.json backends match the extension's presence",
                f"backends={backends}, extension={'yes' if has_native else 'no'}")
        if expect_cuda:
            r.check("cuda" in backends, "built with the CUDA kernels", f"backends={backends}")
        local = version.split("+", 1)[1] if "+" in version else ""
        if "WEIGHTCAST_LOCAL_VERSION" not in os.environ and has_native:
            cuda = info.get("cuda_version")
            want = ("cu" + "".join(cuda.split(".")[:2])) if cuda else "cpu"
            r.check(local == want, f"local version label '+{want}'", f"got '+{local}'")

        tags = wheel_tags(zf, dist_info)
        if has_native:
            r.check(all(re.fullmatch(r"cp3\d+-abi3-\w+", t) for t in tags) and tags,
                    "tagged cpXY-abi3-<platform> (one wheel per platform for every CPython)", f"tags {tags}")
            r.check(not any(t.endswith("-any") for t in tags), "platform-specific tag", f"tags {tags}")
            for name in ext:
                needed = needed_libraries(zf.read(name))
                if needed is None:
                    print(f"skip {name}: shared-library dependencies not readable (no readelf, or not an ELF file)")
                    continue
                odd = [lib for lib in needed if not ALLOWED_NEEDED.match(lib)]
                print(f"info {name} links {needed}")
                r.check(not odd, f"{name} links only torch, the C/C++ runtime, OpenMP and CUDA",
                        f"unexpected {odd}")
                py = [lib for lib in needed if lib.startswith(("libpython", "libtorch_python"))]
                r.check(not py, f"{name} does not link libpython or libtorch_python (abi3)", f"links {py}")
                cudart = any(lib.startswith("libcudart") for lib in needed)
                if "cuda" not in backends:
                    r.check(not cudart, f"{name}: a CPU build does not link the CUDA runtime")
                else:
                    r.check(cudart, f"{name}: a CUDA build links the CUDA runtime", f"links {needed}")
            if "cuda" in backends:
                for name in ext:
                    check_gpu_code(r, name, zf.read(name), info.get("cuda_arch_list") or "")
        else:
            r.check(tags == ["py3-none-any"], "a pure-Python wheel is tagged py3-none-any", f"tags {tags}")
    print(f"{os.path.basename(path)}: {'all checks passed' if not r.failed else f'{r.failed} check(s) failed'}")
    return 1 if r.failed else 0


def check_gpu_code(r: Report, name: str, data: bytes, arch_list: str) -> None:
    """The cubins and PTX in extension ``name`` against the TORCH_CUDA_ARCH_LIST it was built for."""
    cuobjdump = find_cuobjdump()
    r.check(cuobjdump is not None, "cuobjdump found (to list the GPU code)",
            "set CUOBJDUMP=/path/to/cuobjdump, or pip install nvidia-cuda-cuobjdump")
    r.check(bool(arch_list), "_build_info.json lists the CUDA architectures", "cuda_arch_list is empty")
    if cuobjdump is None or not arch_list:
        return
    sass, ptx, listing = gpu_code(data, cuobjdump)
    want_sass, want_ptx = expected_gpu_code(arch_list)
    print(f"info {name} (cuobjdump --list-elf, --list-ptx): " + "; ".join(listing))
    r.check(want_sass <= sass, f"{name} holds a cubin for each of {sorted(want_sass)} (TORCH_CUDA_ARCH_LIST="
            f"{arch_list})", f"found {sorted(sass)}, missing {sorted(want_sass - sass)}")
    r.check(want_ptx <= ptx, f"{name} holds PTX for each of {sorted(want_ptx) or 'none asked'}",
            f"found {sorted(ptx)}, missing {sorted(want_ptx - ptx)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("wheels", nargs="+")
    parser.add_argument("--expect-native", action="store_true", help="fail unless the wheel holds weightcast/_C")
    parser.add_argument("--expect-cuda", action="store_true", help="fail unless _C holds the CUDA kernels")
    parser.add_argument("--source", default=SOURCE_TREE,
                        help="source tree whose weights and Triton kernels the wheel must ship (default: %(default)s)")
    args = parser.parse_args(argv)
    return max(check(w, args.expect_native, args.expect_cuda, args.source) for w in args.wheels)


if __name__ == "__main__":
    sys.exit(main())
