// The token layout shared by the latent ops' CPU and CUDA kernels (torch-free, host and device).
//
// A token is a span (start, count, bias) of the flat parameter buffer: slot j < count holds flat[start + j],
// slot count holds flat[bias] when bias >= 0 (a row's appended bias), the other slots are padding
// (weightcast/wsl/tokenizer.py builds the spans).
#pragma once

#include <cstdint>

namespace weightcast_c {

#if defined(__CUDACC__)
#define WEIGHTCAST_HOST_DEVICE __host__ __device__
#else
#define WEIGHTCAST_HOST_DEVICE
#endif

// Flat offset of slot j of the token (start, count, bias), or -1 for padding.
WEIGHTCAST_HOST_DEVICE inline int64_t token_slot(int64_t start, int64_t count, int64_t bias, int64_t j) {
  return j < count ? start + j : (j == count ? bias : -1);
}

#undef WEIGHTCAST_HOST_DEVICE

}  // namespace weightcast_c
