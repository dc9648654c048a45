// The MLP of one tile of the nowcast CPU kernel (cpu/nowcast.cpp), in its own torch-free header so that
// tests/test_nowcast_tile_isa.py can compile it for each x86-64 level (x86-64, v3, v4) and check every variant the
// kernel's function multi-versioning may pick at load time, on whichever machine runs the tests.
#pragma once

#include <cstdint>

#include "../nowcast_layout.h"

// GCC function multi-versioning on x86-64 Linux: x86-64-v4 (AVX-512) and v3 (AVX2, FMA) clones besides the
// default, picked at load time; WEIGHTCAST_SINGLE_TARGET builds the one variant of the -march given (the ISA
// check). Multiply-adds may be fused here (the comment at mlp_tile).
#if defined(__GNUC__) && !defined(__clang__) && defined(WEIGHTCAST_SINGLE_TARGET)
#define WEIGHTCAST_TILE_TARGETS __attribute__((optimize("fp-contract=fast")))
#elif defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define WEIGHTCAST_TILE_TARGETS \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"), optimize("fp-contract=fast")))
#elif defined(__x86_64__) && defined(__linux__) && defined(__GNUC__) && !defined(__clang__)
#define WEIGHTCAST_TILE_TARGETS __attribute__((target_clones("avx2", "default")))  // GCC < 11: no v3/v4 names
#else
#define WEIGHTCAST_TILE_TARGETS
#endif

namespace weightcast_c {
namespace cpu {
namespace {

constexpr int64_t kTile = 64;  // elements per tile

// GCC/Clang vector extension: kLanes floats, lowered to the target's registers (one AVX-512, two AVX or four SSE
// registers).
constexpr int64_t kLanes = 16;
constexpr int64_t kVecs = kTile / kLanes;
constexpr int64_t kUnits = 4;  // hidden units of the second layer accumulated at once (kUnits x kVecs registers)
// (may_alias: the tiles are also written as floats).
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float)), may_alias));
// splat(c): every lane c; relu: NaN stays NaN (the comparison is false), as torch.relu.
#define WEIGHTCAST_SPLAT(c) (Vec{} + (c))
#define WEIGHTCAST_RELU(a) ((a) < Vec{} ? Vec{} : (a))

// One hidden unit of a tile: out = relu(bias + sum_q row[q] in[q]) for each of the tile's elements. Inlined into
// every clone of mlp_tile, so it takes that clone's instruction set and contraction.
__attribute__((always_inline)) inline void relu_unit(float bias, const float* row, const Vec (*in)[kVecs], int64_t n,
                                                     Vec* out) {
  Vec acc[kVecs];
  for (int64_t v = 0; v < kVecs; ++v) acc[v] = WEIGHTCAST_SPLAT(bias);
  for (int64_t q = 0; q < n; ++q) {
    const Vec c = WEIGHTCAST_SPLAT(row[q]);
    for (int64_t v = 0; v < kVecs; ++v) acc[v] += c * in[q][v];
  }
  for (int64_t v = 0; v < kVecs; ++v) out[v] = WEIGHTCAST_RELU(acc[v]);
}

// The MLP of one tile: features x[q] (q < W: d_1 .. d_{W-1}, z_{W-1}; kTile elements each) -> m[r] for every
// requested row, with the per-segment biases bias1 (H) and bias_out (R) already folded. The second layer (H x H,
// nearly all of the work) keeps the accumulators of kUnits hidden units (kUnits x kVecs vectors: 16 AVX-512
// registers) across its inner loop, so that the fused multiply-adds of independent chains overlap. Built for
// x86-64-v4 (AVX-512) and v3 (AVX2, FMA) too, the variant picked at load time (GCC function multi-versioning on
// x86-64 Linux); here, unlike the project's other kernels (-ffp-contract=off), multiply-adds may be fused: this
// op is compared with its reference within a tolerance, never bit for bit, and on v3/v4 machines (both FMA) it
// gives the same bits. On the 1M-parameter MLP of benchmarks/bench_nowcast_jump.py this took a jump from 166 to
// 95 ms (one thread, AVX-512 machine).
WEIGHTCAST_TILE_TARGETS
void mlp_tile(const Vec (*x)[kVecs], const NowcastLayout& l, const float* mlp, const float* bias1,
              const int64_t* rows, const float* bias_out, int64_t num_rows, Vec (*m)[kVecs]) {
  const int64_t w = l.w, hidden = l.h, fe = l.f + l.e;
  const float* w1 = mlp + l.w1;
  const float* w2 = mlp + l.w2;
  const float* b2 = mlp + l.b2;
  Vec h1[kNowcastMaxHidden][kVecs];
  Vec h2[kNowcastMaxHidden][kVecs];
  for (int64_t j = 0; j < hidden; ++j) relu_unit(bias1[j], w1 + j * fe, x, w, h1[j]);
  int64_t j = 0;
  for (; j + kUnits <= hidden; j += kUnits) {
    Vec a[kUnits][kVecs];
    for (int64_t u = 0; u < kUnits; ++u)
      for (int64_t v = 0; v < kVecs; ++v) a[u][v] = WEIGHTCAST_SPLAT(b2[j + u]);
    for (int64_t q = 0; q < hidden; ++q) {
      Vec c[kUnits];
      for (int64_t u = 0; u < kUnits; ++u) c[u] = WEIGHTCAST_SPLAT(w2[(j + u) * hidden + q]);
      for (int64_t v = 0; v < kVecs; ++v) {
        const Vec hq = h1[q][v];
        for (int64_t u = 0; u < kUnits; ++u) a[u][v] += c[u] * hq;
      }
    }
    for (int64_t u = 0; u < kUnits; ++u)
      for (int64_t v = 0; v < kVecs; ++v) h2[j + u][v] = WEIGHTCAST_RELU(a[u][v]);
  }
  for (; j < hidden; ++j) relu_unit(b2[j], w2 + j * hidden, h1, hidden, h2[j]);
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* w3 = mlp + l.w3 + rows[r] * hidden;
    const float* skip = mlp + l.skip + rows[r] * l.f;
    Vec acc[kVecs];
    for (int64_t v = 0; v < kVecs; ++v) acc[v] = WEIGHTCAST_SPLAT(bias_out[r]);
    for (int64_t q = 0; q < hidden; ++q) {
      const Vec c = WEIGHTCAST_SPLAT(w3[q]);
      for (int64_t v = 0; v < kVecs; ++v) acc[v] += c * h2[q][v];
    }
    for (int64_t q = 0; q < w; ++q) {
      const Vec c = WEIGHTCAST_SPLAT(skip[q]);
      for (int64_t v = 0; v < kVecs; ++v) acc[v] += c * x[q][v];
    }
    for (int64_t v = 0; v < kVecs; ++v) m[r][v] = acc[v];
  }
}

}  // namespace
}  // namespace cpu
}  // namespace weightcast_c
