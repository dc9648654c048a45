// CUDA registration of weightcast_C::nowcast_forecast: the shared check (cpu/nowcast.cpp), the
// device guard, the current stream, the work-item table (one copy to the device) and scratch, and
// the torch-free launcher of nowcast.cu. Compiled only in CUDA builds; tools/check_cuda.sh syntax-checks it here.
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

void nowcast_cuda(const at::Tensor& out, const at::Tensor& history, at::IntArrayRef order, at::IntArrayRef offsets,
                  at::IntArrayRef numels, at::IntArrayRef types, at::IntArrayRef rows, const at::Tensor& mlp,
                  int64_t hidden, int64_t embed, int64_t k_max) {
  check_nowcast(out, history, order, offsets, numels, types, rows, mlp, hidden, embed, k_max);
  const c10::cuda::CUDAGuard guard(out.device());
  const int64_t segments = static_cast<int64_t>(offsets.size());
  const int64_t w = history.size(0), num_rows = static_cast<int64_t>(rows.size());
  // One host table, one copy to the device: order (w) | rows (R) | numels (S) | types (S) | first_item (S + 1) |
  // items (3 I).
  std::vector<int64_t> table(order.begin(), order.end());
  table.insert(table.end(), rows.begin(), rows.end());
  table.insert(table.end(), numels.begin(), numels.end());
  table.insert(table.end(), types.begin(), types.end());
  const int64_t first_at = static_cast<int64_t>(table.size()), items_at = first_at + segments + 1;
  table.resize(items_at);
  for (int64_t s = 0; s < segments; ++s) {
    table[first_at + s] = (static_cast<int64_t>(table.size()) - items_at) / 3;
    for (int64_t b = 0; b < numels[s]; b += cuda::kNowcastItemColumns) {
      table.insert(table.end(), {s, offsets[s] + b, offsets[s] + std::min(b + cuda::kNowcastItemColumns, numels[s])});
    }
  }
  const int64_t num_items = (static_cast<int64_t>(table.size()) - items_at) / 3;
  table[first_at + segments] = num_items;
  if (num_items == 0) return;
  const at::Tensor device_table = at::tensor(table, at::TensorOptions().dtype(at::kLong)).to(out.device());
  const int64_t* t = device_table.const_data_ptr<int64_t>();
  const at::Tensor partial = at::empty({num_items, 3}, out.options().dtype(at::kDouble));
  const at::Tensor stats = at::empty({segments, 3}, out.options().dtype(at::kFloat));
  C10_CUDA_CHECK(cuda::launch_nowcast(
      out.data_ptr(), nowcast_dtype(out), history.const_data_ptr(), nowcast_dtype(history), history.size(1), w, t,
      t + items_at, num_items, t + first_at, t + w + num_rows, t + w + num_rows + segments, segments, t + w, num_rows,
      mlp.const_data_ptr<float>(), hidden, embed, k_max, partial.mutable_data_ptr<double>(),
      stats.mutable_data_ptr<float>(), c10::cuda::getCurrentCUDAStream().stream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CUDA, m) { m.impl("nowcast_forecast", &nowcast_cuda); }

}  // namespace weightcast_c
