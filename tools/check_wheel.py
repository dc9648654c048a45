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
    abi3 wheel, that it does not link libpython or libtorch_python (which would tie it to one CPython).
Prints one line per check and exits 1 if any fails.
"""
from __future__ import annotations

import argparse
import email.parser
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


def check(path: str, expect_native: bool, expect_cuda: bool) -> int:
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
                r.check(not odd, f"{name} links only torch, the C/C++ runtime, OpenMP and CUDA",
                        f"unexpected {odd}")
                py = [lib for lib in needed if lib.startswith(("libpython", "libtorch_python"))]
                r.check(not py, f"{name} does not link libpython or libtorch_python (abi3)", f"links {py}")
                cudart = any(lib.startswith("libcudart") for lib in needed)
                if "cuda" not in backends:
                    r.check(not cudart, f"{name}: a CPU build does not link the CUDA runtime")
        else:
            r.check(tags == ["py3-none-any"], "a pure-Python wheel is tagged py3-none-any", f"tags {tags}")
    print(f"{os.path.basename(path)}: {'all checks passed' if not r.failed else f'{r.failed} check(s) failed'}")
    return 1 if r.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("wheels", nargs="+")
    parser.add_argument("--expect-native", action="store_true", help="fail unless the wheel holds weightcast/_C")
    parser.add_argument("--expect-cuda", action="store_true", help="fail unless _C holds the CUDA kernels")
    args = parser.parse_args(argv)
    return max(check(w, args.expect_native, args.expect_cuda) for w in args.wheels)


if __name__ == "__main__":
    sys.exit(main())
