// The work items of the CPU multi-tensor kernels: (tensor, element range)
// pairs of at most `chunk` elements, in tensor order, so that one parallel loop
// over the items spreads any mix of large and small tensors over the threads
// (the CPU counterpart of the CUDA kernels' table of tensor pointers and sizes).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace weightcast_c::cpu {

// Elements per work item (multiples of the kernels' vector tiles: tails only at a tensor's end).
constexpr int64_t kRecordChunk = int64_t{1} << 16;
constexpr int64_t kLincombChunk = int64_t{1} << 15;
// Below this many elements in all, one thread does everything (thread start-up would cost more).
constexpr int64_t kSerialBelow = int64_t{1} << 16;

struct WorkItem {
  int64_t tensor;
  int64_t begin;
  int64_t end;
};

inline std::vector<WorkItem> work_items(at::TensorList tensors, int64_t chunk) {
  std::vector<WorkItem> items;
  for (int64_t t = 0; t < static_cast<int64_t>(tensors.size()); ++t) {
    const int64_t n = tensors[t].numel();
    for (int64_t b = 0; b < n; b += chunk) items.push_back({t, b, b + chunk < n ? b + chunk : n});
  }
  return items;
}

inline int64_t total_numel(at::TensorList tensors) {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.numel();
  return n;
}

}  // namespace weightcast_c::cpu
