"""The "latent" forecaster: record snapshots as autoencoder latents, forecast in latent space, decode on jump.

Per bucket (:class:`weightcast.history.Bucket`), at :meth:`LatentForecaster.attach`:

* the parameters are tokenised from their shapes alone (:class:`weightcast.wsl.Tokenizer`; the optimizer receives
  parameters, not modules, so no model is needed: ``ForecastSGD(model.parameters(), forecaster="latent")``);
* the bucket's raw history is replaced by a (W, K * d) float32 latent history (K tokens, latent size d), plus one
  row for the latents of the initial weights with ``trajectory="farcast"``.

Record (every ``record_every`` steps): the per-layer scales (RMS of each layer, bias included) are taken from the
parameters at the first record of a window and kept for the whole window (``trajectory="farcast"``: taken once,
at attach, and kept for the run, so that the initial weights' latents stay comparable); then the fused op
``tokenize_encode`` (gather + normalise + first encoder layer) and the rest of the encoder turn the parameters
into latents z (K, d), stored in the slot. No copy of the parameters is kept.

Jump: ``z_f = sum_k c_k z_k`` with, per latent coordinate, either the least-squares line through the window
(``trajectory="linear"``, default) or the 1-layer farcast model's weights over the window and the initial
weights' latents (``"farcast"``, :mod:`weightcast.forecasters.farcast`). Then, in the default **residual**
form, ``params <- params + decode(z_f) - decode(z_now)`` (z_now = the newest slot, recorded at the jump step), so
that the autoencoder's reconstruction error cancels and only its error on the *difference* lands in the weights;
the decoder's last layer is linear, so the fused op ``decode_overwrite`` gets the difference of the two last
hidden activations and adds ``scale * (dec_w @ (g_f - g_now))`` into the parameters. ``residual=False`` writes
``scale * decode(z_f)`` instead (the direct form; reconstruction error lands in the weights). The forecast is
written into a copy of the parameter buffer that the optimizer checks for finiteness before committing it.

Encoding and decoding run over blocks of ``block_tokens`` tokens, so the transient (tokens, hidden) activations
stay bounded (about ``block_tokens * hidden * 4`` bytes each) whatever the model's size.

Memory per bucket, kept: the latent history (W * K * d float32: 2.5 bytes per parameter with W = 5, T = 64,
d = 8, when tokens are full) and the tokeniser's maps (spans and token layers, 28 bytes per token, 0.44 bytes
per parameter at T = 64) -- together less than one float32 copy of the parameters for the reference models.
"""
from __future__ import annotations

import copy
import os
from typing import Any

import torch

from .. import ops
from .base import Forecaster
from .linear import least_squares_line_coefficients

TRAJECTORIES = ("linear", "farcast")


class _BucketCodec:
    """The tokeniser, the autoencoder copy and the per-layer scales (L,) of one bucket."""

    def __init__(self, bucket, ae):
        from ..wsl.tokenizer import Tokenizer

        self.tok = Tokenizer.for_params(bucket.params, ae.token_size)
        self.ae = ae
        self.layer_scale = torch.ones(len(self.tok.layers), dtype=torch.float32, device=bucket.device)

    def token_scale(self, sl: slice) -> torch.Tensor:
        """(tokens in sl,) float32 scale of each token of the block ``sl`` (its layer's)."""
        return self.layer_scale[self.tok.token_layer[sl]].contiguous()


