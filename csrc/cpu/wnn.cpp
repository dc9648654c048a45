// CPU op weightcast_C::wnn_forecast, its argument check and its Meta kernel.
//
// For element i of segment s (offsets[s] <= i < offsets[s+1]) with
// v_k = float32(history[order[k], i]) (chronological, k = 0..W-1) and
// stats[s] = (a, c, e, g):
//   x  = [v_k a + c (k < W), (v_k - v_{k-1}) e (1 <= k < W)]        F = 2W - 1
//   z1 = relu(W1 x + B1[kinds[s]]), z2 = relu(W2 z1 + b2)
//   out[i] = convert(v_{W-1} + g (w3 . z2 + b3))
// in float32. The N elements are split over threads (at::parallel_for); each
// thread walks its range in tiles of kTile elements of one segment, so the
// loops over the tile vectorise and the MLP weights stay in L1.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../weightcast.h"
#include "../wnn.h"

namespace weightcast_c {

void check_wnn(const at::Tensor& out, const at::Tensor& history, const at::Tensor& order,
               const at::Tensor& offsets, const at::Tensor& stats, const at::Tensor& kinds,
               const at::Tensor& mlp, int64_t hidden) {
  auto kernel_dtype = [](const at::Tensor& t) {
    return t.scalar_type() == at::kFloat || t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
  };
  TORCH_CHECK(kernel_dtype(out) && kernel_dtype(history), "weightcast_C::wnn_forecast: out and history must be float32, "
              "float16 or bfloat16, got ", out.scalar_type(), " and ", history.scalar_type(),
              " (other dtypes run on the reference backend)");
  TORCH_CHECK(out.dim() == 1 && history.dim() == 2 && out.is_contiguous() && history.is_contiguous(),
              "weightcast_C::wnn_forecast: out must be 1-D and history 2-D, both contiguous; got ", out.sizes(), " and ",
              history.sizes());
  const int64_t w = history.size(0);
  TORCH_CHECK(w >= 2 && w <= kWnnMaxWindow, "weightcast_C::wnn_forecast: the window must be in [2, ", kWnnMaxWindow,
              "], got ", w);
  TORCH_CHECK(out.size(0) == history.size(1), "weightcast_C::wnn_forecast: out has ", out.size(0),
              " elements, history rows ", history.size(1));
  TORCH_CHECK(hidden >= 1 && hidden <= kWnnMaxHidden, "weightcast_C::wnn_forecast: hidden must be in [1, ", kWnnMaxHidden,
              "], got ", hidden, " (wider MLPs run on the reference backend)");
  TORCH_CHECK(order.scalar_type() == at::kLong && order.dim() == 1 && order.size(0) == w && order.is_contiguous(),
              "weightcast_C::wnn_forecast: order must be contiguous int64 (", w, ",)");
  TORCH_CHECK(offsets.scalar_type() == at::kLong && offsets.dim() == 1 && offsets.size(0) >= 2 &&
              offsets.is_contiguous(), "weightcast_C::wnn_forecast: offsets must be contiguous int64 (S + 1,) with S >= 1");
  const int64_t s = offsets.size(0) - 1;
  TORCH_CHECK(stats.scalar_type() == at::kFloat && stats.dim() == 2 && stats.size(0) == s && stats.size(1) == 4 &&
              stats.is_contiguous(), "weightcast_C::wnn_forecast: stats must be contiguous float32 (", s, ", 4), got ",
              stats.sizes());
  TORCH_CHECK(kinds.scalar_type() == at::kInt && kinds.dim() == 1 && kinds.size(0) == s && kinds.is_contiguous(),
              "weightcast_C::wnn_forecast: kinds must be contiguous int32 (", s, ",)");
  TORCH_CHECK(mlp.scalar_type() == at::kFloat && mlp.dim() == 1 && mlp.numel() == wnn_mlp_numel(w, hidden) &&
              mlp.is_contiguous(), "weightcast_C::wnn_forecast: mlp must be contiguous float32 of ", wnn_mlp_numel(w, hidden),
              " values, got ", mlp.sizes());
  for (const at::Tensor* t : {&history, &order, &offsets, &stats, &kinds, &mlp}) {
    TORCH_CHECK(t->device() == out.device(), "weightcast_C::wnn_forecast: all tensors must be on one device, got ",
                out.device(), " and ", t->device());
  }
  if (!out.is_meta() && out.numel() > 0) {
    const auto o0 = reinterpret_cast<uintptr_t>(out.data_ptr());
    const auto h0 = reinterpret_cast<uintptr_t>(history.data_ptr());
    TORCH_CHECK(o0 + out.nbytes() <= h0 || h0 + history.nbytes() <= o0,
                "weightcast_C::wnn_forecast: out must not overlap history");
  }
}

namespace cpu {
namespace {

constexpr int64_t kTile = 16;

template <typename H, typename O>
void wnn_range(O* out, const H* history, const int64_t* order, const int64_t* offsets, int64_t segments,
               const float* stats, const int32_t* kinds, const float* mlp, int64_t w, int64_t hidden, int64_t n,
               int64_t begin, int64_t end) {
  const int64_t f = 2 * w - 1;
  const float* w1 = mlp;
  const float* b1 = w1 + hidden * f;
  const float* w2 = b1 + kWnnKinds * hidden;
  const float* b2 = w2 + hidden * hidden;
  const float* w3 = b2 + hidden;
  const float b3 = w3[hidden];
  int64_t s = std::upper_bound(offsets, offsets + segments + 1, begin) - offsets - 1;
  float v[kWnnMaxWindow][kTile];
  float x[2 * kWnnMaxWindow][kTile];
  float z1[kWnnMaxHidden][kTile];
  float acc[kTile];
  for (int64_t i0 = begin; i0 < end;) {
    while (s < segments - 1 && i0 >= offsets[s + 1]) ++s;
    const int64_t len = std::min({kTile, end - i0, offsets[s + 1] - i0});
    const float a = stats[4 * s], c = stats[4 * s + 1], e = stats[4 * s + 2], g = stats[4 * s + 3];
    const float* bias1 = b1 + static_cast<int64_t>(kinds[s]) * hidden;
    for (int64_t k = 0; k < w; ++k) {
      const H* row = history + order[k] * n + i0;
      for (int64_t t = 0; t < kTile; ++t) v[k][t] = t < len ? static_cast<float>(row[t]) : 0.0f;
    }
    for (int64_t k = 0; k < w; ++k)
      for (int64_t t = 0; t < kTile; ++t) x[k][t] = v[k][t] * a + c;
    for (int64_t k = 1; k < w; ++k)
      for (int64_t t = 0; t < kTile; ++t) x[w + k - 1][t] = (v[k][t] - v[k - 1][t]) * e;
    for (int64_t j = 0; j < hidden; ++j) {
      float z[kTile];
      for (int64_t t = 0; t < kTile; ++t) z[t] = bias1[j];
      for (int64_t q = 0; q < f; ++q) {
        const float wq = w1[j * f + q];
        for (int64_t t = 0; t < kTile; ++t) z[t] += wq * x[q][t];
      }
      for (int64_t t = 0; t < kTile; ++t) z1[j][t] = std::max(z[t], 0.0f);
    }
    for (int64_t t = 0; t < kTile; ++t) acc[t] = b3;
    for (int64_t j = 0; j < hidden; ++j) {
      float z[kTile];
      for (int64_t t = 0; t < kTile; ++t) z[t] = b2[j];
      for (int64_t q = 0; q < hidden; ++q) {
        const float wq = w2[j * hidden + q];
        for (int64_t t = 0; t < kTile; ++t) z[t] += wq * z1[q][t];
      }
      for (int64_t t = 0; t < kTile; ++t) acc[t] += w3[j] * std::max(z[t], 0.0f);
    }
    for (int64_t t = 0; t < len; ++t) out[i0 + t] = static_cast<O>(v[w - 1][t] + g * acc[t]);
    i0 += len;
  }
}

void wnn_cpu(const at::Tensor& out, const at::Tensor& history, const at::Tensor& order, const at::Tensor& offsets,
             const at::Tensor& stats, const at::Tensor& kinds, const at::Tensor& mlp, int64_t hidden) {
  check_wnn(out, history, order, offsets, stats, kinds, mlp, hidden);
  const int64_t w = history.size(0), n = history.size(1), segments = offsets.size(0) - 1;
  WEIGHTCAST_DISPATCH(history.scalar_type(), "wnn", [&] {
    using H = scalar_t;
    WEIGHTCAST_DISPATCH(out.scalar_type(), "wnn", [&] {
      using O = scalar_t;
      O* o = out.mutable_data_ptr<O>();
      const H* h = history.const_data_ptr<H>();
      at::parallel_for(0, n, 1 << 12, [&](int64_t begin, int64_t end) {
        wnn_range<H, O>(o, h, order.const_data_ptr<int64_t>(), offsets.const_data_ptr<int64_t>(), segments,
                        stats.const_data_ptr<float>(), kinds.const_data_ptr<int32_t>(), mlp.const_data_ptr<float>(),
                        w, hidden, n, begin, end);
      });
    });
  });
}

void wnn_meta(const at::Tensor& out, const at::Tensor& history, const at::Tensor& order, const at::Tensor& offsets,
              const at::Tensor& stats, const at::Tensor& kinds, const at::Tensor& mlp, int64_t hidden) {
  check_wnn(out, history, order, offsets, stats, kinds, mlp, hidden);
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CPU, m) {
  m.impl("wnn_forecast", &wnn_cpu);
}

TORCH_LIBRARY_IMPL(weightcast_C, Meta, m) {
  m.impl("wnn_forecast", &wnn_meta);
}

}  // namespace cpu
}  // namespace weightcast_c
