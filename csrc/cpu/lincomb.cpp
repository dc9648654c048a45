// CPU op weightcast_C::lincomb (numerics in ops.cpp): the N columns are split
// into runs of whole tiles, one run per thread (at::parallel_for, OpenMP in
// torch's CPU builds; torch.set_num_threads applies), and the kernel of
// kernels.h streams the W history rows through each tile's float32 sums, so
// each history element is read from memory once and each output written once.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>

#include "../weightcast.h"
#include "format.h"
#include "kernels.h"

namespace weightcast_c::cpu {
namespace {

constexpr int64_t kTile = 256;            // columns per tile; a multiple of the kernel's own tile
constexpr int64_t kGrainTiles = 1 << 7;   // below 128 tiles (32 Ki columns) one thread does it all

void lincomb_cpu(const at::Tensor& out, const at::Tensor& history, const at::Tensor& coeffs) {
  check_lincomb(out, history, coeffs);
  const int64_t w = history.size(0);
  const int64_t n = history.size(1);
  const LincombFn kernel = kernel_table().lincomb[format_of(history)][format_of(out)];
  float c[kMaxRows];
  std::memcpy(c, coeffs.const_data_ptr<float>(), static_cast<size_t>(w) * sizeof(float));
  const void* h = history.const_data_ptr();
  void* o = out.mutable_data_ptr();
  at::parallel_for(0, (n + kTile - 1) / kTile, kGrainTiles, [&](int64_t t0, int64_t t1) {
    kernel(o, h, n, c, w, t0 * kTile, std::min(n, t1 * kTile));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CPU, m) {
  m.impl("lincomb", &lincomb_cpu);
}

}  // namespace weightcast_c::cpu
