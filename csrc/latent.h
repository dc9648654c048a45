// Declarations of the latent forecaster's native ops (weightcast_C::tokenize_encode and
// weightcast_C::decode_overwrite; schemas in ops.cpp, numerics in weightcast/ops/latent_reference.py):
//
//   tokenize_encode(flat, index, scale, weight, bias) -> out (K, H) float32
//       out[k, h] = bias[k, h] + sum_j weight[h, j] * x[k, j],  x[k, j] = flat[index[k, j]] * scale[k]
//       (0 where index[k, j] < 0), float32, j in order.
//   decode_overwrite(out, hidden, weight, bias?, index, scale, accumulate) -> ()
//       y[k, j] = scale[k] * (sum_h weight[j, h] * hidden[k, h] + bias[j]);
//       out[index[k, j]] = (accumulate ? out[index[k, j]] : 0) + y[k, j] where index[k, j] >= 0.
//
// Kernels take float32 parameter buffers; the caller guarantees that the non-negative entries of index are
// distinct (the tokeniser's maps are a partition of the parameters), which makes the scatter race-free.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace weightcast_c {

// flat (N,) contiguous float32; index (K, T) contiguous int64; scale (K,), weight (H, T), bias (K, H)
// contiguous float32; one device.
void check_tokenize_encode(const at::Tensor& flat, const at::Tensor& index, const at::Tensor& scale,
                           const at::Tensor& weight, const at::Tensor& bias);

// out (N,) contiguous float32; hidden (K, H), weight (T, H), bias (T,) (optional), scale (K,) contiguous
// float32; index (K, T) contiguous int64; one device.
void check_decode_overwrite(const at::Tensor& out, const at::Tensor& hidden, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& index, const at::Tensor& scale);

}  // namespace weightcast_c
