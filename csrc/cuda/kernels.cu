// CUDA kernels of weightcast_C::record and weightcast_C::lincomb_forecast: the
// multi-tensor ones (one launch for a table of up to kTableSize tensors, the
// ops' path) and the single-buffer ones they grew from (launch_record,
// launch_lincomb; kept for one contiguous buffer).
// Torch-free (see kernels.cuh): checked by `nvcc -c` for sm_80 and sm_90
// without a CUDA torch (tools/check_cuda.sh).
//
// Both kernels are bandwidth-bound: a grid-stride loop over vectors of
// 16 bytes of the input (VEC elements per thread), 64-bit indices, a
// scalar tail, and a scalar fallback when a pointer or a row length is not
// aligned to the vector.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>

#include "../limits.h"
#include "dtype_dispatch.cuh"
#include "kernels.cuh"

namespace weightcast_c {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxWindow = kLincombMaxWindow;  // limits.h
constexpr int kBlocksPerSm = 8;  // grid = SMs x this, grid-stride beyond

// ---- element conversions (round to nearest even, like Tensor.copy_) ----
template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// |x| as an ordered int: monotone in the magnitude for finite values and
// +inf, every NaN above +inf, so max over it is a NaN-aware absmax.
__device__ __forceinline__ int abs_bits(float x) { return __float_as_int(x) & 0x7fffffff; }

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

// ---- record ----
template <typename S, typename D, int VEC>
__global__ void __launch_bounds__(kThreads) record_kernel(const S* __restrict__ src, D* __restrict__ dst, int64_t n,
                                                          int* __restrict__ absmax_bits) {
  int m = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nvec = n / VEC;
  for (int64_t v = tid; v < nvec; v += stride) {
    const Vec<S, VEC> in = reinterpret_cast<const Vec<S, VEC>*>(src)[v];
    Vec<D, VEC> out;
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      out.v[j] = from_float<D>(to_float<S>(in.v[j]));
      m = max(m, abs_bits(to_float<D>(out.v[j])));
    }
    reinterpret_cast<Vec<D, VEC>*>(dst)[v] = out;
  }
  for (int64_t i = nvec * VEC + tid; i < n; i += stride) {
    const D y = from_float<D>(to_float<S>(src[i]));
    dst[i] = y;
    m = max(m, abs_bits(to_float<D>(y)));
  }
  // block max, then one atomic per block
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
  __shared__ int warp_max[kThreads / 32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = m;
  __syncthreads();
  if (warp == 0) {
    m = lane < static_cast<int>(blockDim.x / 32) ? warp_max[lane] : 0;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (lane == 0 && m > 0) atomicMax(absmax_bits, m);
  }
}

// ---- lincomb, in difference form ----
// out = c0 * h0 + sum_{k>=1} ck * (hk - h0): with weights that sum to 1,
// c0 == 1 and a trajectory that does not move is forecast to itself exactly.
template <typename H, typename O, int VEC>
__global__ void __launch_bounds__(kThreads) lincomb_kernel(O* __restrict__ out, const H* __restrict__ history, int64_t row,
                                                           int64_t n, int w, const float* __restrict__ coeffs) {
  __shared__ float c[kMaxWindow];
  if (threadIdx.x < w) c[threadIdx.x] = coeffs[threadIdx.x];
  __syncthreads();
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nvec = n / VEC;
  for (int64_t v = tid; v < nvec; v += stride) {
    float base[VEC];
    float acc[VEC];
    {
      const Vec<H, VEC> h = reinterpret_cast<const Vec<H, VEC>*>(history)[v];
#pragma unroll
      for (int j = 0; j < VEC; ++j) {
        base[j] = to_float<H>(h.v[j]);
        acc[j] = c[0] * base[j];
      }
    }
#pragma unroll 4
    for (int k = 1; k < w; ++k) {
      const Vec<H, VEC> h = reinterpret_cast<const Vec<H, VEC>*>(history + k * row)[v];
      const float ck = c[k];
#pragma unroll
      for (int j = 0; j < VEC; ++j) acc[j] = fmaf(ck, to_float<H>(h.v[j]) - base[j], acc[j]);
    }
    Vec<O, VEC> o;
#pragma unroll
    for (int j = 0; j < VEC; ++j) o.v[j] = from_float<O>(acc[j]);
    reinterpret_cast<Vec<O, VEC>*>(out)[v] = o;
  }
  for (int64_t i = nvec * VEC + tid; i < n; i += stride) {
    const float base = to_float<H>(history[i]);
    float acc = c[0] * base;
    for (int k = 1; k < w; ++k) acc = fmaf(c[k], to_float<H>(history[k * row + i]) - base, acc);
    out[i] = from_float<O>(acc);
  }
}

// ---- multi-tensor kernels over a table (kernels.cuh) ----
// The table as the kernels read it: kernels.cuh's TensorTable plus the first
// block of each tensor.
struct BlockTable {
  TensorTable t;
  int64_t first_block[kTableSize + 1];
};

// The tensor of this block and the element range [c0, c1) it handles.
__device__ __forceinline__ int block_tensor(const BlockTable& tab, int64_t& c0, int64_t& c1) {
  const int64_t b = blockIdx.x;
  int t = 0;
  while (t + 1 < tab.t.count && tab.first_block[t + 1] <= b) ++t;
  c0 = (b - tab.first_block[t]) * kTableChunk;
  c1 = min(tab.t.numel[t], c0 + kTableChunk);
  return t;
}

__device__ __forceinline__ void block_atomic_max(int m, int* absmax_bits) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
  __shared__ int warp_max[kThreads / 32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  if (lane == 0) warp_max[warp] = m;
  __syncthreads();
  if (warp == 0) {
    m = lane < static_cast<int>(blockDim.x / 32) ? warp_max[lane] : 0;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (lane == 0 && m > 0) atomicMax(absmax_bits, m);
  }
}

template <typename S, typename D>
__global__ void __launch_bounds__(kThreads) record_table_kernel(const BlockTable tab, D* __restrict__ row,
                                                                int* __restrict__ absmax_bits) {
  int64_t c0, c1;
  const int t = block_tensor(tab, c0, c1);
  const S* src = static_cast<const S*>(tab.t.ptr[t]);
  D* dst = row + tab.t.offset[t];
  int m = 0;
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
    const D y = from_float<D>(to_float<S>(src[i]));
    dst[i] = y;
    m = max(m, abs_bits(to_float<D>(y)));
  }
  block_atomic_max(m, absmax_bits);
}

