"""Triton kernels of weightcast, installed as ``weightcast.kernels`` (never as a top-level ``kernels`` package).

One op per module, each in the order kernel, launcher, public function:

* :mod:`.record` -- ``record(src, dst) -> absmax``: copy a flat buffer into another one with dtype conversion
  (round to nearest even) and return ``max |float32(dst)|`` as a float32 0-dim tensor (NaN-aware).
* :mod:`.lincomb` -- ``lincomb(out, history, coeffs)``: ``out = sum_k coeffs[k] * history[k]`` accumulated in
  float32, written in ``out``'s dtype.
* :mod:`.tokenize_encode`, :mod:`.decode_overwrite` -- the latent forecaster's fused ops (gather + normalise + the
  encoder's first layer; the decoder's last layer + de-normalise + scatter into the parameters), float32.

The kernels run on CUDA tensors, and on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1`` set before
triton is imported; fp32/fp16 only there). This package imports nothing heavy: import the op modules directly,
``from weightcast.kernels.lincomb import lincomb``. The public ops in :mod:`weightcast.ops` dispatch to them.
"""

__all__ = ["record", "lincomb", "tokenize_encode", "decode_overwrite"]
