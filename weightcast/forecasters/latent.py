"""The "latent" forecaster: record snapshots as autoencoder latents, forecast in latent space, decode on jump.

Per bucket (:class:`weightcast.history.Bucket`), at :meth:`LatentForecaster.attach`:

* the parameters are tokenised from their shapes alone (:class:`weightcast.wsl.Tokenizer`; the optimizer receives
  parameters, not modules, so no model is needed: ``ForecastSGD(model.parameters(), forecaster="latent")``);
* the bucket's raw history is replaced by a (W, K * d) float32 latent history (K tokens, latent size d).

Record (every ``record_every`` steps): at the first record of a window the per-layer scales (RMS of each layer,
bias included) are taken from the parameters and kept for the whole window; then the fused op
``tokenize_encode`` (gather + normalise + first encoder layer) and the rest of the encoder turn the parameters
into latents z (K, d), stored in the slot. No copy of the parameters is kept.

Jump: ``z_f = sum_k c_k z_k`` with the per-element least-squares line coefficients of the linear forecaster
(applied to every latent coordinate), then, in the default **residual** form,
``params <- params + decode(z_f) - decode(z_now)`` (z_now = the newest slot, recorded at the jump step), so that
the autoencoder's reconstruction error cancels and only its error on the *difference* lands in the weights;
the decoder's last layer is linear, so the fused op ``decode_overwrite`` gets the difference of the two last
hidden activations and adds ``scale * (dec_w @ (g_f - g_now))`` into the parameters. ``residual=False`` writes
``scale * decode(z_f)`` instead (the direct form; reconstruction error lands in the weights). The forecast is
written into a copy of the parameter buffer that the optimizer checks for finiteness before committing it.

Memory per bucket: the latent history (W * K * d float32), plus maps fixed per model: the tokeniser's gather map
(K, T) int64 (about 9 bytes per parameter with T = 64, i.e. 2.2x the float32 parameters: the largest item), the
positions (K, 9) float32 and the token scales. Rows of length T + 1 (a width-T layer with its bias appended) take
two tokens, the second nearly empty: for such layers (the GPT's n_embd = 64 projections) the latent window of 5
is about as large as the parameters.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from .. import ops
from .base import Forecaster
from .linear import least_squares_line_coefficients


class _BucketCodec:
    """The tokeniser, the autoencoder copy and the current window's token scales of one bucket."""

    def __init__(self, bucket, ae):
        from ..wsl.tokenizer import Tokenizer

        self.tok = Tokenizer.for_params(bucket.params, ae.token_size)
        self.ae = ae
        self.scale = torch.ones(self.tok.num_tokens, dtype=torch.float32, device=bucket.device)
        self.inv_scale = torch.ones_like(self.scale)


