"""weightcast's torch.library ops (namespace ``weightcast``) and the choice of kernel backend.

Each op has a pure-PyTorch reference (:mod:`weightcast.ops.reference`, the test oracle) and C++ (CPU), CUDA and
Triton kernels; :mod:`weightcast.ops.dispatch` picks one (``WEIGHTCAST_BACKEND`` or :func:`use_backend` force it).
"""
from .dispatch import BACKENDS, BackendUnavailableError, available_backends, select_backend, use_backend
from .lincomb_forecast import MAX_WINDOW as lincomb_forecast_max_window
from .lincomb_forecast import forecast_is_provably_finite, lincomb_forecast, lincomb_forecast_trusted
from .latent import decode_overwrite, tokenize_encode
from .nowcast_forecast import nowcast_forecast
from .record import record, record_trusted

__all__ = ["BACKENDS", "BackendUnavailableError", "available_backends", "decode_overwrite",
           "forecast_is_provably_finite", "lincomb_forecast", "lincomb_forecast_max_window", "lincomb_forecast_trusted",
           "nowcast_forecast", "record", "record_trusted", "select_backend",
           "tokenize_encode", "use_backend"]
