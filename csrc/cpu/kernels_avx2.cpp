// The CPU kernels compiled for AVX2 and F16C (x86-64 only; picked at run time
// by kernel_table() when the CPU has both). The target pragma comes after the
// standard headers, so only the kernel bodies of simd.h are built for AVX2.
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,f16c")
#endif

#define WEIGHTCAST_SIMD_LANES 8
#define WEIGHTCAST_SIMD_AVX2 1
#include "simd.h"

namespace weightcast_c::cpu::avx2 {
const KernelTable table = make_table("avx2");
}

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // __x86_64__
