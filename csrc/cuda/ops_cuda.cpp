// CUDA registrations of weightcast_C::record and weightcast_C::lincomb_forecast: the
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

// One launch per table of up to cuda::kTableSize parameters (pointers, segment offsets and sizes passed by
// value), not one per parameter.
template <typename Launch>
void over_tables(at::TensorList params, at::IntArrayRef offsets, Launch&& launch) {
  cuda::TensorTable table{};
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].numel() == 0) continue;
    table.ptr[table.count] = params[i].data_ptr();
    table.offset[table.count] = offsets[i];
    table.numel[table.count] = params[i].numel();
    if (++table.count == cuda::kTableSize) {
      launch(table);
      table.count = 0;
    }
  }
  if (table.count > 0) launch(table);
}

cuda::DType params_dtype(at::TensorList params) {
  for (const auto& p : params) {
    TORCH_CHECK(p.scalar_type() == params[0].scalar_type(), "weightcast_C: on CUDA all params of one call must share a "
                "dtype, got ", params[0].scalar_type(), " and ", p.scalar_type());
  }
  return params.empty() ? cuda::DType::kFloat32 : kernel_dtype(params[0]);
}

at::Tensor record_cuda(at::TensorList params, const at::Tensor& history, int64_t slot, at::IntArrayRef offsets) {
  check_record(params, history, slot, offsets);
  const c10::cuda::CUDAGuard guard(history.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  at::Tensor absmax = at::zeros({}, history.options().dtype(at::kFloat));
  const cuda::DType pt = params_dtype(params);
  void* row = static_cast<char*>(history.data_ptr()) + slot * history.size(1) * history.element_size();
  over_tables(params, offsets, [&](const cuda::TensorTable& table) {
    C10_CUDA_CHECK(cuda::launch_record_table(table, pt, row, kernel_dtype(history), absmax.data_ptr<float>(), stream));
  });
  return absmax;
}

void lincomb_forecast_cuda(at::TensorList params, const at::Tensor& history, at::IntArrayRef offsets,
                           const at::Tensor& coeffs) {
  check_lincomb_forecast(params, history, offsets, coeffs);
  const c10::cuda::CUDAGuard guard(history.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const cuda::DType pt = params_dtype(params);
  over_tables(params, offsets, [&](const cuda::TensorTable& table) {
    C10_CUDA_CHECK(cuda::launch_lincomb_table(table, pt, history.const_data_ptr(), kernel_dtype(history),
                                              history.size(1), history.size(0), coeffs.const_data_ptr<float>(),
                                              stream));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CUDA, m) {
  m.impl("record", &record_cuda);
  m.impl("lincomb_forecast", &lincomb_forecast_cuda);
}

}  // namespace weightcast_c
