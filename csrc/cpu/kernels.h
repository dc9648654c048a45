// The CPU kernel bodies of record and lincomb, behind a table of function
// pointers picked once per process for this CPU: the same source (simd.h) is
// compiled for baseline x86-64 / any CPU (kernels_generic.cpp) and, on x86-64,
// for AVX2+F16C (kernels_avx2.cpp). record.cpp and lincomb.cpp split the
// work over threads and call these on ranges.
#pragma once

#include <cstdint>

#include "../limits.h"

namespace weightcast_c::cpu {

// Storage formats, used as table indices: 0 float32, 1 float16, 2 bfloat16.
enum Format : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

// Most history rows lincomb_forecast takes (limits.h).
constexpr int64_t kMaxRows = weightcast_c::kLincombMaxWindow;

// dst[i] = convert(src[i]) for i in [begin, end); returns the max over those i
// of dst[i]'s bit pattern with the sign bit cleared (in dst's own format). That
// key is monotone in |dst[i]| and puts every NaN above +inf.
using RecordFn = uint32_t (*)(const void* src, void* dst, int64_t begin, int64_t end);

// out[j] = convert(c[0] * h_0 + sum_{k=1}^{w-1} c[k] * (h_k - h_0)) for j in
// [begin, end), with h_k = float(history[k * n + j]), accumulated in float32 in
// slot order (the difference form of weightcast/ops/reference.py).
using LincombFn = void (*)(void* out, const void* history, int64_t n, const float* coeffs, int64_t w,
                           int64_t begin, int64_t end);

struct KernelTable {
  const char* isa;               // "generic" or "avx2"
  RecordFn record[3][3];         // [src format][dst format]
  LincombFn lincomb[3][3];       // [history format][out format]
};

namespace generic {
extern const KernelTable table;
}
namespace avx2 {
extern const KernelTable table;  // only on x86-64; use it only when the CPU has AVX2 and F16C
}

// The fastest table this CPU runs.
const KernelTable& kernel_table();

}  // namespace weightcast_c::cpu
