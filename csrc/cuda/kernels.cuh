// Torch-free launchers of weightcast's CUDA kernels (kernels.cu).
//
// Raw device pointers, sizes and a stream in; a cudaError_t out. No torch
// header is included on either side of this interface, so `nvcc -c
// kernels.cu` compiles on a machine whose torch is a CPU build (see
// csrc/README.md). The tensor checks, the current stream and the op
// registration live in ops_cuda.cpp, which only CUDA builds compile.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace weightcast_c {
namespace cuda {

// The element types the kernels take (float32, float16, bfloat16).
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// dst[i] = convert(src[i]) for i < n (round to nearest even), and
// *absmax = max_i |float32(dst[i])| (NaN if any is NaN; 0 when n == 0).
// absmax: one float in device memory; it is zeroed on `stream` first.
// src and dst must not overlap unless identical (same pointer, same dtype).
cudaError_t launch_record(const void* src, DType src_type, void* dst, DType dst_type, int64_t n, float* absmax,
                          cudaStream_t stream);

// Difference form, with h_k = float32(history[k * row + i]), for i < n <= row:
// out[i] = convert(coeffs[0] * h_0 + sum_{1<=k<w} coeffs[k] * (h_k - h_0)),
// accumulated in float32 in slot order (multiply-add fused).
// coeffs: w floats in device memory, 1 <= w <= kMaxWindow (32).
// out must not overlap history.
cudaError_t launch_lincomb(void* out, DType out_type, const void* history, DType history_type, int64_t row,
                           int64_t n, int64_t w, const float* coeffs, cudaStream_t stream);

// ---- multi-tensor launches (one launch for up to kTableSize tensors) ----
// The tensors' pointers, segment offsets (elements, in a history row) and
// sizes travel by value as a kernel argument (as apex's multi_tensor_apply
// does), so no table is copied to the device. Each block handles up to
// kTableChunk elements of one tensor.
constexpr int kTableSize = 36;
constexpr int64_t kTableChunk = int64_t{1} << 14;

struct TensorTable {
  void* ptr[kTableSize];
  int64_t offset[kTableSize];
  int64_t numel[kTableSize];
  int count;
};

// record over a table: for every tensor t and i < numel[t],
// row[offset[t] + i] = convert(ptr[t][i]); *absmax = max(*absmax, max |float32(stored)|)
// (NaN wins; the caller zeroes *absmax once before the first table).
cudaError_t launch_record_table(const TensorTable& table, DType param_type, void* row, DType history_type,
                                float* absmax, cudaStream_t stream);

// lincomb_forecast over a table: for every tensor t and i < numel[t], with
// h_k = float32(history[k * row + offset[t] + i]):
// ptr[t][i] = convert(coeffs[0] * h_0 + sum_{1<=k<w} coeffs[k] * (h_k - h_0)) (multiply-add fused).
cudaError_t launch_lincomb_table(const TensorTable& table, DType param_type, const void* history,
                                 DType history_type, int64_t row, int64_t w, const float* coeffs,
                                 cudaStream_t stream);

}  // namespace cuda
}  // namespace weightcast_c
