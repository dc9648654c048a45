// CPU op weightcast_C::lincomb_forecast (numerics in ops.cpp): every parameter
// i is overwritten with the difference-form combination of its columns
// history[:, offsets[i] : offsets[i] + numel_i]. Work items are (tensor,
// column range) pairs (work_items.h), one parallel loop over all of them
// (at::parallel_for, OpenMP in torch's CPU builds; torch.set_num_threads
// applies); the kernel of kernels.h streams the W history rows through each
// tile's float32 sums, so each history element is read once and each
// parameter element written once.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>

#include "../weightcast.h"
#include "format.h"
#include "kernels.h"
#include "work_items.h"

namespace weightcast_c::cpu {
namespace {

void lincomb_forecast_cpu(at::TensorList params, const at::Tensor& history, at::IntArrayRef offsets,
                          const at::Tensor& coeffs) {
  check_lincomb_forecast(params, history, offsets, coeffs);
  const int64_t w = history.size(0);
  const int64_t n = history.size(1);
  const Format hf = format_of(history);
  float c[kMaxRows];
  std::memcpy(c, coeffs.const_data_ptr<float>(), static_cast<size_t>(w) * sizeof(float));
  const auto* h = static_cast<const char*>(history.const_data_ptr());
  const std::vector<WorkItem> items = work_items(params, kLincombChunk);
  auto run = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const WorkItem& it = items[i];
      const at::Tensor& p = params[it.tensor];
      const LincombFn kernel = kernel_table().lincomb[hf][format_of(p)];
      kernel(p.data_ptr(), h + offsets[it.tensor] * history.element_size(), n, c, w, it.begin, it.end);
    }
  };
  const int64_t count = static_cast<int64_t>(items.size());
  if (total_numel(params) < kSerialBelow) {
    run(0, count);
  } else {
    at::parallel_for(0, count, 1, run);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CPU, m) {
  m.impl("lincomb_forecast", &lincomb_forecast_cpu);
}

}  // namespace weightcast_c::cpu
