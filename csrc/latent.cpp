// Argument checks and Meta kernels of weightcast_C::tokenize_encode / decode_overwrite (see latent.h).
#include "latent.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace weightcast_c {
namespace {

void check_f32(const char* op, const char* name, const at::Tensor& t, int64_t dim, const at::Device& device) {
  TORCH_CHECK(t.dim() == dim && t.scalar_type() == at::kFloat && t.is_contiguous(), "weightcast_C::", op, ": ",
              name, " must be a contiguous ", dim, "-D float32 tensor, got ", t.sizes(), " ", t.scalar_type());
  TORCH_CHECK(t.device() == device, "weightcast_C::", op, ": ", name, " is on ", t.device(), ", expected ", device);
}

void check_spans(const char* op, const at::Tensor& spans, const at::Tensor& scale, const at::Device& device) {
  TORCH_CHECK(spans.dim() == 2 && spans.size(1) == 3 && spans.scalar_type() == at::kLong && spans.is_contiguous(),
              "weightcast_C::", op, ": spans must be a contiguous (K, 3) int64 tensor, got ", spans.sizes(), " ",
              spans.scalar_type());
  TORCH_CHECK(spans.device() == device, "weightcast_C::", op, ": spans is on ", spans.device(), ", expected ", device);
  check_f32(op, "scale", scale, 1, device);
  TORCH_CHECK(scale.size(0) == spans.size(0), "weightcast_C::", op, ": scale has ", scale.size(0),
              " entries for ", spans.size(0), " tokens");
}

}  // namespace

void check_tokenize_encode(const at::Tensor& flat, const at::Tensor& spans, const at::Tensor& scale,
                           const at::Tensor& weight, const at::Tensor& bias) {
  const char* op = "tokenize_encode";
  check_f32(op, "flat", flat, 1, flat.device());
  check_spans(op, spans, scale, flat.device());
  check_f32(op, "weight", weight, 2, flat.device());
  check_f32(op, "bias", bias, 2, flat.device());
  TORCH_CHECK(bias.size(0) == spans.size(0) && bias.size(1) == weight.size(0),
              "weightcast_C::tokenize_encode: bias must be (", spans.size(0), ", ", weight.size(0), "), got ",
              bias.sizes());
}

void check_decode_overwrite(const at::Tensor& out, const at::Tensor& hidden, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& spans, const at::Tensor& scale) {
  const char* op = "decode_overwrite";
  check_f32(op, "out", out, 1, out.device());
  check_spans(op, spans, scale, out.device());
  check_f32(op, "hidden", hidden, 2, out.device());
  check_f32(op, "weight", weight, 2, out.device());
  TORCH_CHECK(hidden.size(0) == spans.size(0) && weight.size(1) == hidden.size(1),
              "weightcast_C::decode_overwrite: hidden ", hidden.sizes(), ", weight ", weight.sizes(), " and spans ",
              spans.sizes(), " disagree (want (K, H), (T, H), (K, 3))");
  if (bias.has_value()) {
    check_f32(op, "bias", *bias, 1, out.device());
    TORCH_CHECK(bias->size(0) == weight.size(0), "weightcast_C::decode_overwrite: bias must be (", weight.size(0),
                ",), got ", bias->sizes());
  }
}

namespace {

at::Tensor tokenize_encode_meta(const at::Tensor& flat, const at::Tensor& spans, const at::Tensor& scale,
                                const at::Tensor& weight, const at::Tensor& bias) {
  check_tokenize_encode(flat, spans, scale, weight, bias);
  return at::empty({spans.size(0), weight.size(0)}, flat.options());
}

void decode_overwrite_meta(const at::Tensor& out, const at::Tensor& hidden, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, const at::Tensor& spans, const at::Tensor& scale,
                           bool /*accumulate*/) {
  check_decode_overwrite(out, hidden, weight, bias, spans, scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, Meta, m) {
  m.impl("tokenize_encode", &tokenize_encode_meta);
  m.impl("decode_overwrite", &decode_overwrite_meta);
}

}  // namespace weightcast_c
