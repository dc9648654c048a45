// The CPU kernels compiled for the baseline instruction set (any CPU), and the
// choice of kernel table for this CPU.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#define WEIGHTCAST_SIMD_LANES 4
#define WEIGHTCAST_SIMD_AVX2 0
#include "simd.h"

namespace weightcast_c::cpu {

namespace generic {
const KernelTable table = make_table("generic");
}

// AVX2 (with F16C) when the CPU has it, unless WEIGHTCAST_CPU_ISA=generic (used by the
// tests to check the generic kernels on an AVX2 machine).
const KernelTable& kernel_table() {
#if defined(__x86_64__)
  static const bool use_avx2 = [] {
    const char* isa = std::getenv("WEIGHTCAST_CPU_ISA");
    if (isa != nullptr && std::strcmp(isa, "generic") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  }();
  if (use_avx2) return avx2::table;
#endif
  return generic::table;
}

}  // namespace weightcast_c::cpu
