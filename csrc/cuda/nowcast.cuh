// Torch-free launcher of the CUDA nowcast kernels (nowcast.cu); the registration is in
// nowcast_ops_cuda.cpp. Numerics: weightcast/ops/nowcast_forecast.py and cpu/nowcast.cpp.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels.cuh"

namespace weightcast_c {
namespace cuda {

// Columns per work item of the CUDA kernels (one block each).
constexpr int64_t kNowcastItemColumns = 4096;

// The forecast of every segment (see cpu/nowcast.cpp): history (w, n) and out (num_rows, n) in
// device memory; order (w) the chronological history rows; items (num_items, 3) = (segment, first
// column, end column) of at most kNowcastItemColumns columns, grouped by segment in increasing
// order, first_item (segments + 1) the first item of each segment; numels (segments) and types
// (segments) per segment; rows (num_rows) the output rows (horizons - 1); mlp the packed
// model (csrc/nowcast.h) for w, hidden, embed, k_max within limits.h. Scratch: partial
// (3 num_items doubles), stats (3 segments floats: mu, sigma, s on return). Four launches: the
// two reductions with their per-segment combination, then the per-element pass. out must not
// overlap history.
cudaError_t launch_nowcast(void* out, DType out_type, const void* history, DType history_type, int64_t n, int64_t w,
                           const int64_t* order, const int64_t* items, int64_t num_items, const int64_t* first_item,
                           const int64_t* numels, const int64_t* types, int64_t segments, const int64_t* rows,
                           int64_t num_rows, const float* mlp, int64_t hidden, int64_t embed, int64_t k_max,
                           double* partial, float* stats, cudaStream_t stream);

}  // namespace cuda
}  // namespace weightcast_c
