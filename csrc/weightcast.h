// Shared declarations of weightcast's native ops (namespace weightcast_C).
//
// The schemas and Meta kernels live in ops.cpp, the argument checks in
// checks.cpp (one set of rules for every backend), the CPU kernels in cpu/,
// the CUDA kernels in cuda/ (torch-free .cu files plus ops_cuda.cpp, which
// registers them). weightcast/ops/reference.py is the oracle of both kernels.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "limits.h"

namespace weightcast_c {

// Largest window (history rows) lincomb_forecast combines (limits.h).
constexpr int64_t kMaxWindow = kLincombMaxWindow;

// record(params, history, slot, offsets): history (W, M) contiguous, 0 <= slot
// < W; params[i] contiguous, on history's device, its segment [offsets[i],
// offsets[i] + numel) inside a row and not overlapping the history; all of
// float32/float16/bfloat16 (dtypes may differ).
void check_record(at::TensorList params, const at::Tensor& history, int64_t slot, at::IntArrayRef offsets);

// lincomb_forecast(params, history, offsets, coeffs): as record for params,
// history and offsets, with 1 <= W <= kMaxWindow and coeffs (W,) contiguous
// float32 on history's device.
void check_lincomb_forecast(at::TensorList params, const at::Tensor& history, at::IntArrayRef offsets,
                            const at::Tensor& coeffs);

}  // namespace weightcast_c

// WEIGHTCAST_DISPATCH(dtype, "op", [&] { ... scalar_t ... }): runs the lambda
// with scalar_t = float, c10::Half or c10::BFloat16. Nest two for a pair of
// dtypes, aliasing the outer scalar_t first (using S = scalar_t;).
#define WEIGHTCAST_DISPATCH_CASES(...)          \
  AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)     \
  AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)      \
  AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__)
#define WEIGHTCAST_DISPATCH(TYPE, NAME, ...) \
  AT_DISPATCH_SWITCH(TYPE, NAME, WEIGHTCAST_DISPATCH_CASES(__VA_ARGS__))
