// weightcast_C::wnn_forecast — the per-element WNN nowcaster evaluated for every element
// (numerics in weightcast/ops/wnn_forecast.py and the comment in cpu/wnn.cpp).
// The argument check is shared by the Meta, CPU and CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

#include "limits.h"

namespace weightcast_c {

// Length of the packed MLP: W1 (H, 2W-1), B1 (3, H), W2 (H, H), b2 (H), w3 (H), b3 (1).
inline int64_t wnn_mlp_numel(int64_t window, int64_t hidden) {
  return hidden * (2 * window - 1) + kWnnKinds * hidden + hidden * hidden + 2 * hidden + 1;
}

// out (N,) and history (W, N) contiguous float32/float16/bfloat16, 2 <= W <= 16;
// order (W,) int64; offsets (S+1,) int64; stats (S, 4) float32; kinds (S,) int32;
// mlp float32 of wnn_mlp_numel(W, hidden) values; 1 <= hidden <= 32; one device;
// out does not overlap history. The values of order/offsets/kinds are checked
// by the public op (weightcast::wnn_forecast), not here.
void check_wnn(const at::Tensor& out, const at::Tensor& history, const at::Tensor& order,
               const at::Tensor& offsets, const at::Tensor& stats, const at::Tensor& kinds,
               const at::Tensor& mlp, int64_t hidden);

}  // namespace weightcast_c
