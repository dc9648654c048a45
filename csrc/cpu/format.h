// The kernel table index of a tensor's dtype (float32, float16 or bfloat16;
// the argument checks have rejected every other dtype before this is called).
#pragma once

#include <ATen/core/Tensor.h>

#include "kernels.h"

namespace weightcast_c::cpu {

inline Format format_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kHalf:
      return kF16;
    case at::kBFloat16:
      return kBF16;
    default:
      return kF32;
  }
}

}  // namespace weightcast_c::cpu
