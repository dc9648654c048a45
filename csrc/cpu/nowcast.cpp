// weightcast_C::nowcast_forecast (schema, argument check, CPU and Meta kernels) and
// weightcast_C::nowcast_limits (the kNowcast* limits of limits.h).
//
// For each segment s (a parameter tensor: columns offsets[s] .. offsets[s] + numels[s] of the
// history, n = numels[s]) with v_k = float32(history[order[k], i]) (chronological, k = 0..W-1):
//   pass 1 (reduction over the W x n values): mu = mean v, sigma = max(std v (population), eps),
//          s = max(mean_i |v_{W-1} - v_0| / sigma / (W - 1), eps)   (double accumulation, then float32)
//   pass 2 (per element): z_k = (v_k - mu) / sigma, d_k = clamp((z_k - z_{k-1}) / s, +-20) (k >= 1),
//          features x = [d_1 .. d_{W-1}, z_{W-1}, log s], e = type_embed[types[s]],
//          h1 = relu(w1 [x, e] + b1), h2 = relu(w2 h1 + b2),
//          m_r = w3[rows[r]] . h2 + b3[rows[r]] + skip[rows[r]] . x,
//          out[r, i] = convert(mu + sigma (z_{W-1} + s m_r))          for every requested row r
// in float32. The per-segment constants (log s and the type embedding through w1, log s through
// skip) are folded into the biases once per work item. Work items are (segment, chunk) pairs
// (the multi-tensor pattern of work_items.h), run by at::parallel_for; the reduction's partial
// sums are combined in item order, so the result does not depend on the number of threads.
// Each item is walked in tiles of kTile elements so that the loops over a tile vectorise.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../nowcast.h"
#include "nowcast_tile.h"
#include "../weightcast.h"

