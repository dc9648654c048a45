// CUDA registrations of weightcast_C::tokenize_encode / decode_overwrite: the shared checks (../latent.cpp),
// the device guard, the current stream, the transposed weight for coalesced reads, and the call into the
// torch-free launchers of latent.cu. Compiled only in CUDA builds (setup.py); tools/check_cuda.sh
// syntax-checks it without one.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../latent.h"
#include "latent.cuh"

namespace weightcast_c {
namespace {

at::Tensor tokenize_encode_cuda(const at::Tensor& flat, const at::Tensor& spans, const at::Tensor& scale,
                                const at::Tensor& weight, const at::Tensor& bias) {
  check_tokenize_encode(flat, spans, scale, weight, bias);
  TORCH_CHECK(weight.size(1) <= 768, "weightcast_C::tokenize_encode (CUDA): token size ", weight.size(1),
              " > 768 does not fit the kernel's shared memory");
  const c10::cuda::CUDAGuard guard(flat.device());
  const at::Tensor weight_t = weight.t().contiguous();
  at::Tensor out = at::empty({spans.size(0), weight.size(0)}, flat.options());
  C10_CUDA_CHECK(cuda::launch_tokenize_encode(flat.const_data_ptr<float>(), spans.const_data_ptr<int64_t>(),
                                              scale.const_data_ptr<float>(), weight_t.const_data_ptr<float>(),
                                              bias.const_data_ptr<float>(), out.mutable_data_ptr<float>(),
                                              spans.size(0), weight.size(1), weight.size(0),
                                              c10::cuda::getCurrentCUDAStream().stream()));
  return out;
}

void decode_overwrite_cuda(const at::Tensor& out, const at::Tensor& hidden, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, const at::Tensor& spans, const at::Tensor& scale,
                           bool accumulate) {
  check_decode_overwrite(out, hidden, weight, bias, spans, scale);
  TORCH_CHECK(hidden.size(1) <= 768, "weightcast_C::decode_overwrite (CUDA): hidden size ", hidden.size(1),
              " > 768 does not fit the kernel's shared memory");
  const c10::cuda::CUDAGuard guard(out.device());
  const at::Tensor weight_t = weight.t().contiguous();
  C10_CUDA_CHECK(cuda::launch_decode_overwrite(out.mutable_data_ptr<float>(), hidden.const_data_ptr<float>(),
                                               weight_t.const_data_ptr<float>(),
                                               bias.has_value() ? bias->const_data_ptr<float>() : nullptr,
                                               spans.const_data_ptr<int64_t>(), scale.const_data_ptr<float>(),
                                               spans.size(0), weight.size(0), hidden.size(1), accumulate,
                                               c10::cuda::getCurrentCUDAStream().stream()));
}

}  // namespace

TORCH_LIBRARY_IMPL(weightcast_C, CUDA, m) {
  m.impl("tokenize_encode", &tokenize_encode_cuda);
  m.impl("decode_overwrite", &decode_overwrite_cuda);
}

}  // namespace weightcast_c
