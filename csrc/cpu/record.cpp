// CPU op weightcast_C::record (numerics in ops.cpp): every parameter i is
// copied into its segment history[slot, offsets[i] : offsets[i] + numel_i],
// converted to the history's dtype, while each work item reports the max of
// its absmax keys; the max key, read back in the history's format, is the
// absmax of the slot. Work items are (tensor, block range) pairs, so one
// parallel loop (at::parallel_reduce, OpenMP in torch's CPU builds;
// torch.set_num_threads applies) covers many tensors of any sizes.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <cstring>

#include "../weightcast.h"
#include "format.h"
#include "kernels.h"
#include "work_items.h"

namespace weightcast_c::cpu {
namespace {

// The absmax key (sign-cleared bit pattern in format f) as a float32.
float key_to_float(uint32_t key, Format f) {
  if (f == kF16) return static_cast<float>(c10::Half(static_cast<uint16_t>(key), c10::Half::from_bits()));
  if (f == kBF16) return static_cast<float>(c10::BFloat16(static_cast<uint16_t>(key), c10::BFloat16::from_bits()));
  float x;
  std::memcpy(&x, &key, sizeof x);
  return x;
}

at::Tensor record_cpu(at::TensorList params, const at::Tensor& history, int64_t slot, at::IntArrayRef offsets) {
  check_record(params, history, slot, offsets);
  const Format hf = format_of(history);
  auto* row = static_cast<char*>(history.mutable_data_ptr()) + slot * history.size(1) * history.element_size();
  const std::vector<WorkItem> items = work_items(params, kRecordChunk);
  auto run = [&](int64_t i0, int64_t i1, uint32_t m) {
    for (int64_t i = i0; i < i1; ++i) {
      const WorkItem& it = items[i];
      const at::Tensor& p = params[it.tensor];
      const RecordFn kernel = kernel_table().record[format_of(p)][hf];
      void* dst = row + offsets[it.tensor] * history.element_size();
      const uint32_t k = kernel(p.const_data_ptr(), dst, it.begin, it.end);
      m = k > m ? k : m;
    }
    return m;
  };
  const int64_t n = static_cast<int64_t>(items.size());
  const uint32_t key = total_numel(params) < kSerialBelow
                           ? run(0, n, 0)
                           : at::parallel_reduce(int64_t{0}, n, int64_t{1}, uint32_t{0}, run,
                                                 [](uint32_t a, uint32_t b) { return a > b ? a : b; });
  return at::scalar_tensor(key_to_float(key, hf), history.options().dtype(at::kFloat));
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CPU, m) {
  m.impl("record", &record_cpu);
}

}  // namespace weightcast_c::cpu
