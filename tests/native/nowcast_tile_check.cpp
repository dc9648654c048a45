// The nowcast CPU kernel's tile MLP (csrc/cpu/nowcast_tile.h) built for one -march with
// -DWEIGHTCAST_SINGLE_TARGET (tests/test_nowcast_tile_isa.py): its outputs for a random tile and random weights
// against a double-precision scalar evaluation of the same MLP. Prints the largest error, the largest output and a
// hash of the outputs' bits; exit status 1 when the error exceeds 1e-4 x (1 + the largest output).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "../../csrc/cpu/nowcast_tile.h"

using namespace weightcast_c;
using namespace weightcast_c::cpu;

int main() {
  const int64_t w = 5, h = 64, e = 8, k = 32;
  NowcastLayout l = nowcast_layout(w, h, e, k);
  std::mt19937 g(0);
  std::normal_distribution<float> n(0.f, 0.3f);
  std::vector<float> mlp(l.numel);
  for (auto& v : mlp) v = n(g);
  Vec x[kNowcastMaxWindow][kVecs];
  float* xf = reinterpret_cast<float*>(x);
  for (int64_t i = 0; i < w * kTile; ++i) xf[i] = n(g);
  float bias1[kNowcastMaxHidden], bias_out[3];
  for (int64_t j = 0; j < h; ++j) bias1[j] = n(g);
  const int64_t rows[3] = {0, 5, 31};
  for (auto& b : bias_out) b = n(g);
  Vec m[kNowcastMaxHorizons][kVecs];
  mlp_tile(x, l, mlp.data(), bias1, rows, bias_out, 3, m);
  const float* mf = reinterpret_cast<const float*>(m);
  const int64_t fe = l.f + l.e;
  double worst = 0, scale = 0;
  for (int64_t t = 0; t < kTile; ++t) {
    double h1[64], h2[64];
    for (int64_t j = 0; j < h; ++j) {
      double a = bias1[j];
      for (int64_t q = 0; q < w; ++q) a += double(mlp[l.w1 + j * fe + q]) * xf[q * kTile + t];
      h1[j] = a > 0 ? a : 0;
    }
    for (int64_t j = 0; j < h; ++j) {
      double a = mlp[l.b2 + j];
      for (int64_t q = 0; q < h; ++q) a += double(mlp[l.w2 + j * h + q]) * h1[q];
      h2[j] = a > 0 ? a : 0;
    }
    for (int64_t r = 0; r < 3; ++r) {
      double a = bias_out[r];
      for (int64_t q = 0; q < h; ++q) a += double(mlp[l.w3 + rows[r] * h + q]) * h2[q];
      for (int64_t q = 0; q < w; ++q) a += double(mlp[l.skip + rows[r] * l.f + q]) * xf[q * kTile + t];
      worst = std::fmax(worst, std::fabs(a - mf[r * kTile + t]));
      scale = std::fmax(scale, std::fabs(a));
    }
  }
  uint64_t hash = 1469598103934665603ull;
  for (int64_t i = 0; i < 3 * kTile; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &mf[i], 4);
    hash = (hash ^ bits) * 1099511628211ull;
  }
  std::printf("error %.3g max %.3g hash %016llx\n", worst, scale,
              static_cast<unsigned long long>(hash));
  return worst <= 1e-4 * (1 + scale) ? 0 : 1;
}
