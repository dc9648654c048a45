// Torch-free launcher of the CUDA wnn kernel (wnn.cu); the registration is in
// wnn_ops_cuda.cpp. Numerics: weightcast/ops/wnn_forecast.py and cpu/wnn.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels.cuh"

namespace weightcast_c {
namespace cuda {

// For i < n, with v_k = float32(history[order[k] * n + i]) and s the segment
// of i (offsets[s] <= i < offsets[s + 1], s < segments), stats[4 s ..] =
// (a, c, e, g): x = [v_k a + c (k < w), (v_k - v_{k-1}) e (1 <= k < w)],
// z1 = relu(W1 x + B1[kinds[s]]), z2 = relu(W2 z1 + b2),
// out[i] = convert(v_{w-1} + g (w3 . z2 + b3)), float32 (fused multiply-add).
// All pointers are device memory; mlp packs W1 (hidden, 2w-1), B1 (3, hidden),
// W2 (hidden, hidden), b2, w3 (hidden), b3 (1). 2 <= w <= 16,
// 1 <= hidden <= 32. out must not overlap history.
cudaError_t launch_wnn(void* out, DType out_type, const void* history, DType history_type, int64_t n, int64_t w,
                       const int64_t* order, const int64_t* offsets, int64_t segments, const float* stats,
                       const int32_t* kinds, const float* mlp, int64_t hidden, cudaStream_t stream);

}  // namespace cuda
}  // namespace weightcast_c
