// CPU op weightcast_C::record (numerics in ops.cpp): the blocks of src are
// converted into dst by the kernel of kernels.h, in parallel, while each block
// reports the max of its absmax keys; the max key, read back in dst's format,
// is the absmax. Threads: at::parallel_reduce (OpenMP in torch's CPU builds),
// one contiguous run of blocks per thread; torch.set_num_threads applies.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <cstring>

#include "../weightcast.h"
#include "format.h"
#include "kernels.h"

namespace weightcast_c::cpu {
namespace {

constexpr int64_t kBlock = 1 << 12;       // elements per block (a multiple of 8: tails only at the very end)
constexpr int64_t kGrainBlocks = 1 << 4;  // below 16 blocks (64 Ki elements) one thread does it all

// The absmax key (sign-cleared bit pattern in format f) as a float32.
float key_to_float(uint32_t key, Format f) {
  if (f == kF16) return static_cast<float>(c10::Half(static_cast<uint16_t>(key), c10::Half::from_bits()));
  if (f == kBF16) return static_cast<float>(c10::BFloat16(static_cast<uint16_t>(key), c10::BFloat16::from_bits()));
  float x;
  std::memcpy(&x, &key, sizeof x);
  return x;
}

at::Tensor record_cpu(const at::Tensor& src, const at::Tensor& dst) {
  check_record(src, dst);
  const Format sf = format_of(src), df = format_of(dst);
  const RecordFn kernel = kernel_table().record[sf][df];
  const void* s = src.const_data_ptr();
  void* d = dst.mutable_data_ptr();
  const int64_t n = src.numel();
  const uint32_t key = at::parallel_reduce(
      int64_t{0}, (n + kBlock - 1) / kBlock, kGrainBlocks, uint32_t{0},
      [&](int64_t b0, int64_t b1, uint32_t m) {
        const uint32_t k = kernel(s, d, b0 * kBlock, std::min(n, b1 * kBlock));
        return k > m ? k : m;
      },
      [](uint32_t a, uint32_t b) { return a > b ? a : b; });
  return at::scalar_tensor(key_to_float(key, df), dst.options().dtype(at::kFloat));
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CPU, m) {
  m.impl("record", &record_cpu);
}

}  // namespace weightcast_c::cpu
