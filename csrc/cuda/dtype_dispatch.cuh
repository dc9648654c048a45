// Device-side dispatch from the torch-free DType tag to the C++ element type, shared by the .cu files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "kernels.cuh"

namespace weightcast_c {
namespace cuda {

template <typename T>
struct Tag {
  using type = T;
};

// Calls f(Tag<T>{}) with the C++ type of `t` (float, __half, __nv_bfloat16).
template <typename F>
cudaError_t with_type(DType t, F&& f) {
  switch (t) {
    case DType::kFloat32: return f(Tag<float>{});
    case DType::kFloat16: return f(Tag<__half>{});
    case DType::kBFloat16: return f(Tag<__nv_bfloat16>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace weightcast_c
