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

void check_index(const char* op, const at::Tensor& index, const at::Tensor& scale, const at::Device& device) {
  TORCH_CHECK(index.dim() == 2 && index.scalar_type() == at::kLong && index.is_contiguous(), "weightcast_C::", op,
              ": index must be a contiguous (K, T) int64 tensor, got ", index.sizes(), " ", index.scalar_type());
  TORCH_CHECK(index.device() == device, "weightcast_C::", op, ": index is on ", index.device(), ", expected ", device);
  check_f32(op, "scale", scale, 1, device);
  TORCH_CHECK(scale.size(0) == index.size(0), "weightcast_C::", op, ": scale has ", scale.size(0),
              " entries for ", index.size(0), " tokens");
}

}  // namespace

void check_tokenize_encode(const at::Tensor& flat, const at::Tensor& index, const at::Tensor& scale,
                           const at::Tensor& weight, const at::Tensor& bias) {
  const char* op = "tokenize_encode";
  check_f32(op, "flat", flat, 1, flat.device());
  check_index(op, index, scale, flat.device());
  check_f32(op, "weight", weight, 2, flat.device());
  check_f32(op, "bias", bias, 2, flat.device());
  TORCH_CHECK(weight.size(1) == index.size(1), "weightcast_C::tokenize_encode: weight ", weight.sizes(),
              " does not take tokens of ", index.size(1));
  TORCH_CHECK(bias.size(0) == index.size(0) && bias.size(1) == weight.size(0),
              "weightcast_C::tokenize_encode: bias must be (", index.size(0), ", ", weight.size(0), "), got ",
              bias.sizes());
}

void check_decode_overwrite(const at::Tensor& out, const at::Tensor& hidden, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, const at::Tensor& index, const at::Tensor& scale) {
  const char* op = "decode_overwrite";
  check_f32(op, "out", out, 1, out.device());
  check_index(op, index, scale, out.device());
  check_f32(op, "hidden", hidden, 2, out.device());
  check_f32(op, "weight", weight, 2, out.device());
  TORCH_CHECK(hidden.size(0) == index.size(0) && weight.size(0) == index.size(1) && weight.size(1) == hidden.size(1),
              "weightcast_C::decode_overwrite: hidden ", hidden.sizes(), ", weight ", weight.sizes(), " and index ",
              index.sizes(), " disagree (want (K, H), (T, H), (K, T))");
  if (bias.has_value()) {
    check_f32(op, "bias", *bias, 1, out.device());
    TORCH_CHECK(bias->size(0) == index.size(1), "weightcast_C::decode_overwrite: bias must be (", index.size(1),
                ",), got ", bias->sizes());
  }
}

namespace {

at::Tensor tokenize_encode_meta(const at::Tensor& flat, const at::Tensor& index, const at::Tensor& scale,
                                const at::Tensor& weight, const at::Tensor& bias) {
  check_tokenize_encode(flat, index, scale, weight, bias);
  return at::empty({index.size(0), weight.size(0)}, flat.options());
}

void decode_overwrite_meta(const at::Tensor& out, const at::Tensor& hidden, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, const at::Tensor& index, const at::Tensor& scale,
                           bool /*accumulate*/) {
  check_decode_overwrite(out, hidden, weight, bias, index, scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, Meta, m) {
  m.impl("tokenize_encode", &tokenize_encode_meta);
  m.impl("decode_overwrite", &decode_overwrite_meta);
}

}  // namespace weightcast_c