template <typename H, typename O>
__global__ void __launch_bounds__(kThreads) lincomb_table_kernel(const BlockTable tab, const H* __restrict__ history,
                                                                 int64_t row, int w, const float* __restrict__ coeffs) {
  __shared__ float c[kMaxWindow];
  if (threadIdx.x < w) c[threadIdx.x] = coeffs[threadIdx.x];
  __syncthreads();
  int64_t c0, c1;
  const int t = block_tensor(tab, c0, c1);
  O* out = static_cast<O*>(tab.t.ptr[t]);
  const H* h = history + tab.t.offset[t];
  for (int64_t i = c0 + threadIdx.x; i < c1; i += blockDim.x) {
    const float base = to_float<H>(h[i]);
    float acc = c[0] * base;
    for (int k = 1; k < w; ++k) acc = fmaf(c[k], to_float<H>(h[k * row + i]) - base, acc);
    out[i] = from_float<O>(acc);
  }
}

// The blocks of a table (first block of each tensor); false when it is empty.
bool block_table(const TensorTable& table, BlockTable& tab, int64_t& blocks) {
  tab.t = table;
  blocks = 0;
  for (int t = 0; t < table.count; ++t) {
    tab.first_block[t] = blocks;
    blocks += (table.numel[t] + kTableChunk - 1) / kTableChunk;
  }
  tab.first_block[table.count] = blocks;
  return blocks > 0;
}

// ---- launch helpers ----
int sm_count() {
  static std::atomic<int> cache[64];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return 132;
  if (device >= 0 && device < 64) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0) sms = 132;
  if (device >= 0 && device < 64) cache[device].store(sms, std::memory_order_relaxed);
  return sms;
}