class LatentForecaster(Forecaster):
    """Forecast in the latent space of a weight autoencoder (module docstring).

    autoencoder: a :class:`weightcast.wsl.WeightAutoencoder`, a path to saved weights, or None for the weights
    shipped with the package. residual: jump with ``params + decode(z_f) - decode(z_now)`` (True, default) or
    write ``decode(z_f)`` (False).
    """

    name = "latent"

    def __init__(self, autoencoder=None, residual: bool = True):
        super().__init__(history_dtype=None)
        from ..wsl.autoencoder import WeightAutoencoder, load_autoencoder

        if autoencoder is None or isinstance(autoencoder, (str, os.PathLike)):
            autoencoder = load_autoencoder(autoencoder)
        if not isinstance(autoencoder, WeightAutoencoder):
            raise TypeError(f"autoencoder must be a WeightAutoencoder, a path or None, got {type(autoencoder)}")
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.residual = bool(residual)
        self._codecs: dict[int, _BucketCodec] = {}
        self._order: list[int] = []
        self._per_device: dict[torch.device, Any] = {}

    def _ae_on(self, device: torch.device):
        if device not in self._per_device:
            self._per_device[device] = self.autoencoder if device.type == "cpu" else \
                self._copy_to(device)
        return self._per_device[device]

    def _copy_to(self, device: torch.device):
        from ..wsl.autoencoder import WeightAutoencoder

        ae = WeightAutoencoder(**self.autoencoder.config()).to(device)
        ae.load_state_dict(self.autoencoder.state_dict())
        return ae.eval().requires_grad_(False)

    def attach(self, bucket) -> None:
        codec = _BucketCodec(bucket, self._ae_on(bucket.device))
        self._codecs[id(bucket)] = codec
        self._order.append(id(bucket))
        bucket.history = torch.zeros(bucket.window, codec.tok.num_tokens * codec.ae.latent, dtype=torch.float32,
                                     device=bucket.device)
        bucket.recorder = self._record

    @torch.no_grad()
    def encode(self, bucket, codec: _BucketCodec) -> torch.Tensor:
        """Latents (K, d) of the bucket's current parameters with the window's scales."""
        tok, ae = codec.tok, codec.ae
        h1 = ops.tokenize_encode(bucket.flat, tok.index, codec.inv_scale, ae.enc_w,
                                 ae.first_layer_bias(tok.positions))
        return ae.encode_hidden(h1)

    @torch.no_grad()
    def _record(self, bucket, slot: int) -> torch.Tensor:
        codec = self._codecs[id(bucket)]
        if bucket.filled == 0:  # a new window: fix its normalisation
            rms = codec.tok.layer_rms_of_params(bucket.views)
            codec.scale = rms[codec.tok.token_layer].contiguous()
            codec.inv_scale = (1.0 / codec.scale).contiguous()
        z = self.encode(bucket, codec)
        bucket.history[slot].copy_(z.reshape(-1))
        return z.abs().amax()

    @torch.no_grad()
    def forecast(self, bucket, steps: list[int], target: int) -> torch.Tensor:
        codec = self._codecs[id(bucket)]
        tok, ae = codec.tok, codec.ae
        Z = bucket.history.view(bucket.window, tok.num_tokens, ae.latent)
        c = least_squares_line_coefficients(steps, target).to(torch.float32).to(bucket.device)
        z_f = torch.einsum("w,wkd->kd", c, Z)
        position_term = ae.decoder_position_term(tok.positions)
        g_f = ae.decode_hidden(z_f, tok.positions, position_term)
        out = bucket.flat.clone()
        if self.residual:
            g_now = ae.decode_hidden(Z[(bucket.head - 1) % bucket.window], tok.positions, position_term)
            ops.decode_overwrite(out, (g_f - g_now).contiguous(), ae.dec_w, None, tok.index, codec.scale, True)
        else:
            ops.decode_overwrite(out, g_f.contiguous(), ae.dec_w, ae.dec_b, tok.index, codec.scale, False)
        return out

    def history_bytes(self, bucket) -> int:
        """Bytes of the latent history of ``bucket`` (the window)."""
        return bucket.history.numel() * bucket.history.element_size()

    def map_bytes(self, bucket) -> int:
        """Bytes of the fixed per-model maps of ``bucket`` (the tokeniser's maps and the token scales)."""
        codec = self._codecs[id(bucket)]
        return codec.tok.map_bytes() + 2 * 4 * codec.tok.num_tokens

    def state_dict(self) -> dict[str, Any]:
        """Name, form and the current window's token scales of every bucket (the latents live in the buckets'
        histories, which the optimizer saves)."""
        return {"name": self.name, "residual": self.residual,
                "scales": [self._codecs[key].scale for key in self._order]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        scales = state["scales"]
        if len(scales) != len(self._order):
            raise ValueError(f"saved latent state has {len(scales)} buckets, this optimizer {len(self._order)}")
        for key, scale in zip(self._order, scales):
            codec = self._codecs[key]
            if scale.shape != codec.scale.shape:
                raise ValueError(f"saved token scales {tuple(scale.shape)} do not fit {tuple(codec.scale.shape)}")
            codec.scale = scale.to(codec.scale.device, torch.float32).contiguous()
            codec.inv_scale = (1.0 / codec.scale).contiguous()
