// CUDA kernels of weightcast_C::nowcast_forecast (contract in nowcast.cuh, numerics in
// cpu/nowcast.cpp). Work items are (segment, up to kNowcastItemColumns columns), one block each:
//   sum_kernel     per item the sum of its w x columns window values (double block reduction);
//   mean_kernel    per segment (one thread) mu = the item sums in item order / (w n);
//   spread_kernel  per item the sums of (v - mu)^2 and |v_{w-1} - v_0|;
//   scale_kernel   per segment sigma and s;
//   forecast_kernel one thread per element: features and the first hidden layer in registers (the
//                  loops over them run to the compile-time bounds of limits.h, guarded by the run-time
//                  sizes, so every register index is a constant), the second layer one unit at a time
//                  into kRowTile output rows per pass, the block's per-segment biases (log s and
//                  the type embedding folded in) in shared memory, weights through the read-only
//                  cache (every thread of a warp reads the same weight: a broadcast).
// Reductions combine in a fixed order: the result does not depend on the launch configuration.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../nowcast.h"
#include "dtype_dispatch.cuh"
#include "nowcast.cuh"

namespace weightcast_c {
namespace cuda {
namespace {

constexpr int kMaxW = kNowcastMaxWindow;  // limits.h
constexpr int kMaxH = kNowcastMaxHidden;
constexpr int kThreads = 256;
constexpr int kRowTile = 4;  // output rows accumulated in registers per pass over the second layer

template <typename T>
__device__ __forceinline__ float to_float(T x);
template <>
__device__ __forceinline__ float to_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T store_as(float x);
template <>
__device__ __forceinline__ float store_as<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half store_as<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 store_as<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Sum of one value per thread over the block, in a fixed tree order; valid in thread 0.
__device__ double block_sum(double v, double* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
    __syncthreads();
  }
  const double total = shared[0];
  __syncthreads();
  return total;
}

template <typename H>
__global__ void __launch_bounds__(kThreads) sum_kernel(const H* __restrict__ history, int64_t n, int w,
                                                       const int64_t* __restrict__ items, double* __restrict__ partial) {
  __shared__ double shared[kThreads];
  const int64_t begin = items[3 * blockIdx.x + 1], end = items[3 * blockIdx.x + 2];
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    for (int k = 0; k < w; ++k) acc += to_float<H>(history[k * n + i]);
  }
  const double total = block_sum(acc, shared);
  if (threadIdx.x == 0) partial[3 * blockIdx.x] = total;
}

__global__ void mean_kernel(const double* __restrict__ partial, const int64_t* __restrict__ first_item,
                            const int64_t* __restrict__ numels, int64_t segments, int w, float* __restrict__ stats) {
  const int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= segments) return;
  double total = 0.0;
  for (int64_t it = first_item[s]; it < first_item[s + 1]; ++it) total += partial[3 * it];
  const double count = static_cast<double>(numels[s] > 0 ? numels[s] : 1) * w;
  stats[3 * s] = static_cast<float>(total / count);
}

template <typename H>
__global__ void __launch_bounds__(kThreads) spread_kernel(const H* __restrict__ history, int64_t n, int w,
                                                          const int64_t* __restrict__ order,
                                                          const int64_t* __restrict__ items,
                                                          const float* __restrict__ stats,
                                                          double* __restrict__ partial) {
  __shared__ double shared[kThreads];
  const int64_t s = items[3 * blockIdx.x], begin = items[3 * blockIdx.x + 1], end = items[3 * blockIdx.x + 2];
  const double mu = stats[3 * s];
  const H* first = history + order[0] * n;
  const H* last = history + order[w - 1] * n;
  double sq = 0.0, moved = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    for (int k = 0; k < w; ++k) {
      const double d = to_float<H>(history[k * n + i]) - mu;
      sq += d * d;
    }
    moved += fabs(static_cast<double>(to_float<H>(last[i])) - to_float<H>(first[i]));
  }
  const double sq_total = block_sum(sq, shared);
  const double moved_total = block_sum(moved, shared);
  if (threadIdx.x == 0) {
    partial[3 * blockIdx.x + 1] = sq_total;
    partial[3 * blockIdx.x + 2] = moved_total;
  }
}

