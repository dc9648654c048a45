// CPU kernels of weightcast_C::tokenize_encode and weightcast_C::decode_overwrite (numerics in ../latent.h).
// Tokens are read through their spans (start, count, bias): padding slots are skipped, not multiplied by 0.
// Threads: at::parallel_for over blocks of tokens. Per token, the products are accumulated in float32 in index
// order (j for the encoder, h for the decoder) with the loop over the outputs innermost, on the transposed
// weight, so that the compiler vectorises it without reordering any sum.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../latent.h"

namespace weightcast_c::cpu {
namespace {

constexpr int64_t kGrainTokens = 64;

at::Tensor tokenize_encode_cpu(const at::Tensor& flat, const at::Tensor& spans, const at::Tensor& scale,
                               const at::Tensor& weight, const at::Tensor& bias) {
  check_tokenize_encode(flat, spans, scale, weight, bias);
  const int64_t K = spans.size(0), H = weight.size(0);
  at::Tensor out = at::empty({K, H}, flat.options());
  const at::Tensor weight_t = weight.t().contiguous();  // (T, H): the inner loop runs over h, contiguous
  const float* f = flat.const_data_ptr<float>();
  const int64_t* sp = spans.const_data_ptr<int64_t>();
  const float* s = scale.const_data_ptr<float>();
  const float* __restrict__ w = weight_t.const_data_ptr<float>();
  const float* b = bias.const_data_ptr<float>();
  float* o = out.mutable_data_ptr<float>();
  at::parallel_for(0, K, kGrainTokens, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t start = sp[3 * k], count = sp[3 * k + 1], bias_at = sp[3 * k + 2];
      float* __restrict__ acc = o + k * H;
      for (int64_t h = 0; h < H; ++h) acc[h] = 0.0f;
      // acc[h] = sum_j w[h, j] x[j] over the token's slots in order (padding skipped), vectorised over h
      const int64_t filled = count + (bias_at >= 0);
      for (int64_t j = 0; j < filled; ++j) {
        const float x = f[token_slot(start, count, bias_at, j)] * s[k];
        const float* __restrict__ wj = w + j * H;
        for (int64_t h = 0; h < H; ++h) acc[h] += wj[h] * x;
      }
      const float* bk = b + k * H;
      for (int64_t h = 0; h < H; ++h) acc[h] = bk[h] + acc[h];
    }
  });
  return out;
}

void decode_overwrite_cpu(const at::Tensor& out, const at::Tensor& hidden, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias, const at::Tensor& spans, const at::Tensor& scale,
                          bool accumulate) {
  check_decode_overwrite(out, hidden, weight, bias, spans, scale);
  const int64_t K = spans.size(0), T = weight.size(0), H = hidden.size(1);
  const at::Tensor weight_t = weight.t().contiguous();  // (H, T): the inner loop runs over j, contiguous
  float* o = out.mutable_data_ptr<float>();
  const float* g = hidden.const_data_ptr<float>();
  const float* __restrict__ w = weight_t.const_data_ptr<float>();
  const float* b = bias.has_value() ? bias->const_data_ptr<float>() : nullptr;
  const int64_t* sp = spans.const_data_ptr<int64_t>();
  const float* s = scale.const_data_ptr<float>();
  at::parallel_for(0, K, kGrainTokens, [&](int64_t k0, int64_t k1) {
    std::vector<float> y(T);
    float* __restrict__ acc = y.data();
    for (int64_t k = k0; k < k1; ++k) {
      const float* gk = g + k * H;
      for (int64_t j = 0; j < T; ++j) acc[j] = 0.0f;
      for (int64_t h = 0; h < H; ++h) {  // acc[j] = sum_h w[j, h] g[h], h in order, vectorised over j
        const float gh = gk[h];
        const float* __restrict__ wh = w + h * T;
        for (int64_t j = 0; j < T; ++j) acc[j] += wh[j] * gh;
      }
      const int64_t start = sp[3 * k], count = sp[3 * k + 1], bias_at = sp[3 * k + 2];
      const int64_t filled = count + (bias_at >= 0);
      for (int64_t j = 0; j < filled; ++j) {
        const int64_t i = token_slot(start, count, bias_at, j);
        const float v = (acc[j] + (b ? b[j] : 0.0f)) * s[k];
        o[i] = accumulate ? o[i] + v : v;
      }
    }
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CPU, m) {
  m.impl("tokenize_encode", &tokenize_encode_cpu);
  m.impl("decode_overwrite", &decode_overwrite_cpu);
}

}  // namespace weightcast_c::cpu
