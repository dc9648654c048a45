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

at::Tensor record_cuda(const at::Tensor& src, const at::Tensor& dst) {
  check_record(src, dst);
  const c10::cuda::CUDAGuard guard(dst.device());
  at::Tensor absmax = at::empty({}, dst.options().dtype(at::kFloat));
  C10_CUDA_CHECK(cuda::launch_record(src.const_data_ptr(), kernel_dtype(src), dst.data_ptr(), kernel_dtype(dst),
                                     src.numel(), absmax.data_ptr<float>(),
                                     c10::cuda::getCurrentCUDAStream().stream()));
  return absmax;
}

void lincomb_cuda(const at::Tensor& out, const at::Tensor& history, const at::Tensor& coeffs) {
  check_lincomb(out, history, coeffs);
  const c10::cuda::CUDAGuard guard(out.device());
  C10_CUDA_CHECK(cuda::launch_lincomb(out.data_ptr(), kernel_dtype(out), history.const_data_ptr(),
                                      kernel_dtype(history), history.size(1), history.size(0),
                                      coeffs.const_data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CUDA, m) {
  m.impl("record", &record_cuda);
  m.impl("lincomb", &lincomb_cuda);
}

}  // namespace weightcast_c