__global__ void scale_kernel(const double* __restrict__ partial, const int64_t* __restrict__ first_item,
                             const int64_t* __restrict__ numels, int64_t segments, int w, float* __restrict__ stats) {
  const int64_t s = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= segments) return;
  double sq = 0.0, moved = 0.0;
  for (int64_t it = first_item[s]; it < first_item[s + 1]; ++it) {
    sq += partial[3 * it + 1];
    moved += partial[3 * it + 2];
  }
  const double count = static_cast<double>(numels[s] > 0 ? numels[s] : 1);
  // fmaxf would turn NaN into eps: keep NaN (a non-finite window), as torch.clamp_min does
  float sigma = static_cast<float>(sqrt(sq / (count * w)));
  sigma = isnan(sigma) ? sigma : fmaxf(sigma, kNowcastEps);
  const float scale = static_cast<float>(moved / count / sigma / (w - 1));
  stats[3 * s + 1] = sigma;
  stats[3 * s + 2] = isnan(scale) ? scale : fmaxf(scale, kNowcastEps);
}

__device__ __forceinline__ float clamp_d(float x) {  // NaN stays NaN, as torch.clamp
  return x < -kNowcastDClamp ? -kNowcastDClamp : (x > kNowcastDClamp ? kNowcastDClamp : x);
}

__device__ __forceinline__ float relu(float x) { return x < 0.0f ? 0.0f : x; }  // NaN stays NaN

template <typename H, typename O>
__global__ void __launch_bounds__(kThreads) forecast_kernel(O* __restrict__ out, const H* __restrict__ history,
                                                            int64_t n, NowcastLayout l,
                                                            const int64_t* __restrict__ order,
                                                            const int64_t* __restrict__ items,
                                                            const int64_t* __restrict__ types,
                                                            const float* __restrict__ stats,
                                                            const int64_t* __restrict__ rows, int num_rows,
                                                            const float* __restrict__ mlp) {
  __shared__ float bias1[kNowcastMaxHidden];
  __shared__ float bias_out[kNowcastMaxHorizons];
  const int64_t s = items[3 * blockIdx.x], begin = items[3 * blockIdx.x + 1], end = items[3 * blockIdx.x + 2];
  const int w = static_cast<int>(l.w), hidden = static_cast<int>(l.h), fe = static_cast<int>(l.f + l.e);
  const float mu = stats[3 * s], sigma = stats[3 * s + 1], scale = stats[3 * s + 2], log_s = logf(scale);
  const float* w1 = mlp + l.w1;
  const float* w2 = mlp + l.w2;
  const float* b2 = mlp + l.b2;
  if (threadIdx.x < hidden) {
    const int j = threadIdx.x;
    const float* embedding = mlp + l.embed + types[s] * l.e;
    float acc = mlp[l.b1 + j] + w1[j * fe + w] * log_s;
    for (int q = 0; q < l.e; ++q) acc += w1[j * fe + l.f + q] * embedding[q];
    bias1[j] = acc;
  }
  if (threadIdx.x < num_rows) {
    const int64_t row = rows[threadIdx.x];
    bias_out[threadIdx.x] = mlp[l.b3 + row] + mlp[l.skip + row * l.f + w] * log_s;
  }
  __syncthreads();
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    float x[kMaxW];  // d_1 .. d_{w-1}, z_{w-1}
    float prev = (to_float<H>(history[order[0] * n + i]) - mu) / sigma;
#pragma unroll
    for (int k = 1; k < kMaxW; ++k) {
      if (k < w) {
        const float z = (to_float<H>(history[order[k] * n + i]) - mu) / sigma;
        x[k - 1] = clamp_d((z - prev) / scale);
        prev = z;
      }
    }
#pragma unroll
    for (int k = 0; k < kMaxW; ++k) {
      if (k == w - 1) x[k] = prev;
    }
    float h1[kMaxH];
#pragma unroll
    for (int j = 0; j < kMaxH; ++j) {
      if (j < hidden) {
        float acc = bias1[j];
#pragma unroll
        for (int q = 0; q < kMaxW; ++q) {
          if (q < w) acc = fmaf(__ldg(w1 + j * fe + q), x[q], acc);
        }
        h1[j] = relu(acc);
      }
    }
    // Second layer unit by unit (a run-time loop: h2 never needs registers of its own), each unit's ReLU output
    // accumulated into up to kRowTile output rows at once; more rows take further passes.
    for (int r0 = 0; r0 < num_rows; r0 += kRowTile) {
      float m[kRowTile];
      const float* w3[kRowTile];
#pragma unroll
      for (int u = 0; u < kRowTile; ++u) {
        const bool used = r0 + u < num_rows;
        m[u] = used ? bias_out[r0 + u] : 0.0f;
        w3[u] = mlp + l.w3 + (used ? rows[r0 + u] : 0) * l.h;
      }
#pragma unroll 1
      for (int j = 0; j < hidden; ++j) {
        float acc = __ldg(b2 + j);
#pragma unroll
        for (int q = 0; q < kMaxH; ++q) {
          if (q < hidden) acc = fmaf(__ldg(w2 + j * hidden + q), h1[q], acc);
        }
        acc = relu(acc);
#pragma unroll
        for (int u = 0; u < kRowTile; ++u) m[u] = fmaf(__ldg(w3[u] + j), acc, m[u]);
      }
#pragma unroll
      for (int u = 0; u < kRowTile; ++u) {
        if (r0 + u < num_rows) {
          const float* skip = mlp + l.skip + rows[r0 + u] * l.f;
#pragma unroll
          for (int q = 0; q < kMaxW; ++q) {
            if (q < w) m[u] = fmaf(__ldg(skip + q), x[q], m[u]);
          }
          out[(r0 + u) * n + i] = store_as<O>(mu + sigma * (prev + scale * m[u]));
        }
      }
    }
  }
}

