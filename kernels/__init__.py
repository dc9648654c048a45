"""Triton kernels of weightcast, installed as ``weightcast.kernels`` (never as a top-level ``kernels`` package).

One op per module, each in the order kernel, launcher, public function:

* :mod:`.record` -- ``record(params, history, slot, offsets) -> absmax``: copy a list of parameter tensors into
  their segments of one history row with dtype conversion (round to nearest even) and return ``max
  |float32(stored)|`` as a float32 0-dim tensor (NaN-aware).
* :mod:`.lincomb_forecast` -- ``lincomb_forecast(params, history, offsets, coeffs)``: every parameter gets
  ``sum_k coeffs[k] * history[k, its segment]`` (difference form) accumulated in float32, written in its dtype.
* :mod:`.tokenize_encode`, :mod:`.decode_overwrite` -- the latent forecaster's fused ops (gather + normalise + the
  encoder's first layer; the decoder's last layer + de-normalise + scatter into the parameters), float32.

The kernels run on CUDA tensors, and on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1`` set before
triton is imported; fp32/fp16 only there). This package imports nothing heavy: import the op modules directly,
``from weightcast.kernels.lincomb_forecast import lincomb_forecast``. The public ops in :mod:`weightcast.ops` dispatch to them.
"""

__all__ = ["record", "lincomb_forecast", "tokenize_encode", "decode_overwrite"]
