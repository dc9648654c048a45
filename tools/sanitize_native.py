"""Exercise every path of the CUDA kernels once, small, for compute-sanitizer (tools/gpu_check.sh): record and
lincomb with each dtype pair, vector and scalar paths (aligned, misaligned, odd lengths), W from 1 to 32, empty
tensors; tokenize_encode and decode_overwrite over token layouts with appended biases, biases of their own and
packed rows, odd token and hidden sizes. Also checks the results against the reference, so a run under the
sanitizer is a correctness run too."""
import sys

import torch

import weightcast  # noqa: F401  (loads weightcast._C)
from weightcast.ops import latent_reference, reference
from weightcast.wsl import Tokenizer

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def check_tables(ops, dev) -> int:
    """record / lincomb_forecast over 40 tensors of odd sizes (more than one launch table of 36), empty ones
    included, against the reference."""
    bad = 0
    sizes = [0, 1, 7, 70_001] + [(37 * k) % 999 + 1 for k in range(36)]
    offsets = [sum(-(-s // 64) * 64 for s in sizes[:i]) for i in range(len(sizes))]
    row = offsets[-1] + -(-sizes[-1] // 64) * 64
    for din in DTYPES:
        for dout in DTYPES:
            params = [torch.randn(n, device=dev).to(din) for n in sizes]
            hist, ref_hist = (torch.zeros(3, row, dtype=dout, device=dev) for _ in range(2))
            absmax = ops.record(params, hist, 1, offsets)
            want = reference.record(params, ref_hist, 1, offsets)
            bad += not (torch.equal(hist, ref_hist) and torch.equal(absmax, want))
            hist = torch.randn(3, row, device=dev).to(dout)
            coeffs = torch.randn(3, device=dev)
            outs = [torch.empty(n, dtype=din, device=dev) for n in sizes]
            refs = [torch.empty(n, dtype=din, device=dev) for n in sizes]
            ops.lincomb_forecast(outs, hist, offsets, coeffs)
            reference.lincomb_forecast(refs, hist, offsets, coeffs)
            tol = 1e-5 if din == torch.float32 else 1e-2
            bad += not all(torch.allclose(o.float(), r.float(), rtol=tol, atol=tol * 3) for o, r in zip(outs, refs))
    return bad


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
                    absmax = ops.record([src], dst.view(1, -1), 0, [0])
                    ref = torch.empty_like(dst)
                    want = reference.record([src], ref.view(1, -1), 0, [0])
                    bad += not (torch.equal(dst, ref) and torch.equal(absmax, want))
                    for w in ([1, 5, 32] if n < 5000 else [5]):
                        hist = torch.randn(w, n + offset, device=dev).to(din)[:, offset:].contiguous()
                        coeffs = torch.randn(w, device=dev)
                        out = torch.empty(n + offset, dtype=dout, device=dev)[offset:]
                        ops.lincomb_forecast([out], hist, [0], coeffs)
                        ref = torch.empty_like(out)
                        reference.lincomb(ref, hist, coeffs)
                        tol = 1e-5 if dout == torch.float32 else 1e-2
                        bad += not torch.allclose(out.float(), ref.float(), rtol=tol, atol=tol * w)
    bad += check_tables(ops, dev)
    bad += check_latent_ops(ops, dev)
    torch.cuda.synchronize()
    print(f"sanitize_native: {'all results match the reference' if not bad else f'{bad} mismatches'}")
    return 1 if bad else 0


def check_latent_ops(ops, dev: str) -> int:
    """Mismatches of the latent ops against their reference over a few layouts (odd T and H included)."""
    bad = 0
    layouts = [[(7, 5), (7,), (3, 2, 3, 3), (11,), ()], [(4, 300), (4,), (65,)], [(3, 20), (3,), (6, 16), (6,)]]
    for layout in layouts:
        for T, H in [(5, 7), (16, 24), (64, 128)]:
            tok = Tokenizer(layout, T, dev)
            K = tok.num_tokens
            flat = torch.randn(tok.numel + 3, device=dev)
            scale = torch.rand(K, device=dev) + 0.5
            weight, bias = torch.randn(H, T, device=dev), torch.randn(K, H, device=dev)
            got = ops.tokenize_encode(flat, tok.spans, scale, weight, bias)
            want = latent_reference.tokenize_encode(flat, tok.spans, scale, weight, bias)
            bad += not torch.allclose(got, want, rtol=1e-4, atol=1e-3)
            hidden, dec_w = torch.randn(K, H, device=dev), torch.randn(T, H, device=dev)
            dec_b = torch.randn(T, device=dev)
            for accumulate, b in [(True, None), (False, dec_b)]:
                got, want = flat.clone(), flat.clone()
                ops.decode_overwrite(got, hidden, dec_w, b, tok.spans, scale, accumulate)
                latent_reference.decode_overwrite(want, hidden, dec_w, b, tok.spans, scale, accumulate)
                bad += not torch.allclose(got, want, rtol=1e-4, atol=1e-3)
    return bad


if __name__ == "__main__":
    sys.exit(main())
