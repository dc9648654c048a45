"""Exercise every path of the CUDA kernels once, small, for compute-sanitizer (tools/gpu_check.sh): each dtype
pair, vector and scalar paths (aligned, misaligned, odd lengths), W from 1 to 32, empty tensors. Also checks the
results against the reference, so a run under the sanitizer is a correctness run too."""
import sys

import torch

import weightcast  # noqa: F401  (loads weightcast._C)
from weightcast.ops import reference

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def main() -> int:
    ops = torch.ops.weightcast_C
    dev = "cuda"
    bad = 0
    for n in [0, 1, 7, 8, 9, 1000, 4099, 70_001]:
        for offset in [0, 1]:
            for din in DTYPES:
                for dout in DTYPES:
                    src = torch.randn(n + offset, device=dev).to(din)[offset:]
                    dst = torch.empty(n + offset, dtype=dout, device=dev)[offset:]
                    absmax = ops.record(src, dst)
                    ref = torch.empty_like(dst)
                    want = reference.record(src, ref)
                    bad += not (torch.equal(dst, ref) and torch.equal(absmax, want))
                    for w in ([1, 5, 32] if n < 5000 else [5]):
                        hist = torch.randn(w, n + offset, device=dev).to(din)[:, offset:].contiguous()
                        coeffs = torch.randn(w, device=dev)
                        out = torch.empty(n + offset, dtype=dout, device=dev)[offset:]
                        ops.lincomb(out, hist, coeffs)
                        ref = torch.empty_like(out)
                        reference.lincomb(ref, hist, coeffs)
                        tol = 1e-5 if dout == torch.float32 else 1e-2
                        bad += not torch.allclose(out.float(), ref.float(), rtol=tol, atol=tol * w)
    torch.cuda.synchronize()
    print(f"sanitize_native: {'all results match the reference' if not bad else f'{bad} mismatches'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
