// weightcast._C: the schemas of the native ops (namespace weightcast_C), their
// Meta kernels, and the Python module object.
//
//   record(Tensor[] params, Tensor(a!) history, int slot, int[] offsets) -> Tensor
//       Multi-tensor: for every parameter i, history[slot, offsets[i] + j] =
//       params[i].flatten()[j] converted to history.dtype (round to nearest
//       even, as copy_); returns max |float32(history[slot, segments])| as a
//       float32 0-dim tensor on history's device: NaN if a value is NaN, +inf
//       if one is infinite and none is NaN, 0 when there is nothing.
//   lincomb_forecast(Tensor(a!)[] params, Tensor history, int[] offsets, Tensor coeffs) -> ()
//       Multi-tensor, difference form, with h_k = float32(history[k, offsets[i] + j]):
//       params[i].flatten()[j] = convert(coeffs[0] * h_0 + sum_{k=1}^{W-1} coeffs[k] * (h_k - h_0)),
//       accumulated in float32 in slot order (fused multiply-add allowed on
//       CUDA), converted to the parameter's dtype (round to nearest even).
//       Weights summing to 1 give coeffs[0] == 1, so a parameter that never
//       moved is kept bit for bit. Non-finite results are written as they
//       come: the public op guards against them.
//
// The public ops (weightcast::record, weightcast::lincomb_forecast in
// weightcast/ops) call these through torch.ops.weightcast_C.
//
// The module uses only the Python stable ABI (Py_LIMITED_API is set by the
// build), so one wheel serves every CPython >= 3.10.
#include <Python.h>

#include <ATen/ATen.h>
#include <torch/library.h>

#include "cpu/kernels.h"
#include "limits.h"
#include "weightcast.h"

#ifndef WEIGHTCAST_TORCH_VERSION
#error "setup.py defines WEIGHTCAST_TORCH_VERSION (the torch version built against)"
#endif
#ifndef WEIGHTCAST_CUDA_VERSION
#define WEIGHTCAST_CUDA_VERSION ""
#endif

namespace weightcast_c {
namespace {

at::Tensor record_meta(at::TensorList params, const at::Tensor& history, int64_t slot, at::IntArrayRef offsets) {
  check_record(params, history, slot, offsets);
  return at::empty({}, history.options().dtype(at::kFloat));
}

void lincomb_forecast_meta(at::TensorList params, const at::Tensor& history, at::IntArrayRef offsets,
                           const at::Tensor& coeffs) {
  check_lincomb_forecast(params, history, offsets, coeffs);
}

}  // namespace

TORCH_LIBRARY(weightcast_C, m) {
  m.def("record(Tensor[] params, Tensor(a!) history, int slot, int[] offsets) -> Tensor");
  m.def("lincomb_forecast(Tensor(a!)[] params, Tensor history, int[] offsets, Tensor coeffs) -> ()");
  m.def("wnn_forecast(Tensor(a!) out, Tensor history, Tensor order, Tensor offsets, Tensor stats, Tensor kinds, "
        "Tensor mlp, int hidden) -> ()");  // cpu/wnn.cpp, cuda/wnn.cu
  // the latent forecaster's fused ops (numerics in latent.h)
  m.def("tokenize_encode(Tensor flat, Tensor spans, Tensor scale, Tensor weight, Tensor bias) -> Tensor");
  m.def("decode_overwrite(Tensor(a!) out, Tensor hidden, Tensor weight, Tensor? bias, Tensor spans, Tensor scale, "
        "bool accumulate) -> ()");
}

TORCH_LIBRARY_IMPL(weightcast_C, Meta, m) {
  m.impl("record", &record_meta);
  m.impl("lincomb_forecast", &lincomb_forecast_meta);
}

}  // namespace weightcast_c

// Importing weightcast._C loads this library, whose static initialisers (the
// TORCH_LIBRARY blocks here, in cpu/ and in cuda/) register the ops. The module
// itself only says how it was built: with_cuda (0/1), cuda_version ("" without
// CUDA), torch_version (the torch it was compiled against), and cpu_isa, the
// CPU kernels in use ("avx2" or "generic"; see cpu/kernels.h), and the kernel
// limits of limits.h (lincomb_max_window, wnn_max_window, wnn_max_hidden,
// wnn_num_kinds).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "weightcast native ops; see torch.ops.weightcast_C", -1, nullptr,
  };
  PyObject* mod = PyModule_Create(&module_def);
  if (mod == nullptr) return nullptr;
#ifdef WEIGHTCAST_WITH_CUDA
  const long with_cuda = 1;
#else
  const long with_cuda = 0;
#endif
  if (PyModule_AddIntConstant(mod, "with_cuda", with_cuda) < 0 ||
      PyModule_AddStringConstant(mod, "cuda_version", WEIGHTCAST_CUDA_VERSION) < 0 ||
      PyModule_AddStringConstant(mod, "torch_version", WEIGHTCAST_TORCH_VERSION) < 0 ||
      PyModule_AddStringConstant(mod, "cpu_isa", weightcast_c::cpu::kernel_table().isa) < 0 ||
      PyModule_AddIntConstant(mod, "lincomb_max_window", weightcast_c::kLincombMaxWindow) < 0 ||
      PyModule_AddIntConstant(mod, "wnn_max_window", weightcast_c::kWnnMaxWindow) < 0 ||
      PyModule_AddIntConstant(mod, "wnn_max_hidden", weightcast_c::kWnnMaxHidden) < 0 ||
      PyModule_AddIntConstant(mod, "wnn_num_kinds", weightcast_c::kWnnKinds) < 0) {
    Py_DECREF(mod);
    return nullptr;
  }
  return mod;
}