namespace weightcast_c {

void check_nowcast(const at::Tensor& out, const at::Tensor& history, at::IntArrayRef order, at::IntArrayRef offsets,
                   at::IntArrayRef numels, at::IntArrayRef types, at::IntArrayRef rows, const at::Tensor& mlp,
                   int64_t hidden, int64_t embed, int64_t k_max) {
  constexpr const char* op = "weightcast_C::nowcast_forecast: ";
  auto kernel_dtype = [](const at::Tensor& t) {
    return t.scalar_type() == at::kFloat || t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16;
  };
  TORCH_CHECK(kernel_dtype(out) && kernel_dtype(history), op, "out and history must be float32, float16 or bfloat16, "
              "got ", out.scalar_type(), " and ", history.scalar_type(),
              " (other dtypes run on the reference backend)");
  TORCH_CHECK(out.dim() == 2 && history.dim() == 2 && out.is_contiguous() && history.is_contiguous(), op,
              "out (R, N) and history (W, N) must be 2-D and contiguous, got ", out.sizes(), " and ", history.sizes());
  const int64_t w = history.size(0), n = history.size(1);
  TORCH_CHECK(w >= 2 && w <= kNowcastMaxWindow, op, "the window must be in [2, ", kNowcastMaxWindow, "], got ", w);
  TORCH_CHECK(hidden >= 1 && hidden <= kNowcastMaxHidden, op, "hidden must be in [1, ", kNowcastMaxHidden, "], got ",
              hidden, " (wider models run on the reference backend)");
  TORCH_CHECK(embed >= 0 && embed <= kNowcastMaxEmbed, op, "embed must be in [0, ", kNowcastMaxEmbed, "], got ", embed);
  TORCH_CHECK(k_max >= 1 && k_max <= kNowcastMaxHorizons, op, "k_max must be in [1, ", kNowcastMaxHorizons, "], got ",
              k_max);
  TORCH_CHECK(!rows.empty() && out.size(0) == static_cast<int64_t>(rows.size()) && out.size(1) == n, op,
              "out must be (", rows.size(), ", ", n, ") for ", rows.size(), " rows and history ", history.sizes(),
              ", got ", out.sizes());
  for (int64_t r : rows) TORCH_CHECK(r >= 0 && r < k_max, op, "rows must be in [0, ", k_max, "), got ", r);
  TORCH_CHECK(static_cast<int64_t>(order.size()) == w, op, "order must have ", w, " entries, got ", order.size());
  std::vector<bool> seen(w, false);
  for (int64_t k : order) {
    TORCH_CHECK(k >= 0 && k < w && !seen[k], op, "order must be a permutation of 0..", w - 1, ", got ", order);
    seen[k] = true;
  }
  TORCH_CHECK(offsets.size() == numels.size() && offsets.size() == types.size(), op,
              "offsets, numels and types must have one entry per segment, got ", offsets.size(), ", ", numels.size(),
              " and ", types.size());
  int64_t end = 0;
  for (size_t s = 0; s < offsets.size(); ++s) {
    TORCH_CHECK(offsets[s] >= end && numels[s] >= 0 && offsets[s] + numels[s] <= n, op, "segment ", s, " (offset ",
                offsets[s], ", numel ", numels[s], ") must lie in a history row of ", n,
                " columns after the previous one");
    TORCH_CHECK(types[s] >= 0 && types[s] < kNowcastNumTypes, op, "types must be in [0, ", kNowcastNumTypes, "), got ",
                types[s]);
    end = offsets[s] + numels[s];
  }
  const int64_t numel = nowcast_layout(w, hidden, embed, k_max).numel;
  TORCH_CHECK(mlp.scalar_type() == at::kFloat && mlp.dim() == 1 && mlp.numel() == numel && mlp.is_contiguous(), op,
              "mlp must be contiguous float32 of ", numel, " values for W = ", w, ", hidden = ", hidden, ", embed = ",
              embed, ", k_max = ", k_max, ", got ", mlp.scalar_type(), " ", mlp.sizes());
  TORCH_CHECK(history.device() == out.device() && mlp.device() == out.device(), op,
              "all tensors must be on one device, got ", out.device(), ", ", history.device(), " and ", mlp.device());
  if (!out.is_meta() && out.numel() > 0 && history.numel() > 0) {
    const auto o0 = reinterpret_cast<uintptr_t>(out.data_ptr());
    const auto h0 = reinterpret_cast<uintptr_t>(history.data_ptr());
    TORCH_CHECK(o0 + out.nbytes() <= h0 || h0 + history.nbytes() <= o0, op, "out must not overlap history");
  }
}

namespace cpu {
namespace {

constexpr int64_t kStatsChunk = int64_t{1} << 14;
constexpr int64_t kElementChunk = int64_t{1} << 11;

struct Item {
  int64_t segment;
  int64_t begin;  // history columns
  int64_t end;
};

std::vector<Item> items_of(at::IntArrayRef offsets, at::IntArrayRef numels, int64_t chunk) {
  std::vector<Item> items;
  for (size_t s = 0; s < offsets.size(); ++s) {
    for (int64_t b = 0; b < numels[s]; b += chunk) {
      items.push_back({static_cast<int64_t>(s), offsets[s] + b, offsets[s] + std::min(b + chunk, numels[s])});
    }
  }
  return items;
}

// Independent double accumulators per reduction (so that the loops vectorise), summed in a fixed order.
constexpr int64_t kSumLanes = 8;

inline double lane_sum(const double* lanes) {
  double total = 0.0;
  for (int64_t u = 0; u < kSumLanes; ++u) total += lanes[u];
  return total;
}

// Per segment (mu, sigma, s) as float32 (pass 1 of the header comment).
template <typename H>
std::vector<float> window_stats(const H* history, int64_t w, int64_t n, const int64_t* order, at::IntArrayRef offsets,
                                at::IntArrayRef numels) {
  const auto items = items_of(offsets, numels, kStatsChunk);
  const int64_t count = static_cast<int64_t>(items.size());
  std::vector<double> sum(count), sq(count), moved(count);
  at::parallel_for(0, count, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t it = lo; it < hi; ++it) {
      double acc[kSumLanes] = {};
      for (int64_t k = 0; k < w; ++k) {
        const H* row = history + k * n;
        int64_t i = items[it].begin;
        for (; i + kSumLanes <= items[it].end; i += kSumLanes)
          for (int64_t u = 0; u < kSumLanes; ++u) acc[u] += static_cast<float>(row[i + u]);
        for (; i < items[it].end; ++i) acc[0] += static_cast<float>(row[i]);
      }
      sum[it] = lane_sum(acc);
    }
  });
  const int64_t segments = static_cast<int64_t>(offsets.size());
  std::vector<double> mean(segments, 0.0), var(segments, 0.0), step(segments, 0.0);
  for (int64_t it = 0; it < count; ++it) mean[items[it].segment] += sum[it];
  for (int64_t s = 0; s < segments; ++s) mean[s] /= static_cast<double>(w * std::max<int64_t>(numels[s], 1));
  const H* first = history + order[0] * n;
  const H* last = history + order[w - 1] * n;
  at::parallel_for(0, count, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t it = lo; it < hi; ++it) {
      const double mu = mean[items[it].segment];
      double acc[kSumLanes] = {}, dist[kSumLanes] = {};
      const int64_t b = items[it].begin, e = items[it].end;
      auto deviation = [&](const H* row, int64_t i) {
        const double dv = static_cast<double>(static_cast<float>(row[i])) - mu;
        return dv * dv;
      };
      auto moved_by = [&](int64_t i) {
        return std::fabs(static_cast<double>(static_cast<float>(last[i])) - static_cast<float>(first[i]));
      };
      for (int64_t k = 0; k < w; ++k) {
        const H* row = history + k * n;
        int64_t i = b;
        for (; i + kSumLanes <= e; i += kSumLanes)
          for (int64_t u = 0; u < kSumLanes; ++u) acc[u] += deviation(row, i + u);
        for (; i < e; ++i) acc[0] += deviation(row, i);
      }
      int64_t i = b;
      for (; i + kSumLanes <= e; i += kSumLanes)
        for (int64_t u = 0; u < kSumLanes; ++u) dist[u] += moved_by(i + u);
      for (; i < e; ++i) dist[0] += moved_by(i);
      sq[it] = lane_sum(acc);
      moved[it] = lane_sum(dist);
    }
  });
  for (int64_t it = 0; it < count; ++it) {
    var[items[it].segment] += sq[it];
    step[items[it].segment] += moved[it];
  }
  std::vector<float> stats(3 * segments);
  for (int64_t s = 0; s < segments; ++s) {
    const double len = static_cast<double>(std::max<int64_t>(numels[s], 1));
    const float mu = static_cast<float>(mean[s]);
    const float sigma = std::max(static_cast<float>(std::sqrt(var[s] / (w * len))), kNowcastEps);
    const float scale = static_cast<float>(step[s] / len / sigma / (w - 1));
    stats[3 * s] = mu;
    stats[3 * s + 1] = sigma;
    stats[3 * s + 2] = std::isnan(scale) ? scale : std::max(scale, kNowcastEps);
  }
  return stats;
}

