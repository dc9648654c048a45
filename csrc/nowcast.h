// weightcast_C::nowcast_forecast — the multi-horizon per-element nowcaster evaluated for
// every element of several tensors (numerics: weightcast/ops/nowcast_forecast.py and the
// comment in cpu/nowcast.cpp). The packed-weight layout is in the torch-free nowcast_layout.h;
// the argument check below, shared by the Meta, CPU and CUDA kernels, needs ATen.
#pragma once

#include "nowcast_layout.h"

#ifndef __CUDACC__
#include <ATen/core/Tensor.h>

namespace weightcast_c {

// out (R, N) and history (W, N) contiguous float32/float16/bfloat16 on one device, 2 <= W <=
// kNowcastMaxWindow; order a permutation of 0..W-1 (chronological slots); segments s = (offsets[s],
// numels[s]) inside a history row, in increasing order, not overlapping; types[s] in
// 0..kNowcastNumTypes-1; rows (R,) in 0..k_max-1, 1 <= R; 1 <= hidden <= kNowcastMaxHidden,
// 0 <= embed <= kNowcastMaxEmbed, 1 <= k_max <= kNowcastMaxHorizons; mlp contiguous float32 of
// nowcast_layout(W, hidden, embed, k_max).numel values; out does not overlap history.
void check_nowcast(const at::Tensor& out, const at::Tensor& history, at::IntArrayRef order, at::IntArrayRef offsets,
                   at::IntArrayRef numels, at::IntArrayRef types, at::IntArrayRef rows, const at::Tensor& mlp,
                   int64_t hidden, int64_t embed, int64_t k_max);

}  // namespace weightcast_c
#endif
