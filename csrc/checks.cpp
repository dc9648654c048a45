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

// The parameter list of a multi-tensor op: one offset per tensor; every tensor
// contiguous, of a kernel dtype, on the history's device, its segment inside a
// history row, and not overlapping the history.
void check_segments(const char* op, at::TensorList params, const at::Tensor& history, at::IntArrayRef offsets) {
  TORCH_CHECK(params.size() == offsets.size(), "weightcast_C::", op, ": one offset per parameter, got ",
              params.size(), " parameters and ", offsets.size(), " offsets");
  const int64_t row = history.size(1);
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& p = params[i];
    TORCH_CHECK(is_kernel_dtype(p.scalar_type()), "weightcast_C::", op, ": params[", i,
                "] must be float32, float16 or bfloat16, got ", p.scalar_type(),
                " (other dtypes run on the reference backend)");
    TORCH_CHECK(p.is_contiguous(), "weightcast_C::", op, ": params[", i,
                "] must be contiguous (the public op stages other layouts through a contiguous copy)");
    TORCH_CHECK(p.device() == history.device(), "weightcast_C::", op, ": params[", i, "] is on ", p.device(),
                " but the history on ", history.device(), "; move them to one device");
    TORCH_CHECK(offsets[i] >= 0 && offsets[i] + p.numel() <= row, "weightcast_C::", op, ": the segment [",
                offsets[i], ", ", offsets[i] + p.numel(), ") of params[", i, "] is outside a history row of ", row,
                " elements");
    TORCH_CHECK(!overlap(p, history), "weightcast_C::", op, ": params[", i,
                "] overlaps the history; the history must be a buffer of its own");
  }
}

void check_record(at::TensorList params, const at::Tensor& history, int64_t slot, at::IntArrayRef offsets) {
  check_flat("record", "history", history, 2);
  TORCH_CHECK(slot >= 0 && slot < history.size(0), "weightcast_C::record: slot ", slot,
              " is outside the history window of ", history.size(0));
  check_segments("record", params, history, offsets);
}

void check_lincomb_forecast(at::TensorList params, const at::Tensor& history, at::IntArrayRef offsets,
                            const at::Tensor& coeffs) {
  check_flat("lincomb_forecast", "history", history, 2);
  TORCH_CHECK(coeffs.scalar_type() == at::kFloat && coeffs.dim() == 1 && coeffs.is_contiguous(),
              "weightcast_C::lincomb_forecast: coeffs must be a contiguous 1-D float32 tensor, got ",
              coeffs.scalar_type(), " of shape ", coeffs.sizes());
  const int64_t w = history.size(0);
  TORCH_CHECK(w >= 1 && w <= kMaxWindow, "weightcast_C::lincomb_forecast: the window W = history.shape[0] must be "
              "in [1, ", kMaxWindow, "], got ", w);
  TORCH_CHECK(coeffs.numel() == w, "weightcast_C::lincomb_forecast: coeffs must have W = ", w,
              " elements (one per history row), got ", coeffs.numel());
  TORCH_CHECK(coeffs.device() == history.device(), "weightcast_C::lincomb_forecast: coeffs is on ", coeffs.device(),
              " but the history on ", history.device());
  check_segments("lincomb_forecast", params, history, offsets);
}

}  // namespace weightcast_c
