// Declarations of the latent forecaster's native ops (weightcast_C::tokenize_encode and
// weightcast_C::decode_overwrite; schemas in ops.cpp, numerics in weightcast/ops/latent_reference.py):
//
//   spans (K, 3) int64 = (start, count, bias) per token: slot j < count holds flat[start + j], slot count holds
//   flat[bias] when bias >= 0, the other slots of the T are padding (token_slot in token_slot.h).
//   tokenize_encode(flat, spans, scale, weight (H, T), bias (K, H)) -> out (K, H) float32
//       out[k, h] = bias[k, h] + sum_j weight[h, j] * x[k, j],  x[k, j] = flat[slot(k, j)] * scale[k]
//       (padding skipped), float32, j in order.
//   decode_overwrite(out, hidden, weight (T, H), bias?, spans, scale, accumulate) -> ()
//       y[k, j] = scale[k] * (sum_h weight[j, h] * hidden[k, h] + bias[j]);
//       out[slot(k, j)] = (accumulate ? out[slot(k, j)] : 0) + y[k, j] for every non-padding slot.
//
// Kernels take float32 parameter buffers; the caller (the tokeniser) guarantees that the slots are distinct
// offsets below N with count + (bias >= 0) <= T (the tokens partition the parameters), which makes the scatter
// race-free.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "token_slot.h"

namespace weightcast_c {

// flat (N,) contiguous float32; spans (K, 3) contiguous int64; scale (K,), weight (H, T), bias (K, H)
// contiguous float32; one device.
void check_tokenize_encode(const at::Tensor& flat, const at::Tensor& spans, const at::Tensor& scale,
                           const at::Tensor& weight, const at::Tensor& bias);

// out (N,) contiguous float32; hidden (K, H), weight (T, H), bias (T,) (optional), scale (K,) contiguous
// float32; spans (K, 3) contiguous int64; one device.
void check_decode_overwrite(const at::Tensor& out, const at::Tensor& hidden, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& spans, const at::Tensor& scale);

}  // namespace weightcast_c
