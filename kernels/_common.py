"""Input checks and launch helpers shared by the kernel modules (no kernels here)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def check_device(op: str, kernel, *tensors: torch.Tensor) -> None:
    """Raise a clear error unless all ``tensors`` share one device that ``kernel`` (a triton.jit function) runs on."""
    device = tensors[0].device
    for t in tensors[1:]:
        if t.device != device:
            raise ValueError(f"{op}: all tensors must be on one device, got {device} and {t.device}")
    if device.type == "cuda":
        return
    if device.type == "cpu":
        from triton.runtime.interpreter import InterpretedFunction

        if not isinstance(kernel, InterpretedFunction):
            raise RuntimeError(
                f"{op}: Triton runs CPU tensors only in its interpreter; set TRITON_INTERPRET=1 in the environment "
                "before triton and weightcast.kernels are imported, or use a CUDA tensor "
                "(or another weightcast backend: WEIGHTCAST_BACKEND=reference|cpp)")
        return
    raise ValueError(f"{op}: Triton kernels run on cuda tensors (or cpu under TRITON_INTERPRET=1), got {device.type}")


def dot_block(n: int) -> int:
    """Block size of a ``tl.dot`` dimension of extent ``n``: a power of two, at least 16 (tl.dot's minimum)."""
    return max(16, triton.next_power_of_2(n))


@triton.jit
def linear_rows(hidden_ptr, weight_ptr, bias_ptr, rows, row_ok, cols, hs, T, H, HAS_BIAS: tl.constexpr):
    """(BLOCK_K, BLOCK_T) float32 ``hidden[rows] @ weight.T + bias`` for a (K, H) ``hidden`` and a (T, H)
    ``weight`` (read as its (H, T) transpose), ``tl.dot`` in IEEE float32; rows past K and columns past T are 0."""
    g = tl.load(hidden_ptr + rows[:, None] * H + hs[None, :], mask=row_ok[:, None] & (hs[None, :] < H), other=0.0)
    w = tl.load(weight_ptr + cols[None, :] * H + hs[:, None], mask=(hs[:, None] < H) & (cols[None, :] < T),
                other=0.0)
    y = tl.dot(g, w, input_precision="ieee")
    if HAS_BIAS:
        y += tl.load(bias_ptr + cols, mask=cols < T, other=0.0)[None, :]
    return y


@triton.jit
def token_slots(spans_ptr, rows, cols, row_ok):
    """(BLOCK_K, BLOCK_T) int64 flat offsets of slots ``cols`` of tokens ``rows``, -1 for padding: the token layout
    of :mod:`weightcast.wsl.tokenizer` (span = start, count, bias; slot j < count -> start + j, slot count ->
    bias when >= 0)."""
    start = tl.load(spans_ptr + rows * 3, mask=row_ok, other=0)
    count = tl.load(spans_ptr + rows * 3 + 1, mask=row_ok, other=0)
    bias = tl.load(spans_ptr + rows * 3 + 2, mask=row_ok, other=-1)
    j = cols.to(tl.int64)[None, :]
    idx = tl.where(j < count[:, None], start[:, None] + j, -1)
    return tl.where(j == count[:, None], bias[:, None], idx)


def check_flat(op: str, name: str, t: torch.Tensor, ndim: int = 1) -> None:
    """Raise unless ``t`` is a contiguous floating tensor of ``ndim`` dimensions with a supported dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{op}: {name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float32, float16 or bfloat16, got {t.dtype}")
    if not t.is_contiguous():
        raise ValueError(f"{op}: {name} must be contiguous (call .contiguous() first), got strides {t.stride()}")


def config(*dtypes: torch.dtype) -> tuple[int, int]:
    """Fixed launch configuration (BLOCK elements per program, num_warps) for streaming kernels.

    Each thread handles BLOCK / (32 * num_warps) elements: 16 for fp32 (four 128-bit accesses), 32 for 16-bit
    buffers (four 128-bit accesses) -- enough bytes in flight per SM to approach HBM bandwidth without autotuning.
    """
    if all(d != torch.float32 for d in dtypes):
        return 8192, 8
    return 4096, 8