inline float clamp_d(float x) {  // NaN stays NaN, as torch.clamp
  return x < -kNowcastDClamp ? -kNowcastDClamp : (x > kNowcastDClamp ? kNowcastDClamp : x);
}

inline float relu(float x) { return x < 0.0f ? 0.0f : x; }  // NaN stays NaN, as torch.relu

// Pass 2 over the columns [begin, end) of one segment.
template <typename H, typename O>
void forecast_item(O* out, const H* history, int64_t n, const int64_t* order, const NowcastLayout& l, const float* mlp,
                   int64_t type, const float* stats, const int64_t* rows, int64_t num_rows, int64_t begin,
                   int64_t end) {
  const int64_t w = l.w, hidden = l.h, fe = l.f + l.e;
  const float mu = stats[0], sigma = stats[1], scale = stats[2], log_s = std::log(scale);
  const float* w1 = mlp + l.w1;
  const float* embedding = mlp + l.embed + type * l.e;
  float bias1[kNowcastMaxHidden];
  for (int64_t j = 0; j < hidden; ++j) {
    float acc = mlp[l.b1 + j] + w1[j * fe + w] * log_s;
    for (int64_t q = 0; q < l.e; ++q) acc += w1[j * fe + l.f + q] * embedding[q];
    bias1[j] = acc;
  }
  float bias_out[kNowcastMaxHorizons];
  for (int64_t r = 0; r < num_rows; ++r) bias_out[r] = mlp[l.b3 + rows[r]] + mlp[l.skip + rows[r] * l.f + w] * log_s;
  Vec xv[kNowcastMaxWindow][kVecs];  // features d_1 .. d_{W-1}, z_{W-1}
  Vec mv[kNowcastMaxHorizons][kVecs];
  float* const x = reinterpret_cast<float*>(xv);  // x[q * kTile + t]
  const float* const m = reinterpret_cast<const float*>(mv);
  for (int64_t i0 = begin; i0 < end; i0 += kTile) {
    const int64_t len = std::min(kTile, end - i0);
    float prev[kTile];
    {
      const H* row = history + order[0] * n + i0;
      for (int64_t t = 0; t < kTile; ++t) prev[t] = ((t < len ? static_cast<float>(row[t]) : mu) - mu) / sigma;
    }
    for (int64_t k = 1; k < w; ++k) {
      const H* row = history + order[k] * n + i0;
      for (int64_t t = 0; t < kTile; ++t) {
        const float z = ((t < len ? static_cast<float>(row[t]) : mu) - mu) / sigma;
        x[(k - 1) * kTile + t] = clamp_d((z - prev[t]) / scale);
        prev[t] = z;
      }
    }
    for (int64_t t = 0; t < kTile; ++t) x[(w - 1) * kTile + t] = prev[t];
    mlp_tile(xv, l, mlp, bias1, rows, bias_out, num_rows, mv);
    for (int64_t r = 0; r < num_rows; ++r) {
      O* dst = out + r * n + i0;
      for (int64_t t = 0; t < len; ++t) {
        dst[t] = static_cast<O>(mu + sigma * (x[(w - 1) * kTile + t] + scale * m[r * kTile + t]));
      }
    }
  }
}

