// The CPU kernel bodies, written once on vectors of WEIGHTCAST_SIMD_LANES
// float32 lanes (GCC/Clang vector extensions) and compiled once per
// instruction set: kernels_generic.cpp includes this file with 4 lanes
// (16-byte vectors: SSE2, NEON), kernels_avx2.cpp with 8 lanes under a
// target("avx2,f16c") pragma, where WEIGHTCAST_SIMD_AVX2=1 also lets the
// float16 and bfloat16 loads and stores use x86 intrinsics (F16C conversions:
// same results, NaN payloads aside).
// Everything here has internal linkage (anonymous namespace), so the copies
// built for different instruction sets never mix at link time; and it calls
// nothing but its own functions, memcpy and compiler intrinsics (which are
// never emitted as functions), for the same reason. Include here only <cstdint>,
// <cstring> (before any target pragma) and <immintrin.h>.
//
// Numerics: float16 and bfloat16 are converted by exact bit manipulation
// (widening is exact; narrowing rounds to nearest even, overflows to inf,
// keeps NaN a NaN), identical to torch's copy_. lincomb evaluates the
// difference form c0 * h0 + sum_{k>=1} ck * (hk - h0) in float32, in slot
// order, with the multiplies and adds of weightcast/ops/reference.py and no
// contraction into FMA: every instruction set gives the reference's bits.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels.h"

#if WEIGHTCAST_SIMD_AVX2
#include <immintrin.h>
#endif

