// Argument checks of weightcast_C::record and weightcast_C::lincomb, shared by
// the Meta, CPU and CUDA kernels so every backend rejects the same inputs with
// the same message.
#include <ATen/ATen.h>

#include "weightcast.h"

namespace weightcast_c {
namespace {

bool is_kernel_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

void check_flat(const char* op, const char* name, const at::Tensor& t, int64_t ndim) {
  TORCH_CHECK(is_kernel_dtype(t.scalar_type()), "weightcast_C::", op, ": ", name,
              " must be float32, float16 or bfloat16, got ", t.scalar_type(),
              " (other dtypes run on the reference backend)");
  TORCH_CHECK(t.dim() == ndim, "weightcast_C::", op, ": ", name, " must be ", ndim, "-D, got shape ",
              t.sizes());
  TORCH_CHECK(t.is_contiguous(), "weightcast_C::", op, ": ", name,
              " must be contiguous (call .contiguous() first)");
}

// True when the byte ranges of a and b intersect (both contiguous).
bool overlap(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 || b.numel() == 0 || a.is_meta() || b.is_meta()) return false;
  const auto a0 = reinterpret_cast<uintptr_t>(a.data_ptr());
  const auto b0 = reinterpret_cast<uintptr_t>(b.data_ptr());
  const auto a1 = a0 + static_cast<uintptr_t>(a.nbytes());
  const auto b1 = b0 + static_cast<uintptr_t>(b.nbytes());
  return a0 < b1 && b0 < a1;
}

}  // namespace

void check_record(const at::Tensor& src, const at::Tensor& dst) {
  check_flat("record", "src", src, 1);
  check_flat("record", "dst", dst, 1);
  TORCH_CHECK(src.numel() == dst.numel(), "weightcast_C::record: src and dst must have the same length, got ",
              src.numel(), " and ", dst.numel());
  TORCH_CHECK(src.device() == dst.device(), "weightcast_C::record: src is on ", src.device(), " but dst on ",
              dst.device(), "; move them to one device");
  const bool same = !src.is_meta() && src.data_ptr() == dst.data_ptr() && src.scalar_type() == dst.scalar_type();
  TORCH_CHECK(same || !overlap(src, dst),
              "weightcast_C::record: dst overlaps src; record into a separate buffer");
}

void check_lincomb(const at::Tensor& out, const at::Tensor& history, const at::Tensor& coeffs) {
  check_flat("lincomb", "out", out, 1);
  check_flat("lincomb", "history", history, 2);
  TORCH_CHECK(coeffs.scalar_type() == at::kFloat && coeffs.dim() == 1 && coeffs.is_contiguous(),
              "weightcast_C::lincomb: coeffs must be a contiguous 1-D float32 tensor, got ", coeffs.scalar_type(),
              " of shape ", coeffs.sizes());
  const int64_t w = history.size(0);
  const int64_t n = history.size(1);
  TORCH_CHECK(w >= 1 && w <= kMaxWindow, "weightcast_C::lincomb: the window W = history.shape[0] must be in [1, ",
              kMaxWindow, "], got ", w);
  TORCH_CHECK(coeffs.numel() == w, "weightcast_C::lincomb: coeffs must have W = ", w,
              " elements (one per history row), got ", coeffs.numel());
  TORCH_CHECK(out.numel() == n, "weightcast_C::lincomb: out must have N = ", n, " elements (history is ",
              history.sizes(), "), got ", out.numel());
  TORCH_CHECK(out.device() == history.device() && coeffs.device() == out.device(),
              "weightcast_C::lincomb: out, history and coeffs must be on one device, got ", out.device(), ", ",
              history.device(), " and ", coeffs.device());
  TORCH_CHECK(!overlap(out, history),
              "weightcast_C::lincomb: out overlaps history; write the result to a separate buffer");
}

}  // namespace weightcast_c
