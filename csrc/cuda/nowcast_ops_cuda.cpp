// CUDA registration of weightcast_C::nowcast_forecast: the shared check (cpu/nowcast.cpp), the
// device guard, the current stream, the work-item tables and scratch, and the torch-free launcher
// of nowcast.cu. Compiled only in CUDA builds; tools/check_cuda.sh syntax-checks it here.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <vector>

#include "../nowcast.h"
#include "nowcast.cuh"

namespace weightcast_c {
namespace {

cuda::DType nowcast_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return cuda::DType::kFloat32;
    case at::kHalf: return cuda::DType::kFloat16;
    case at::kBFloat16: return cuda::DType::kBFloat16;
    default: TORCH_CHECK(false, "weightcast_C::nowcast_forecast: unsupported dtype ", t.scalar_type());
  }
}

at::Tensor on_device(const std::vector<int64_t>& values, const at::Device& device) {
  return at::tensor(values, at::TensorOptions().dtype(at::kLong)).to(device);
}

void nowcast_cuda(const at::Tensor& out, const at::Tensor& history, at::IntArrayRef order, at::IntArrayRef offsets,
                  at::IntArrayRef numels, at::IntArrayRef types, at::IntArrayRef rows, const at::Tensor& mlp,
                  int64_t hidden, int64_t embed, int64_t k_max) {
  check_nowcast(out, history, order, offsets, numels, types, rows, mlp, hidden, embed, k_max);
  const c10::cuda::CUDAGuard guard(out.device());
  const int64_t segments = static_cast<int64_t>(offsets.size());
  if (segments == 0) return;
  std::vector<int64_t> items, first_item;
  for (int64_t s = 0; s < segments; ++s) {
    first_item.push_back(static_cast<int64_t>(items.size()) / 3);
    for (int64_t b = 0; b < numels[s]; b += cuda::kNowcastItemColumns) {
      items.insert(items.end(), {s, offsets[s] + b, offsets[s] + std::min(b + cuda::kNowcastItemColumns, numels[s])});
    }
  }
  first_item.push_back(static_cast<int64_t>(items.size()) / 3);
  const int64_t num_items = static_cast<int64_t>(items.size()) / 3;
  if (num_items == 0) return;
  const at::Device device = out.device();
  const at::Tensor items_t = on_device(items, device), first_t = on_device(first_item, device);
  const at::Tensor order_t = on_device(order.vec(), device), rows_t = on_device(rows.vec(), device);
  const at::Tensor numels_t = on_device(numels.vec(), device);
  const at::Tensor types_t = on_device(types.vec(), device).to(at::kInt);
  const at::Tensor partial = at::empty({num_items, 3}, out.options().dtype(at::kDouble));
  const at::Tensor stats = at::empty({segments, 3}, out.options().dtype(at::kFloat));
  C10_CUDA_CHECK(cuda::launch_nowcast(
      out.data_ptr(), nowcast_dtype(out), history.const_data_ptr(), nowcast_dtype(history), history.size(1),
      history.size(0), order_t.const_data_ptr<int64_t>(), items_t.const_data_ptr<int64_t>(), num_items,
      first_t.const_data_ptr<int64_t>(), numels_t.const_data_ptr<int64_t>(), types_t.const_data_ptr<int32_t>(),
      segments, rows_t.const_data_ptr<int64_t>(), static_cast<int64_t>(rows.size()), mlp.const_data_ptr<float>(),
      hidden, embed, k_max, partial.mutable_data_ptr<double>(), stats.mutable_data_ptr<float>(),
      c10::cuda::getCurrentCUDAStream().stream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CUDA, m) { m.impl("nowcast_forecast", &nowcast_cuda); }

}  // namespace weightcast_c
