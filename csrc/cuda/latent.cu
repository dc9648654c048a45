// CUDA kernels of weightcast_C::tokenize_encode / decode_overwrite (numerics in ../latent.h; torch-free).
//
// Both kernels give a block kTile tokens: their gathered inputs (tokenize_encode: the T scaled parameter values;
// decode_overwrite: the H hidden activations) go to shared memory once, then each thread computes outputs
// (token, column) with a float32 dot product in index order, reading the transposed weight so that
// neighbouring threads read neighbouring addresses. decode_overwrite scatters into the parameters; the
// tokens partition them, so no two threads write the same element.
#include "latent.cuh"

namespace weightcast_c::cuda {
namespace {

constexpr int kTile = 16;      // tokens per block
constexpr int kThreads = 256;  // threads per block

__global__ void tokenize_encode_kernel(const float* __restrict__ flat, const int64_t* __restrict__ spans,
                                       const float* __restrict__ scale, const float* __restrict__ weight_t,
                                       const float* __restrict__ bias, float* __restrict__ out, int64_t K,
                                       int64_t T, int64_t H) {
  extern __shared__ float x[];  // (kTile, T)
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t tiles = (K - k0) < kTile ? (K - k0) : kTile;
  for (int64_t e = threadIdx.x; e < tiles * T; e += blockDim.x) {
    const int64_t kk = e / T, j = e % T;
    const int64_t* span = spans + 3 * (k0 + kk);
    const int64_t i = token_slot(span[0], span[1], span[2], j);
    x[e] = i >= 0 ? flat[i] * scale[k0 + kk] : 0.0f;
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < tiles * H; e += blockDim.x) {
    const int64_t kk = e / H, h = e % H;
    const float* xk = x + kk * T;
    float acc = 0.0f;
    for (int64_t j = 0; j < T; ++j) acc = fmaf(weight_t[j * H + h], xk[j], acc);
    out[(k0 + kk) * H + h] = bias[(k0 + kk) * H + h] + acc;
  }
}

__global__ void decode_overwrite_kernel(float* __restrict__ out, const float* __restrict__ hidden,
                                        const float* __restrict__ weight_t, const float* __restrict__ bias,
                                        const int64_t* __restrict__ spans, const float* __restrict__ scale,
                                        int64_t K, int64_t T, int64_t H, bool accumulate) {
  extern __shared__ float g[];  // (kTile, H)
  const int64_t k0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t tiles = (K - k0) < kTile ? (K - k0) : kTile;
  for (int64_t e = threadIdx.x; e < tiles * H; e += blockDim.x) g[e] = hidden[k0 * H + e];
  __syncthreads();
  for (int64_t e = threadIdx.x; e < tiles * T; e += blockDim.x) {
    const int64_t kk = e / T, j = e % T;
    const int64_t* span = spans + 3 * (k0 + kk);
    const int64_t i = token_slot(span[0], span[1], span[2], j);
    if (i < 0) continue;
    const float* gk = g + kk * H;
    float acc = 0.0f;
    for (int64_t h = 0; h < H; ++h) acc = fmaf(weight_t[h * T + j], gk[h], acc);
    const float y = (acc + (bias != nullptr ? bias[j] : 0.0f)) * scale[k0 + kk];
    out[i] = accumulate ? out[i] + y : y;
  }
}

unsigned blocks_for(int64_t K) { return static_cast<unsigned>((K + kTile - 1) / kTile); }

}  // namespace

cudaError_t launch_tokenize_encode(const float* flat, const int64_t* spans, const float* scale,
                                   const float* weight_t, const float* bias, float* out, int64_t K, int64_t T,
                                   int64_t H, cudaStream_t stream) {
  if (K == 0 || H == 0) return cudaSuccess;
  const size_t shared = sizeof(float) * kTile * T;
  if (shared > 48 * 1024) return cudaErrorInvalidValue;  // T > 768: more than the default shared memory
  tokenize_encode_kernel<<<blocks_for(K), kThreads, shared, stream>>>(flat, spans, scale, weight_t, bias, out, K,
                                                                      T, H);
  return cudaGetLastError();
}

cudaError_t launch_decode_overwrite(float* out, const float* hidden, const float* weight_t, const float* bias,
                                    const int64_t* spans, const float* scale, int64_t K, int64_t T, int64_t H,
                                    bool accumulate, cudaStream_t stream) {
  if (K == 0 || T == 0) return cudaSuccess;
  const size_t shared = sizeof(float) * kTile * H;
  if (shared > 48 * 1024) return cudaErrorInvalidValue;  // H > 768
  decode_overwrite_kernel<<<blocks_for(K), kThreads, shared, stream>>>(out, hidden, weight_t, bias, spans, scale,
                                                                       K, T, H, accumulate);
  return cudaGetLastError();
}

}  // namespace weightcast_c::cuda
