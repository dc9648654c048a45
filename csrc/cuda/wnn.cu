// CUDA kernel of weightcast_C::wnn_forecast (contract in wnn.cuh). One thread per
// element (grid-stride); each block copies the packed MLP into shared memory
// once; the hidden layer (at most 32 values) lives in registers: the loops run
// to the compile-time bound kMaxH and are unrolled (guarded by j < hidden), so
// every array index is a constant. One instantiation per (history, out) dtype
// pair keeps the compile-check short. The segment of an element is
// found by a binary search of offsets (read-only cache).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../limits.h"
#include "dtype_dispatch.cuh"
#include "wnn.cuh"

namespace weightcast_c {
namespace cuda {
namespace {

constexpr int kMaxW = kWnnMaxWindow;  // limits.h
constexpr int kMaxH = kWnnMaxHidden;
constexpr int kKinds = kWnnKinds;
constexpr int kMaxMlp = kMaxH * (2 * kMaxW - 1) + kKinds * kMaxH + kMaxH * kMaxH + 2 * kMaxH + 1;
constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ float load_float(const T* p);
template <>
__device__ __forceinline__ float load_float<float>(const float* p) { return __ldg(p); }
template <>
__device__ __forceinline__ float load_float<__half>(const __half* p) { return __half2float(*p); }
template <>
__device__ __forceinline__ float load_float<__nv_bfloat16>(const __nv_bfloat16* p) { return __bfloat162float(*p); }

template <typename T>
__device__ __forceinline__ T store_as(float x);
template <>
__device__ __forceinline__ float store_as<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half store_as<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 store_as<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <typename H, typename O>
__global__ void __launch_bounds__(kThreads) wnn_kernel(O* __restrict__ out, const H* __restrict__ history,
                                                       int64_t n, int w, const int64_t* __restrict__ order,
                                                       const int64_t* __restrict__ offsets, int64_t segments,
                                                       const float* __restrict__ stats,
                                                       const int32_t* __restrict__ kinds,
                                                       const float* __restrict__ mlp, int hidden) {
  __shared__ float sm[kMaxMlp];
  const int f = 2 * w - 1;
  const int total = hidden * f + kKinds * hidden + hidden * hidden + 2 * hidden + 1;
  for (int j = threadIdx.x; j < total; j += blockDim.x) sm[j] = mlp[j];
  __syncthreads();
  const float* w1 = sm;
  const float* b1 = w1 + hidden * f;
  const float* w2 = b1 + kKinds * hidden;
  const float* b2 = w2 + hidden * hidden;
  const float* w3 = b2 + hidden;
  const float b3 = w3[hidden];
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    int64_t lo = 0, hi = segments - 1;  // largest s with offsets[s] <= i
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (__ldg(offsets + mid) <= i) lo = mid; else hi = mid - 1;
    }
    const float a = __ldg(stats + 4 * lo), c = __ldg(stats + 4 * lo + 1);
    const float e = __ldg(stats + 4 * lo + 2), g = __ldg(stats + 4 * lo + 3);
    const float* bias1 = b1 + __ldg(kinds + lo) * hidden;
    float z1[kMaxH];
#pragma unroll
    for (int j = 0; j < kMaxH; ++j) z1[j] = j < hidden ? bias1[j] : 0.0f;
    float prev = load_float<H>(history + __ldg(order) * n + i);
#pragma unroll
    for (int j = 0; j < kMaxH; ++j) {
      if (j < hidden) z1[j] = fmaf(w1[j * f], fmaf(prev, a, c), z1[j]);
    }
#pragma unroll 1
    for (int k = 1; k < w; ++k) {  // not unrolled: w is a run-time value and the body is large
      const float v = load_float<H>(history + __ldg(order + k) * n + i);
      const float x = fmaf(v, a, c);
      const float d = (v - prev) * e;
#pragma unroll
      for (int j = 0; j < kMaxH; ++j) {
        if (j < hidden) z1[j] = fmaf(w1[j * f + w + k - 1], d, fmaf(w1[j * f + k], x, z1[j]));
      }
      prev = v;
    }
    float acc = b3;
#pragma unroll
    for (int j = 0; j < kMaxH; ++j) {
      if (j < hidden) {
        float z = b2[j];
#pragma unroll
        for (int q = 0; q < kMaxH; ++q) {
          if (q < hidden) z = fmaf(w2[j * hidden + q], fmaxf(z1[q], 0.0f), z);
        }
        acc = fmaf(w3[j], fmaxf(z, 0.0f), acc);
      }
    }
    out[i] = store_as<O>(fmaf(g, acc, prev));
  }
}

template <typename H, typename O>
cudaError_t launch(O* out, const H* history, int64_t n, int w, const int64_t* order, const int64_t* offsets,
                   int64_t segments, const float* stats, const int32_t* kinds, const float* mlp, int hidden,
                   cudaStream_t stream) {
  int device = 0, sms = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  const int64_t needed = (n + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(sms) * 8;
  const unsigned blocks = static_cast<unsigned>(needed < cap ? needed : cap);
  wnn_kernel<H, O><<<blocks, kThreads, 0, stream>>>(out, history, n, w, order, offsets, segments, stats,
                                                           kinds, mlp, hidden);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_wnn(void* out, DType out_type, const void* history, DType history_type, int64_t n, int64_t w,
                       const int64_t* order, const int64_t* offsets, int64_t segments, const float* stats,
                       const int32_t* kinds, const float* mlp, int64_t hidden, cudaStream_t stream) {
  if (w < 2 || w > kMaxW || hidden < 1 || hidden > kMaxH || segments < 1) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return with_type(history_type, [&](auto htag) {
    using H = typename decltype(htag)::type;
    return with_type(out_type, [&](auto otag) {
      using O = typename decltype(otag)::type;
      O* o = static_cast<O*>(out);
      const H* h = static_cast<const H*>(history);
      const int wi = static_cast<int>(w), hi = static_cast<int>(hidden);
      return launch(o, h, n, wi, order, offsets, segments, stats, kinds, mlp, hi, stream);
    });
  });
}

}  // namespace cuda
}  // namespace weightcast_c