unsigned blocks_for(int64_t count) { return static_cast<unsigned>((count + kThreads - 1) / kThreads); }

}  // namespace

cudaError_t launch_nowcast(void* out, DType out_type, const void* history, DType history_type, int64_t n, int64_t w,
                           const int64_t* order, const int64_t* items, int64_t num_items, const int64_t* first_item,
                           const int64_t* numels, const int64_t* types, int64_t segments, const int64_t* rows,
                           int64_t num_rows, const float* mlp, int64_t hidden, int64_t embed, int64_t k_max,
                           double* partial, float* stats, cudaStream_t stream) {
  if (w < 2 || w > kMaxW || hidden < 1 || hidden > kMaxH || embed < 0 || embed > kNowcastMaxEmbed || k_max < 1 ||
      k_max > kNowcastMaxHorizons || num_rows < 1 || num_rows > k_max || segments < 1) {
    return cudaErrorInvalidValue;
  }
  if (num_items == 0) return cudaSuccess;
  const NowcastLayout layout = nowcast_layout(w, hidden, embed, k_max);
  const int wi = static_cast<int>(w);
  const unsigned grid = static_cast<unsigned>(num_items);
  return with_type(history_type, [&](auto htag) {
    using H = typename decltype(htag)::type;
    const H* h = static_cast<const H*>(history);
    sum_kernel<H><<<grid, kThreads, 0, stream>>>(h, n, wi, items, partial);
    mean_kernel<<<blocks_for(segments), kThreads, 0, stream>>>(partial, first_item, numels, segments, wi, stats);
    spread_kernel<H><<<grid, kThreads, 0, stream>>>(h, n, wi, order, items, stats, partial);
    scale_kernel<<<blocks_for(segments), kThreads, 0, stream>>>(partial, first_item, numels, segments, wi, stats);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    return with_type(out_type, [&](auto otag) {
      using O = typename decltype(otag)::type;
      forecast_kernel<H, O><<<grid, kThreads, 0, stream>>>(static_cast<O*>(out), h, n, layout, order, items, types,
                                                           stats, rows, static_cast<int>(num_rows), mlp);
      return cudaGetLastError();
    });
  });
}

}  // namespace cuda
}  // namespace weightcast_c