namespace weightcast_c::cpu {
namespace {

#ifndef WEIGHTCAST_SIMD_LANES
#error "define WEIGHTCAST_SIMD_LANES (4 or 8 float32 lanes per vector) before including simd.h"
#endif

constexpr int64_t kLanes = WEIGHTCAST_SIMD_LANES;
typedef float f32v __attribute__((vector_size(4 * WEIGHTCAST_SIMD_LANES)));
typedef uint32_t u32v __attribute__((vector_size(4 * WEIGHTCAST_SIMD_LANES)));
typedef int32_t i32v __attribute__((vector_size(4 * WEIGHTCAST_SIMD_LANES)));
typedef uint16_t u16v __attribute__((vector_size(2 * WEIGHTCAST_SIMD_LANES)));
static_assert(!WEIGHTCAST_SIMD_AVX2 || kLanes == 8, "the AVX2 intrinsics take 8 lanes");
constexpr int64_t kTile = 256;  // lincomb: columns whose float32 h_0 and sums stay in L1 while the rows stream by

template <int F>
struct Storage {
  using type = uint16_t;  // float16, bfloat16: the bit pattern
};
template <>
struct Storage<kF32> {
  using type = float;
};

// Sign-cleared bit pattern in format F: the NaN-aware absmax key.
template <int F>
constexpr uint32_t kAbsMask = F == kF32 ? 0x7fffffffu : 0x7fffu;

inline u32v splat(uint32_t x) { return u32v{} + x; }

// a where mask (a comparison result) is set, else b.
inline u32v select(i32v mask, u32v a, u32v b) {
  const u32v m = (u32v)mask;
  return (a & m) | (b & ~m);
}

// The kLanes elements at p as their bit patterns, widened to 32 bits.
template <int F>
inline u32v load_bits(const void* p) {
  if constexpr (F == kF32) {
    u32v v;
    std::memcpy(&v, p, sizeof v);
    return v;
  } else {
    u16v h;
    std::memcpy(&h, p, sizeof h);
    return __builtin_convertvector(h, u32v);
  }
}

template <int F>
inline void store_bits(void* p, u32v v) {
  if constexpr (F == kF32) {
    std::memcpy(p, &v, sizeof v);
  } else {
    const u16v h = __builtin_convertvector(v, u16v);
    std::memcpy(p, &h, sizeof h);
  }
}

// Bit patterns of format F -> float32 values (exact).
template <int F>
inline f32v decode(u32v b) {
  if constexpr (F == kF32) {
    return (f32v)b;
  } else if constexpr (F == kBF16) {
    return (f32v)(b << 16);
  } else {
#if WEIGHTCAST_SIMD_AVX2
    const u16v h = __builtin_convertvector(b, u16v);
    __m128i m;
    std::memcpy(&m, &h, sizeof m);
    return (f32v)_mm256_cvtph_ps(m);
#else
    const u32v sign = (b & 0x8000u) << 16;
    const u32v em = b & 0x7fffu;                      // exponent and mantissa
    const u32v normal = (em << 13) + (112u << 23);    // exponent bias 15 -> 127
    const u32v infnan = normal + (112u << 23);        // exponent 31 -> 255
    const u32v sub = (u32v)(__builtin_convertvector((i32v)em, f32v) * 0x1p-24f);  // subnormal: em * 2^-24
    return (f32v)(sign | select(em >= 0x7c00u, infnan, select(em >= 0x0400u, normal, sub)));
#endif
  }
}

// float32 values -> bit patterns of format F, rounding to nearest even.
template <int F>
inline u32v encode(f32v x) {
  const u32v u = (u32v)x;
  if constexpr (F == kF32) {
    return u;
  } else if constexpr (F == kBF16) {
    const u32v rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return select((u & 0x7fffffffu) > 0x7f800000u, splat(0x7fc0u), rounded);  // NaN stays a (quiet) NaN
  } else {
#if WEIGHTCAST_SIMD_AVX2
    const __m128i m = _mm256_cvtps_ph((__m256)x, _MM_FROUND_TO_NEAREST_INT);
    u16v h;
    std::memcpy(&h, &m, sizeof h);
    return __builtin_convertvector(h, u32v);
#else
    const u32v sign = (u >> 16) & 0x8000u;
    const u32v a = u & 0x7fffffffu;
    const u32v r = a - (112u << 23);                              // exponent bias 127 -> 15
    const u32v normal = (r + 0x0fffu + ((r >> 13) & 1u)) >> 13;   // round off 13 mantissa bits
    const u32v sub = (u32v)((f32v)a + 0.5f) - 0x3f000000u;      // |x| / 2^-24, rounded by the FPU
    u32v h = select(a >= 0x38800000u, normal, sub);               // |x| >= 2^-14: a normal half
    h = select(a >= 0x477ff000u, splat(0x7c00u), h);               // rounds to >= 2^16: inf
    h = select(a > 0x7f800000u, splat(0x7e00u), h);                // NaN
    return sign | h;
#endif
  }
}

// The kLanes values at p as float32, and their store in format F (with AVX2,
// straight from and to memory, without the generic widening of the bits).
template <int F>
inline f32v load(const void* p) {
#if WEIGHTCAST_SIMD_AVX2
  if constexpr (F != kF32) {
    __m128i m;
    std::memcpy(&m, p, sizeof m);
    if constexpr (F == kF16) return (f32v)_mm256_cvtph_ps(m);
    return (f32v)_mm256_slli_epi32(_mm256_cvtepu16_epi32(m), 16);
  }
#endif
  return decode<F>(load_bits<F>(p));
}

template <int F>
inline void store(void* p, f32v x) {
#if WEIGHTCAST_SIMD_AVX2
  if constexpr (F == kF16) {
    const __m128i m = _mm256_cvtps_ph((__m256)x, _MM_FROUND_TO_NEAREST_INT);
    std::memcpy(p, &m, sizeof m);
    return;
  }
#endif
  store_bits<F>(p, encode<F>(x));
}

template <int S, int D>
uint32_t record_range(const void* src, void* dst, int64_t begin, int64_t end) {
  using ST = typename Storage<S>::type;
  using DT = typename Storage<D>::type;
  const ST* s = static_cast<const ST*>(src) + begin;
  DT* d = static_cast<DT*>(dst) + begin;
  const int64_t n = end - begin;
  u32v m{};
  auto step = [&m](const void* sp, void* dp) {
    const u32v in = load_bits<S>(sp);
    u32v out;
    if constexpr (S == D) {
      out = in;  // a plain copy keeps every bit, NaN payloads included
    } else {
      out = encode<D>(decode<S>(in));
    }
    store_bits<D>(dp, out);
    const u32v key = out & kAbsMask<D>;
    m = select(key > m, key, m);
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) step(s + i, d + i);
  if (i < n) {  // the tail, through zero-padded buffers (a zero never raises the max)
    ST sb[kLanes] = {};
    DT db[kLanes];
    std::memcpy(sb, s + i, static_cast<size_t>(n - i) * sizeof(ST));
    step(sb, db);
    std::memcpy(d + i, db, static_cast<size_t>(n - i) * sizeof(DT));
  }
  uint32_t r = 0;
  for (int l = 0; l < kLanes; ++l) r = m[l] > r ? m[l] : r;
  return r;
}

// c[0] * h_0 + sum_{k>=1} c[k] * (h_k - h_0) over the w rows h_k of the kLanes columns at p (rows `stride` apart).
template <int H>
inline f32v combine_lanes(const typename Storage<H>::type* p, int64_t stride, const float* c, int64_t w) {
  const f32v base = load<H>(p);
  f32v acc = base * c[0];
  for (int64_t k = 1; k < w; ++k) acc += (load<H>(p + k * stride) - base) * c[k];
  return acc;
}

template <int H, int O>
void lincomb_range(void* out, const void* history, int64_t n, const float* c, int64_t w, int64_t begin,
                   int64_t end) {
  using HT = typename Storage<H>::type;
  using OT = typename Storage<O>::type;
  constexpr int64_t kVecs = kTile / kLanes;
  const HT* h = static_cast<const HT*>(history);
  OT* o = static_cast<OT*>(out);
  f32v base[kVecs], acc[kVecs];
  int64_t t = begin;
  for (; t + kTile <= end; t += kTile) {  // full tiles: each row streams through the L1-resident sums
    for (int64_t b = 0; b < kVecs; ++b) {
      base[b] = load<H>(h + t + b * kLanes);
      acc[b] = base[b] * c[0];
    }
    for (int64_t k = 1; k < w; ++k) {
      const HT* hk = h + k * n + t;
      const float ck = c[k];
      for (int64_t b = 0; b < kVecs; ++b) acc[b] += (load<H>(hk + b * kLanes) - base[b]) * ck;
    }
    for (int64_t b = 0; b < kVecs; ++b) store<O>(o + t + b * kLanes, acc[b]);
  }
  for (; t + kLanes <= end; t += kLanes) store<O>(o + t, combine_lanes<H>(h + t, n, c, w));
  if (t < end) {  // the last < kLanes columns, through a zero-padded copy
    const size_t rem = static_cast<size_t>(end - t);
    HT hb[kMaxRows * kLanes] = {};
    for (int64_t k = 0; k < w; ++k) std::memcpy(hb + k * kLanes, h + k * n + t, rem * sizeof(HT));
    OT ob[kLanes];
    store<O>(ob, combine_lanes<H>(hb, kLanes, c, w));
    std::memcpy(o + t, ob, rem * sizeof(OT));
  }
}

template <int S, int D>
constexpr RecordFn record_fn() {
  return &record_range<S, D>;
}
template <int H, int O>
constexpr LincombFn lincomb_fn() {
  return &lincomb_range<H, O>;
}

constexpr KernelTable make_table(const char* isa) {
  return {isa,
          {{record_fn<0, 0>(), record_fn<0, 1>(), record_fn<0, 2>()},
           {record_fn<1, 0>(), record_fn<1, 1>(), record_fn<1, 2>()},
           {record_fn<2, 0>(), record_fn<2, 1>(), record_fn<2, 2>()}},
          {{lincomb_fn<0, 0>(), lincomb_fn<0, 1>(), lincomb_fn<0, 2>()},
           {lincomb_fn<1, 0>(), lincomb_fn<1, 1>(), lincomb_fn<1, 2>()},
           {lincomb_fn<2, 0>(), lincomb_fn<2, 1>(), lincomb_fn<2, 2>()}}};
}

}  // namespace
}  // namespace weightcast_c::cpu
