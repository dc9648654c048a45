// The torch-free part of weightcast_C::nowcast_forecast: the packed-weight layout and the numeric constants, used
// by the CPU kernel (cpu/nowcast.cpp, cpu/nowcast_tile.h), the CUDA kernel (cuda/nowcast.cu) and the tile's
// per-ISA check (tests/native/nowcast_tile_check.cpp).
#pragma once

#include <cstdint>

#include "limits.h"

namespace weightcast_c {

// Offsets (in floats) of the nowcaster's tensors in the packed float32 `mlp`, row-major, in
// this order: type_embed (T, E), w1 (H, F + E), b1 (H), w2 (H, H), b2 (H), w3 (K, H), b3 (K),
// skip (K, F), with T = kNowcastNumTypes and F = W + 1 features per element
// (W - 1 clamped z differences over s, z_{W-1}, log s).
struct NowcastLayout {
  int64_t w, h, e, k, f;
  int64_t embed, w1, b1, w2, b2, w3, b3, skip, numel;
};

inline NowcastLayout nowcast_layout(int64_t window, int64_t hidden, int64_t embed, int64_t k_max) {
  NowcastLayout l{};
  l.w = window;
  l.h = hidden;
  l.e = embed;
  l.k = k_max;
  l.f = window + 1;
  l.embed = 0;
  l.w1 = kNowcastNumTypes * embed;
  l.b1 = l.w1 + hidden * (l.f + embed);
  l.w2 = l.b1 + hidden;
  l.b2 = l.w2 + hidden * hidden;
  l.w3 = l.b2 + hidden;
  l.b3 = l.w3 + k_max * hidden;
  l.skip = l.b3 + k_max;
  l.numel = l.skip + k_max * l.f;
  return l;
}

// The z-scores' clamp of the differences and the floor of sigma and s (weightcast/forecasters/nowcast.py).
constexpr float kNowcastDClamp = 20.0f;
constexpr float kNowcastEps = 1e-12f;

}  // namespace weightcast_c