unsigned grid_for(int64_t work_items) {
  const int64_t want = (work_items + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * kBlocksPerSm;
  const int64_t g = want < cap ? want : cap;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

bool aligned(const void* p, int bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <typename S, typename D>
cudaError_t record_typed(const S* src, D* dst, int64_t n, int* absmax_bits, cudaStream_t stream) {
  constexpr int VEC = 16 / sizeof(S);
  const bool vec_ok = aligned(src, sizeof(S) * VEC) && aligned(dst, sizeof(D) * VEC);
  if (vec_ok) {
    record_kernel<S, D, VEC><<<grid_for(n / VEC + (n % VEC)), kThreads, 0, stream>>>(src, dst, n, absmax_bits);
  } else {
    record_kernel<S, D, 1><<<grid_for(n), kThreads, 0, stream>>>(src, dst, n, absmax_bits);
  }
  return cudaGetLastError();
}

template <typename H, typename O>
cudaError_t lincomb_typed(O* out, const H* history, int64_t row, int64_t n, int w, const float* coeffs,
                          cudaStream_t stream) {
  constexpr int VEC = 16 / sizeof(H);
  const bool vec_ok = aligned(history, sizeof(H) * VEC) && aligned(out, sizeof(O) * VEC) && row % VEC == 0;
  if (vec_ok) {
    lincomb_kernel<H, O, VEC><<<grid_for(n / VEC + n % VEC), kThreads, 0, stream>>>(out, history, row, n, w, coeffs);
  } else {
    lincomb_kernel<H, O, 1><<<grid_for(n), kThreads, 0, stream>>>(out, history, row, n, w, coeffs);
  }
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_record_table(const TensorTable& table, DType param_type, void* row, DType history_type,
                                float* absmax, cudaStream_t stream) {
  if (table.count < 0 || table.count > kTableSize || absmax == nullptr) return cudaErrorInvalidValue;
  BlockTable tab;
  int64_t blocks;
  if (!block_table(table, tab, blocks)) return cudaSuccess;
  int* bits = reinterpret_cast<int*>(absmax);
  return with_type(param_type, [&](auto s) {
    using S = typename decltype(s)::type;
    return with_type(history_type, [&](auto d) {
      using D = typename decltype(d)::type;
      record_table_kernel<S, D><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(tab, static_cast<D*>(row),
                                                                                      bits);
      return cudaGetLastError();
    });
  });
}

cudaError_t launch_lincomb_table(const TensorTable& table, DType param_type, const void* history,
                                 DType history_type, int64_t row, int64_t w, const float* coeffs,
                                 cudaStream_t stream) {
  if (table.count < 0 || table.count > kTableSize || w < 1 || w > kMaxWindow || coeffs == nullptr) {
    return cudaErrorInvalidValue;
  }
  BlockTable tab;
  int64_t blocks;
  if (!block_table(table, tab, blocks)) return cudaSuccess;
  return with_type(history_type, [&](auto h) {
    using H = typename decltype(h)::type;
    return with_type(param_type, [&](auto o) {
      using O = typename decltype(o)::type;
      lincomb_table_kernel<H, O><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
          tab, static_cast<const H*>(history), row, static_cast<int>(w), coeffs);
      return cudaGetLastError();
    });
  });
}

cudaError_t launch_record(const void* src, DType src_type, void* dst, DType dst_type, int64_t n, float* absmax,
                          cudaStream_t stream) {
  if (n < 0 || absmax == nullptr) return cudaErrorInvalidValue;
  cudaError_t err = cudaMemsetAsync(absmax, 0, sizeof(float), stream);
  if (err != cudaSuccess || n == 0) return err;
  int* bits = reinterpret_cast<int*>(absmax);
  return with_type(src_type, [&](auto s) {
    using S = typename decltype(s)::type;
    return with_type(dst_type, [&](auto d) {
      using D = typename decltype(d)::type;
      return record_typed<S, D>(static_cast<const S*>(src), static_cast<D*>(dst), n, bits, stream);
    });
  });
}

cudaError_t launch_lincomb(void* out, DType out_type, const void* history, DType history_type, int64_t row,
                           int64_t n, int64_t w, const float* coeffs, cudaStream_t stream) {
  if (n < 0 || row < n || w < 1 || w > kMaxWindow || coeffs == nullptr) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return with_type(history_type, [&](auto h) {
    using H = typename decltype(h)::type;
    return with_type(out_type, [&](auto o) {
      using O = typename decltype(o)::type;
      return lincomb_typed<H, O>(static_cast<O*>(out), static_cast<const H*>(history), row, n, static_cast<int>(w),
                                 coeffs, stream);
    });
  });
}

}  // namespace cuda
}  // namespace weightcast_c