class LatentForecaster(Forecaster):
    """Forecast in the latent space of a weight autoencoder (module docstring).

    autoencoder: a :class:`weightcast.wsl.WeightAutoencoder`, a path to saved weights, or None for the weights
    shipped with the package. residual: jump with ``params + decode(z_f) - decode(z_now)`` (True, default) or
    write ``decode(z_f)`` (False). trajectory: "linear" or "farcast" (module docstring); farcast: the farcast
    model (a :class:`weightcast.forecasters.farcast.FarcastForecaster` or a path; None: the shipped one).
    block_tokens: tokens encoded/decoded at once (rounded down to a multiple of the autoencoder's window).
    """

    name = "latent"

    def __init__(self, autoencoder=None, residual: bool = True, trajectory: str = "linear", farcast=None,
                 block_tokens: int = 16384):
        super().__init__(history_dtype=None)
        from ..wsl.autoencoder import WeightAutoencoder, load_autoencoder

        if autoencoder is None or isinstance(autoencoder, (str, os.PathLike)):
            autoencoder = load_autoencoder(autoencoder)
        if not isinstance(autoencoder, WeightAutoencoder):
            raise TypeError(f"autoencoder must be a WeightAutoencoder, a path or None, got {type(autoencoder)}")
        if trajectory not in TRAJECTORIES:
            raise ValueError(f"trajectory must be one of {TRAJECTORIES}, got {trajectory!r}")
        multiple = autoencoder.token_block_multiple
        if block_tokens < multiple:
            raise ValueError(f"block_tokens must be >= {multiple} (the autoencoder's token window), got {block_tokens}")
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.residual = bool(residual)
        self.trajectory = trajectory
        self.farcast = None
        if trajectory == "farcast":
            from .farcast import FarcastForecaster

            self.farcast = farcast if isinstance(farcast, FarcastForecaster) else FarcastForecaster(farcast)
        elif farcast is not None:
            raise ValueError("farcast= is only used with trajectory='farcast'")
        self.block_tokens = block_tokens - block_tokens % multiple
        self._codecs: dict[Any, _BucketCodec] = {}  # per bucket (keyed by the object: survives deepcopy)
        self._order: list = []
        self._per_device: dict[torch.device, Any] = {}

    def _ae_on(self, device: torch.device):
        """The autoencoder on ``device`` (one copy per device; the CPU one is the original)."""
        if device not in self._per_device:
            self._per_device[device] = self.autoencoder if device.type == "cpu" else \
                copy.deepcopy(self.autoencoder).to(device)
        return self._per_device[device]

    def _blocks(self, num_tokens: int):
        return [slice(k0, min(k0 + self.block_tokens, num_tokens))
                for k0 in range(0, num_tokens, self.block_tokens)]

    def attach(self, bucket) -> None:
        codec = _BucketCodec(bucket, self._ae_on(bucket.device))
        self._codecs[bucket] = codec
        self._order.append(bucket)
        if self.trajectory == "farcast" and bucket.window < self.farcast.lags:
            raise ValueError(f"farcast uses the {self.farcast.lags} newest snapshots; the window is {bucket.window}")
        extra = 1 if self.trajectory == "farcast" else 0
        bucket.history = torch.zeros(bucket.window + extra, codec.tok.num_tokens * codec.ae.latent,
                                     dtype=torch.float32, device=bucket.device)
        bucket.recorder = self._record
        if extra:  # the run's scales and the initial weights' latents, in the last row
            codec.layer_scale = codec.tok.layer_rms_of_params(bucket.tensors())
            self._encode_into(bucket, codec, bucket.history[-1])

    def max_trained_horizon(self, record_every: int) -> int | None:
        """The farcast trajectory's range; no limit for the linear one."""
        return None if self.farcast is None else self.farcast.max_trained_horizon(record_every)

    def check_schedule(self, window: int, record_every: int, max_horizon: int) -> None:
        if self.farcast is not None:
            self.farcast.check_schedule(window, record_every, max_horizon)

    def detach(self, bucket) -> None:
        if bucket in self._codecs:
            del self._codecs[bucket]
            self._order.remove(bucket)

    @torch.no_grad()
    def _encode_into(self, bucket, codec: _BucketCodec, row: torch.Tensor) -> None:
        """Latents of the bucket's current parameters with the current scales, written into ``row`` (K * d,)."""
        tok, ae = codec.tok, codec.ae
        z = row.view(tok.num_tokens, ae.latent)
        flat = bucket.packed()  # the tokeniser's layout: the parameters flattened and concatenated
        for sl in self._blocks(tok.num_tokens):
            h1 = ops.tokenize_encode(flat, tok.spans[sl], 1.0 / codec.token_scale(sl), ae.enc_w,
                                     ae.first_layer_bias(tok.positions_of(sl)))
            z[sl] = ae.encode_hidden(h1)

    @torch.no_grad()
    def _record(self, bucket, slot: int) -> torch.Tensor:
        codec = self._codecs[bucket]
        if bucket.filled == 0 and self.trajectory == "linear":  # a new window: fix its normalisation
            codec.layer_scale = codec.tok.layer_rms_of_params(bucket.tensors())
        self._encode_into(bucket, codec, bucket.history[slot])
        return bucket.history[slot].abs().amax()

    def latent_coefficients(self, steps: list[int], target: int) -> torch.Tensor:
        """Weights (rows of the latent history,) float64 of the latent forecast ``z_f``: the line through the
        window, or farcast's weights over the window and the initial latents (last row)."""
        if self.trajectory == "farcast":
            return self.farcast.coefficients(steps, target)
        return least_squares_line_coefficients(steps, target)

    @torch.no_grad()
    def forecast(self, bucket, steps: list[int], target: int) -> list[torch.Tensor]:
        codec = self._codecs[bucket]
        tok, ae = codec.tok, codec.ae
        Z = bucket.history.view(-1, tok.num_tokens, ae.latent)
        c = self.latent_coefficients(steps, target).to(torch.float32).to(bucket.device)
        newest = (bucket.head - 1) % bucket.window
        out = bucket.packed()
        for sl in self._blocks(tok.num_tokens):
            pos = tok.positions_of(sl)
            position_term = ae.decoder_position_term(pos)
            g_f = ae.decode_hidden(torch.einsum("w,wkd->kd", c, Z[:, sl]), pos, position_term)
            if self.residual:
                g_now = ae.decode_hidden(Z[newest, sl], pos, position_term)
                ops.decode_overwrite(out, (g_f - g_now).contiguous(), ae.dec_w, None, tok.spans[sl],
                                     codec.token_scale(sl), True)
            else:
                ops.decode_overwrite(out, g_f.contiguous(), ae.dec_w, ae.dec_b, tok.spans[sl],
                                     codec.token_scale(sl), False)
        return list(out.split(bucket.numels))

    def history_bytes(self, bucket) -> int:
        """Bytes of the latent history of ``bucket`` (the window, and the initial latents with farcast)."""
        return bucket.history.numel() * bucket.history.element_size()

    def map_bytes(self, bucket) -> int:
        """Bytes of the fixed per-model maps of ``bucket`` (the tokeniser's maps and the layer scales)."""
        codec = self._codecs[bucket]
        return codec.tok.map_bytes() + codec.layer_scale.numel() * 4

    def state_dict(self) -> dict[str, Any]:
        """Name, form, trajectory and the per-layer scales of every bucket (the latents live in the buckets'
        histories, which the optimizer saves)."""
        return dict(super().state_dict(), residual=self.residual, trajectory=self.trajectory,
                    layer_scales=[self._codecs[key].layer_scale for key in self._order])

    def check_state(self, state: dict[str, Any]) -> None:
        super().check_state(state)
        if state.get("trajectory", "linear") != self.trajectory:
            raise ValueError(f"saved latent state uses trajectory {state.get('trajectory')!r}, this forecaster "
                             f"{self.trajectory!r}")
        scales = state["layer_scales"]
        if len(scales) != len(self._order):
            raise ValueError(f"saved latent state has {len(scales)} buckets, this optimizer {len(self._order)}")
        for key, scale in zip(self._order, scales):
            if scale.shape != self._codecs[key].layer_scale.shape:
                raise ValueError(f"saved layer scales {tuple(scale.shape)} do not fit "
                                 f"{tuple(self._codecs[key].layer_scale.shape)}")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for key, scale in zip(self._order, state["layer_scales"]):
            codec = self._codecs[key]
            codec.layer_scale = scale.to(codec.layer_scale.device, torch.float32).contiguous()
