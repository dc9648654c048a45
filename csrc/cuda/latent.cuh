// Torch-free launchers of the latent forecaster's CUDA kernels (numerics in ../latent.h). All pointers are
// device pointers to contiguous float32 / int64 buffers; the launchers return the launch's cudaError_t.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../token_slot.h"

namespace weightcast_c::cuda {

// out (K, H) = bias (K, H) + gather(flat, spans (K, 3); T slots) * scale (K,) @ weight_t (T, H)
// weight_t is the encoder's first-layer weight transposed to (T, H) (coalesced reads).
cudaError_t launch_tokenize_encode(const float* flat, const int64_t* spans, const float* scale,
                                   const float* weight_t, const float* bias, float* out, int64_t K, int64_t T,
                                   int64_t H, cudaStream_t stream);

// out[slot(k, j)] = (accumulate ? out[...] : 0) + scale[k] * (hidden[k, :] . weight_t[:, j] + bias[j])
// weight_t is the decoder's last-layer weight transposed to (H, T); bias may be null.
cudaError_t launch_decode_overwrite(float* out, const float* hidden, const float* weight_t, const float* bias,
                                    const int64_t* spans, const float* scale, int64_t K, int64_t T, int64_t H,
                                    bool accumulate, cudaStream_t stream);

}  // namespace weightcast_c::cuda
