// CUDA registrations of weightcast_C::record and weightcast_C::lincomb: the
// shared argument checks, the device guard, the current stream, and the
// call into the torch-free launchers of kernels.cu. Compiled only in CUDA
// builds (setup.py); tools/check_cuda.sh syntax-checks it without one.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../weightcast.h"
#include "kernels.cuh"

namespace weightcast_c {
namespace {

cuda::DType kernel_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::DType::kFloat32;
    case at::kHalf: return cuda::DType::kFloat16;
    case at::kBFloat16: return cuda::DType::kBFloat16;
    default: TORCH_CHECK(false, "weightcast_C: unsupported dtype ", t.scalar_type());
  }
}

// One launch per parameter for now; each launch is a grid-stride pass over that tensor.
at::Tensor record_cuda(at::TensorList params, const at::Tensor& history, int64_t slot, at::IntArrayRef offsets) {
  check_record(params, history, slot, offsets);
  const c10::cuda::CUDAGuard guard(history.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  at::Tensor absmax = at::zeros({static_cast<int64_t>(params.size()) + 1}, history.options().dtype(at::kFloat));
  auto* row = static_cast<char*>(history.data_ptr()) + slot * history.size(1) * history.element_size();
  for (size_t i = 0; i < params.size(); ++i) {
    C10_CUDA_CHECK(cuda::launch_record(params[i].const_data_ptr(), kernel_dtype(params[i]),
                                       row + offsets[i] * history.element_size(), kernel_dtype(history),
                                       params[i].numel(), absmax.data_ptr<float>() + i, stream));
  }
  return absmax.amax();  // amax propagates NaN
}

void lincomb_forecast_cuda(at::TensorList params, const at::Tensor& history, at::IntArrayRef offsets,
                           const at::Tensor& coeffs) {
  check_lincomb_forecast(params, history, offsets, coeffs);
  const c10::cuda::CUDAGuard guard(history.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const auto* h = static_cast<const char*>(history.const_data_ptr());
  for (size_t i = 0; i < params.size(); ++i) {
    C10_CUDA_CHECK(cuda::launch_lincomb(params[i].data_ptr(), kernel_dtype(params[i]),
                                        h + offsets[i] * history.element_size(), kernel_dtype(history),
                                        history.size(1), params[i].numel(), history.size(0),
                                        coeffs.const_data_ptr<float>(), stream));
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CUDA, m) {
  m.impl("record", &record_cuda);
  m.impl("lincomb_forecast", &lincomb_forecast_cuda);
}

}  // namespace weightcast_c
