// CUDA registration of weightcast_C::wnn_forecast: the shared check (cpu/wnn.cpp), the
// device guard, the current stream, and the torch-free launcher of wnn.cu.
// Compiled only in CUDA builds; tools/check_cuda.sh syntax-checks it here.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../wnn.h"
#include "wnn.cuh"

namespace weightcast_c {
namespace {

cuda::DType wnn_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::DType::kFloat32;
    case at::kHalf: return cuda::DType::kFloat16;
    case at::kBFloat16: return cuda::DType::kBFloat16;
    default: TORCH_CHECK(false, "weightcast_C::wnn_forecast: unsupported dtype ", t.scalar_type());
  }
}

void wnn_cuda(const at::Tensor& out, const at::Tensor& history, const at::Tensor& order, const at::Tensor& offsets,
              const at::Tensor& stats, const at::Tensor& kinds, const at::Tensor& mlp, int64_t hidden) {
  check_wnn(out, history, order, offsets, stats, kinds, mlp, hidden);
  const c10::cuda::CUDAGuard guard(out.device());
  C10_CUDA_CHECK(cuda::launch_wnn(out.data_ptr(), wnn_dtype(out), history.const_data_ptr(), wnn_dtype(history),
                                  history.size(1), history.size(0), order.const_data_ptr<int64_t>(),
                                  offsets.const_data_ptr<int64_t>(), offsets.size(0) - 1,
                                  stats.const_data_ptr<float>(), kinds.const_data_ptr<int32_t>(),
                                  mlp.const_data_ptr<float>(), hidden, c10::cuda::getCurrentCUDAStream().stream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CUDA, m) {
  m.impl("wnn_forecast", &wnn_cuda);
}

}  // namespace weightcast_c