void nowcast_cpu(const at::Tensor& out, const at::Tensor& history, at::IntArrayRef order, at::IntArrayRef offsets,
                 at::IntArrayRef numels, at::IntArrayRef types, at::IntArrayRef rows, const at::Tensor& mlp,
                 int64_t hidden, int64_t embed, int64_t k_max) {
  check_nowcast(out, history, order, offsets, numels, types, rows, mlp, hidden, embed, k_max);
  const int64_t w = history.size(0), n = history.size(1);
  const NowcastLayout layout = nowcast_layout(w, hidden, embed, k_max);
  const auto items = items_of(offsets, numels, kElementChunk);
  WEIGHTCAST_DISPATCH(history.scalar_type(), "nowcast_forecast", [&] {
    using H = scalar_t;
    const H* h = history.const_data_ptr<H>();
    const std::vector<float> stats = window_stats<H>(h, w, n, order.data(), offsets, numels);
    WEIGHTCAST_DISPATCH(out.scalar_type(), "nowcast_forecast", [&] {
      using O = scalar_t;
      O* o = out.mutable_data_ptr<O>();
      at::parallel_for(0, static_cast<int64_t>(items.size()), 1, [&](int64_t lo, int64_t hi) {
        for (int64_t it = lo; it < hi; ++it) {
          const int64_t s = items[it].segment;
          forecast_item<H, O>(o, h, n, order.data(), layout, mlp.const_data_ptr<float>(), types[s], &stats[3 * s],
                              rows.data(), static_cast<int64_t>(rows.size()), items[it].begin, items[it].end);
        }
      });
    });
  });
}

void nowcast_meta(const at::Tensor& out, const at::Tensor& history, at::IntArrayRef order, at::IntArrayRef offsets,
                  at::IntArrayRef numels, at::IntArrayRef types, at::IntArrayRef rows, const at::Tensor& mlp,
                  int64_t hidden, int64_t embed, int64_t k_max) {
  check_nowcast(out, history, order, offsets, numels, types, rows, mlp, hidden, embed, k_max);
}

std::vector<int64_t> nowcast_limits() {
  return {kNowcastMaxWindow, kNowcastMaxHidden, kNowcastMaxEmbed, kNowcastMaxHorizons, kNowcastNumTypes};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(weightcast_C, m) {
  m.def("nowcast_forecast(Tensor(a!) out, Tensor history, int[] order, int[] offsets, int[] numels, int[] types, "
        "int[] rows, Tensor mlp, int hidden, int embed, int k_max) -> ()");
  // (max window, max hidden, max embed, max k_max, number of parameter types): limits.h
  m.def("nowcast_limits() -> int[]", &nowcast_limits);
}

TORCH_LIBRARY_IMPL(weightcast_C, CPU, m) { m.impl("nowcast_forecast", &nowcast_cpu); }

TORCH_LIBRARY_IMPL(weightcast_C, Meta, m) { m.impl("nowcast_forecast", &nowcast_meta); }

}  // namespace cpu
}  // namespace weightcast_c
