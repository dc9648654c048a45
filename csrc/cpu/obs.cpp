// CPU op weightcast_C::obs_trace: the greedy loop of layer-wise Optimal Brain Surgeon (ExactOBS, Frantar &
// Alistarh, "Optimal Brain Compression", NeurIPS 2022), fused: select, weight update and inverse-Hessian downdate
// of every removal, one row per task. Reference and numerics: weightcast/prune/obs_kernel.py (obs_trace_ref).
//
//   obs_trace(Tensor W, Tensor Hinv, int steps) -> (Tensor order, Tensor losses, Tensor W_out)
//   W (R, d) float32, Hinv (d, d) float32 symmetric positive definite, 0 <= steps <= d. For each row r, with its
//   own copy of Hinv, `steps` times: j = argmin over unremoved columns of w_j^2 / Hinv_jj (the first on ties),
//   losses[r, t] = that minimum, order[r, t] = j, w -= (w_j / Hinv_jj) Hinv[:, j], w_j = 0,
//   Hinv -= Hinv[:, j] Hinv[j, :] / Hinv_jj. W_out (R, d) holds the rows after their `steps` removals.
//
// The row's inverse Hessian is kept compact: removed columns are dropped from it (a removed column of the
// downdated Hinv is zero), so a step costs (d - t)^2 multiply-adds on contiguous memory, and the downdate and the
// compaction are one pass. Rows run in parallel (at::parallel_for; torch.set_num_threads applies).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <limits>
#include <tuple>
#include <vector>

namespace weightcast_c::cpu {
namespace {

void check_obs_trace(const at::Tensor& W, const at::Tensor& Hinv, int64_t steps) {
  TORCH_CHECK(W.dim() == 2, "obs_trace: W must be 2-D (rows, d), got ", W.sizes());
  const int64_t d = W.size(1);
  TORCH_CHECK(Hinv.dim() == 2 && Hinv.size(0) == d && Hinv.size(1) == d, "obs_trace: Hinv must be (d, d) = (", d,
              ", ", d, "), got ", Hinv.sizes());
  TORCH_CHECK(W.scalar_type() == at::kFloat && Hinv.scalar_type() == at::kFloat,
              "obs_trace: W and Hinv must be float32 (other dtypes: the reference obs_trace_ref), got ",
              W.scalar_type(), " and ", Hinv.scalar_type());
  TORCH_CHECK(W.device() == Hinv.device(), "obs_trace: W and Hinv must be on one device");
  TORCH_CHECK(steps >= 0 && steps <= d, "obs_trace: steps must be in [0, d = ", d, "], got ", steps);
}

// One row: `steps` greedy removals; H is the row's private (d x d) copy of Hinv, overwritten.
void trace_row(float* w, float* H, int64_t d, int64_t steps, int64_t* order, float* losses, int64_t* index,
               float* col) {
  for (int64_t a = 0; a < d; ++a) index[a] = a;
  int64_t n = d;  // active columns: H is (n x n) with row stride n, wc the active weights, index their columns
  std::vector<float> wc(w, w + d);
  for (int64_t t = 0; t < steps; ++t) {
    int64_t p = 0;
    float best = std::numeric_limits<float>::infinity();
    for (int64_t a = 0; a < n; ++a) {
      const float s = wc[a] * wc[a] / H[a * n + a];
      if (s < best) {
        best = s;
        p = a;
      }
    }
    const float hpp = H[p * n + p];
    const float f = wc[p] / hpp;
    order[t] = index[p];
    losses[t] = best;
    const float* hp = H + p * n;
    for (int64_t a = 0; a < n; ++a) {
      col[a] = hp[a];
      wc[a] -= f * hp[a];
    }
    // downdate and compact in one forward pass: destination index <= source index, so in place is safe
    const int64_t m = n - 1;
    float* dst = H;
    for (int64_t a = 0; a < n; ++a) {
      if (a == p) continue;
      const float ca = col[a] / hpp;
      const float* src = H + a * n;
      for (int64_t b = 0; b < p; ++b) dst[b] = src[b] - ca * col[b];
      for (int64_t b = p + 1; b < n; ++b) dst[b - 1] = src[b] - ca * col[b];
      dst += m;
    }
    for (int64_t a = p; a < m; ++a) {
      wc[a] = wc[a + 1];
      index[a] = index[a + 1];
    }
    n = m;
  }
  for (int64_t a = 0; a < d; ++a) w[a] = 0.0f;
  for (int64_t a = 0; a < n; ++a) w[index[a]] = wc[a];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> obs_trace_cpu(const at::Tensor& W, const at::Tensor& Hinv,
                                                              int64_t steps) {
  check_obs_trace(W, Hinv, steps);
  const int64_t R = W.size(0), d = W.size(1);
  at::Tensor W_out = W.contiguous().clone();
  const at::Tensor H0 = Hinv.contiguous();
  at::Tensor order = at::empty({R, steps}, W.options().dtype(at::kLong));
  at::Tensor losses = at::empty({R, steps}, W.options());
  float* w_ptr = W_out.data_ptr<float>();
  const float* h_ptr = H0.const_data_ptr<float>();
  int64_t* o_ptr = order.data_ptr<int64_t>();
  float* l_ptr = losses.data_ptr<float>();
  at::parallel_for(0, R, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> H(static_cast<size_t>(d * d)), col(static_cast<size_t>(d));
    std::vector<int64_t> index(static_cast<size_t>(d));
    for (int64_t r = begin; r < end; ++r) {
      std::copy(h_ptr, h_ptr + d * d, H.begin());
      trace_row(w_ptr + r * d, H.data(), d, steps, o_ptr + r * steps, l_ptr + r * steps, index.data(), col.data());
    }
  });
  return {order, losses, W_out};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> obs_trace_meta(const at::Tensor& W, const at::Tensor& Hinv,
                                                               int64_t steps) {
  check_obs_trace(W, Hinv, steps);
  return {at::empty({W.size(0), steps}, W.options().dtype(at::kLong)), at::empty({W.size(0), steps}, W.options()),
          at::empty_like(W)};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(weightcast_C, m) {
  m.def("obs_trace(Tensor W, Tensor Hinv, int steps) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(weightcast_C, CPU, m) { m.impl("obs_trace", &obs_trace_cpu); }

TORCH_LIBRARY_IMPL(weightcast_C, Meta, m) { m.impl("obs_trace", &obs_trace_meta); }

}  // namespace weightcast_c::cpu
