// Kernel limits: the one definition of the sizes the kernels are built for.
// Torch-free (included by the .cu files too). weightcast._C exposes them as
// module attributes (lincomb_max_window, wnn_max_window, wnn_max_hidden,
// wnn_num_kinds); weightcast/ops/limits.py reads them from there and the
// Triton kernels from weightcast/ops/limits.py; tests/test_limits.py checks
// that Python, Triton and C++ agree.
#pragma once

namespace weightcast_c {

// Most history rows lincomb_forecast combines (the coefficients live on the
// stack / in shared memory).
constexpr int kLincombMaxWindow = 32;
// wnn_forecast: most snapshots in the window, most hidden units (the hidden
// layer lives in registers), and parameter kinds (one first-layer bias each).
constexpr int kWnnMaxWindow = 16;
constexpr int kWnnMaxHidden = 32;
constexpr int kWnnKinds = 3;
// nowcast_forecast: most states in the window, hidden units (the hidden
// layers live in registers / stack tiles), type-embedding width, horizons
// k_max (output rows of the model), and parameter types (rows of the type
// embedding: conv, linear, bias, norm, embedding, attention). weightcast._C
// exposes these through the op weightcast_C::nowcast_limits (cpu/nowcast.cpp).
constexpr int kNowcastMaxWindow = 16;
constexpr int kNowcastMaxHidden = 64;
constexpr int kNowcastMaxEmbed = 64;
constexpr int kNowcastMaxHorizons = 64;
constexpr int kNowcastNumTypes = 6;

}  // namespace weightcast_c
