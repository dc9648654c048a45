// weightcast_C::generate_write: the slimmable weight generator's output layer, scaled and written in place
// (numerics: weightcast/slim/ops.py, whose reference is the oracle).
//   out[k, j] = (accumulate ? out[k, j] : 0) + scale * (sum_h hidden[k, h] * weight[j, h] + bias[j])
// out (K, T), hidden (K, H), weight (T, H), bias (T,) or None: contiguous float32 CPU tensors.
// Threads: at::parallel_for over blocks of rows k. Per row the products are accumulated in float32 in h order,
// with the loop over the outputs j innermost on the transposed weight, so the compiler vectorises it.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

namespace weightcast_c::cpu {
namespace {

constexpr int64_t kGrainRows = 64;

void check_f32(const at::Tensor& t, const char* label) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous() && t.device().is_cpu(),
              "weightcast_C::generate_write: ", label, " must be a contiguous float32 CPU tensor, got ",
              t.scalar_type(), " on ", t.device(), " (contiguous=", t.is_contiguous(), ")");
}

void generate_write_cpu(const at::Tensor& out, const at::Tensor& hidden, const at::Tensor& weight,
                        const std::optional<at::Tensor>& bias, double scale, bool accumulate) {
  check_f32(out, "out");
  check_f32(hidden, "hidden");
  check_f32(weight, "weight");
  TORCH_CHECK(out.dim() == 2 && hidden.dim() == 2 && weight.dim() == 2 && hidden.size(0) == out.size(0) &&
                  weight.size(0) == out.size(1) && weight.size(1) == hidden.size(1),
              "weightcast_C::generate_write: out (K, T), hidden (K, H) and weight (T, H) do not match: out ",
              out.sizes(), ", hidden ", hidden.sizes(), ", weight ", weight.sizes());
  if (bias.has_value()) {
    check_f32(*bias, "bias");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == out.size(1), "weightcast_C::generate_write: bias must be (",
                out.size(1), ",), got ", bias->sizes());
  }
  const int64_t K = out.size(0), T = out.size(1), H = hidden.size(1);
  const at::Tensor weight_t = weight.t().contiguous();  // (H, T): the inner loop runs over j, contiguous
  float* o = out.mutable_data_ptr<float>();
  const float* g = hidden.const_data_ptr<float>();
  const float* __restrict__ w = weight_t.const_data_ptr<float>();
  const float* b = bias.has_value() ? bias->const_data_ptr<float>() : nullptr;
  const float s = static_cast<float>(scale);
  at::parallel_for(0, K, kGrainRows, [&](int64_t k0, int64_t k1) {
    std::vector<float> y(T);
    float* __restrict__ acc = y.data();
    for (int64_t k = k0; k < k1; ++k) {
      const float* gk = g + k * H;
      for (int64_t j = 0; j < T; ++j) acc[j] = 0.0f;
      for (int64_t h = 0; h < H; ++h) {
        const float gh = gk[h];
        const float* __restrict__ wh = w + h * T;
        for (int64_t j = 0; j < T; ++j) acc[j] += wh[j] * gh;
      }
      float* ok = o + k * T;
      for (int64_t j = 0; j < T; ++j) {
        const float v = (acc[j] + (b ? b[j] : 0.0f)) * s;
        ok[j] = accumulate ? ok[j] + v : v;
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(weightcast_C, m) {
  m.def("generate_write(Tensor(a!) out, Tensor hidden, Tensor weight, Tensor? bias, float scale, bool accumulate)"
        " -> ()");
}

TORCH_LIBRARY_IMPL(weightcast_C, CPU, m) { m.impl("generate_write", &generate_write_cpu); }

}  // namespace weightcast_c::cpu
