"""Weight tokeniser: the parameters of a model as fixed-size tokens, described by spans of one flat buffer.

Layout (decided from the parameter shapes alone, so that it works on what an optimizer receives -- a list of
parameters, in order -- without the module):

* a parameter with 2 or more dimensions is a layer: its weight is reshaped to (rows = shape[0], w_len =
  prod(shape[1:])). If its rows are at least a token long (``w_len >= token_size``), each row is tokenised on its
  own, and if the *next* parameter is 1-D with ``shape[0]`` elements it is that layer's bias: appended to every
  row (row_len = w_len + 1) when that costs no extra token per row (``w_len % token_size != 0``), otherwise
  tokenised as a vector layer of its own -- so a 64-wide Linear with its bias takes one token per row at T = 64,
  not two (the second nearly empty). Rows shorter than a token are **packed**: the weight is one row of all its
  values (rows concatenated), cut into tokens, and a bias is a vector layer of its own -- so tokens stay full
  (a 32-wide Linear does not fill half of every token with padding). This covers Linear, Conv1d/2d/3d,
  Embedding and attention projections (``qkv``: (3E, E) + bias (3E,)).
* any other parameter (norm weights and biases, a lone bias, a scalar) is a "vector" layer with one row of all its
  elements.
* each row is cut into chunks of ``token_size`` values; the last chunk is zero-padded and masked.

One token per (layer, row, chunk). Every token is one **span**: ``count`` consecutive values of the flat buffer
(the parameters concatenated in order, as :class:`weightcast.history.Bucket` lays them out) from ``start``,
followed, in the last chunk of a row with an appended bias, by the bias value at ``bias_offset`` (slot ``count``),
then padding. ``spans`` (K, 3) int64 holds (start, count, bias_offset or -1): 24 bytes per token, 0.375 bytes per
parameter at T = 64 -- the kernels compute the offsets from it, no (K, T) map is kept. Every flat offset below
``numel`` lies in exactly one token slot, so tokenise and detokenise are exact inverses.

Its position is ``POSITION_FEATURES`` float32 values, normalised so that one autoencoder serves models of any
size: layer index / (layers - 1), row / (rows - 1), chunk / (chunks - 1), the layer kind one-hot (vector, matrix,
conv1d, conv2d or more), log2(rows) / 16 and log2(row_len) / 16; computed on demand from the layer table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

KINDS = ("vector", "matrix", "conv1d", "conv2d+")
POSITION_FEATURES = 3 + len(KINDS) + 2


def kind_of(ndim: int) -> str:
    """Layer kind from the weight's number of dimensions: 0/1 vector, 2 matrix (Linear, Embedding), 3 conv1d,
    4 or more conv2d+."""
    return KINDS[min(max(ndim - 1, 0), 3)]


@dataclass(frozen=True)
class Layer:
    """One tokenised layer: ``offset``/``shape`` of its weight in the flat buffer, ``bias_offset`` (or None),
    ``rows`` x ``row_len`` values (an appended bias included), ``chunks`` tokens per row, ``first_token``."""

    kind: str
    shape: tuple[int, ...]
    offset: int
    bias_offset: int | None
    rows: int
    row_len: int
    chunks: int
    first_token: int

    @property
    def num_tokens(self) -> int:
        return self.rows * self.chunks

    @property
    def weight_len(self) -> int:
        """Values per row that come from the weight (row_len without the appended bias)."""
        return self.row_len - (self.bias_offset is not None)


class Tokenizer:
    """Token layout of one parameter list (see the module docstring).

    shapes: the parameter shapes in flat-buffer order. token_size: values per token (T). device: where the maps
    live (that of the flat buffer). Kept: ``spans`` (K, 3) int64 and ``token_layer`` (K,) int32 (28 bytes per
    token, 0.44 bytes per parameter at T = 64), ``layer_numel`` (L,), ``layers``, ``numel``, ``param_layer``.
    ``positions``, ``index`` and ``mask`` are computed when asked for (not kept).
    """

    def __init__(self, shapes: Sequence[Sequence[int]], token_size: int = 64,
                 device: torch.device | str = "cpu"):
        if token_size < 1:
            raise ValueError(f"token_size must be >= 1, got {token_size}")
        shapes = [tuple(int(s) for s in shape) for shape in shapes]
        if not shapes:
            raise ValueError("nothing to tokenise: no parameters")
        self.token_size = token_size
        self.layers: list[Layer] = []
        self.param_layer: list[int] = []  # per parameter, the layer it belongs to (-1: empty, not tokenised)
        offsets = [0]
        for shape in shapes:
            offsets.append(offsets[-1] + math.prod(shape))
        self.numel = offsets[-1]
        i, tokens = 0, 0
        while i < len(shapes):
            shape = shapes[i]
            rows, row_len = (shape[0], math.prod(shape[1:])) if len(shape) >= 2 else (1, math.prod(shape))
            if len(shape) >= 2 and row_len >= token_size:  # one token (or more) per row
                bias = None
                if i + 1 < len(shapes) and shapes[i + 1] == (rows,) and row_len % token_size != 0:
                    bias, row_len = offsets[i + 1], row_len + 1
                layer = Layer(kind_of(len(shape)), shape, offsets[i], bias, rows, row_len,
                              -(-row_len // token_size), tokens)
                members = 2 if bias is not None else 1
            else:  # a vector, or a packed layer (rows shorter than a token): one row of all its values
                n = math.prod(shape)
                layer = Layer(kind_of(len(shape)), shape, offsets[i], None, 1, n, max(1, -(-n // token_size)), tokens)
                members = 1
            if layer.rows * layer.row_len > 0:
                self.param_layer += [len(self.layers)] * members
                self.layers.append(layer)
                tokens += layer.num_tokens
            else:
                self.param_layer += [-1] * members
            i += members
        self.num_tokens = tokens
        self._build_maps(torch.device(device))

    @classmethod
    def for_params(cls, params: Iterable[torch.Tensor], token_size: int = 64) -> "Tokenizer":
        """Tokeniser of ``params`` in order, its maps on the first parameter's device."""
        params = list(params)
        if not params:
            raise ValueError("nothing to tokenise: no parameters")
        return cls([p.shape for p in params], token_size, params[0].device)

    def _build_maps(self, device: torch.device) -> None:
        T = self.token_size
        spans = torch.empty(self.num_tokens, 3, dtype=torch.int64)
        token_layer = torch.empty(self.num_tokens, dtype=torch.int32)
        for li, layer in enumerate(self.layers):
            w_len = layer.weight_len
            first = torch.arange(layer.chunks, dtype=torch.int64) * T                 # chunk starts in a row
            rows = torch.arange(layer.rows, dtype=torch.int64)
            sl = slice(layer.first_token, layer.first_token + layer.num_tokens)
            block = spans[sl].view(layer.rows, layer.chunks, 3)
            block[..., 0] = layer.offset + rows[:, None] * w_len + first[None, :]
            block[..., 1] = (w_len - first).clamp(0, T)[None, :]
            block[..., 2] = -1
            if layer.bias_offset is not None:  # the bias sits right after the weight, in the last chunk
                block[:, -1, 2] = layer.bias_offset + rows
            token_layer[sl] = li
        self.spans = spans.to(device)
        self.token_layer = token_layer.to(device)
        counts = torch.tensor([lay.rows * lay.row_len for lay in self.layers], dtype=torch.float32)
        self.layer_numel = counts.to(device)
        # per layer, for positions: (first token, rows, chunks, kind) and the float features (layer, log sizes)
        self._layer_ints = torch.tensor([[lay.first_token, lay.rows, lay.chunks, KINDS.index(lay.kind)]
                                         for lay in self.layers], dtype=torch.int64).to(device)
        n_layers = len(self.layers)
        self._layer_floats = torch.tensor([[li / max(n_layers - 1, 1), math.log2(lay.rows) / 16,
                                            math.log2(lay.row_len) / 16] for li, lay in enumerate(self.layers)],
                                          dtype=torch.float32).to(device)

    @property
    def device(self) -> torch.device:
        return self.spans.device

    @property
    def positions(self) -> torch.Tensor:
        """(K, POSITION_FEATURES) float32 position of every token (module docstring), on the maps' device."""
        return self.positions_of(slice(0, self.num_tokens))

    def positions_of(self, tokens: slice) -> torch.Tensor:
        """(tokens in the slice, POSITION_FEATURES) float32 positions of a block of tokens, computed on the maps'
        device from the per-layer tables (a few vector ops; nothing per token is kept)."""
        start, stop, _ = tokens.indices(self.num_tokens)
        k = torch.arange(start, stop, device=self.device)
        layer = self.token_layer[start:stop].long()
        first, rows, chunks, kind = self._layer_ints[layer].unbind(1)
        local = k - first
        positions = torch.zeros(len(k), POSITION_FEATURES, dtype=torch.float32, device=self.device)
        floats = self._layer_floats[layer]
        positions[:, 0] = floats[:, 0]
        positions[:, 1] = torch.div(local, chunks, rounding_mode="floor") / (rows - 1).clamp(min=1)
        positions[:, 2] = local % chunks / (chunks - 1).clamp(min=1)
        positions[:, 3:3 + len(KINDS)] = torch.nn.functional.one_hot(kind, len(KINDS)).float()
        positions[:, 3 + len(KINDS):] = floats[:, 1:]
        return positions

    @property
    def index(self) -> torch.Tensor:
        """(K, T) int64 flat offset of every token slot, -1 for padding (computed on demand from ``spans``:
        8 bytes per slot, for training and tests; the kernels read ``spans``)."""
        return spans_to_index(self.spans, self.token_size)

    @property
    def mask(self) -> torch.Tensor:
        """(K, T) bool, True where a token slot holds a parameter (computed on demand)."""
        return self.index >= 0

    def map_bytes(self) -> int:
        """Bytes of the maps this tokeniser keeps on its device (spans, token layers and the per-layer tables)."""
        return sum(t.numel() * t.element_size() for t in (self.spans, self.token_layer, self.layer_numel,
                                                           self._layer_ints, self._layer_floats))

    def tokenize(self, flat: torch.Tensor) -> torch.Tensor:
        """(..., K, T) tokens of ``flat`` (..., >= numel elements), e.g. one buffer (N,) or a trajectory (S, N), in
        flat's dtype; padding is 0. One gather."""
        if flat.dim() < 1 or flat.shape[-1] < self.numel:
            raise ValueError(f"the flat buffer(s) must have at least {self.numel} elements in the last dimension, "
                             f"got shape {tuple(flat.shape)}")
        self._check_device(flat)
        index = self.index
        return flat[..., index.clamp(min=0)] * (index >= 0)

    def detokenize(self, tokens: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Scatter (K, T) ``tokens`` into ``out`` (1-D, >= numel elements) in place (padding ignored); returns out.
        Elements of ``out`` past ``numel`` are left as they are."""
        self._check_flat(out)
        if tuple(tokens.shape) != (self.num_tokens, self.token_size):
            raise ValueError(f"tokens must be ({self.num_tokens}, {self.token_size}), got {tuple(tokens.shape)}")
        index = self.index
        mask = index >= 0
        out[index[mask]] = tokens[mask].to(out.dtype)
        return out

    def layer_rms(self, tokens: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
        """(L,) float32 root-mean-square of every layer's values (bias included) from its (K, T) tokens, floored
        at ``eps``: a zero layer (a norm bias at initialisation) then normalises to zeros, not NaNs, and a tiny
        one is not blown up to unit scale (the zoo's weights are O(0.01..1))."""
        sq = (tokens.float() ** 2).sum(dim=1)
        total = torch.zeros(len(self.layers), dtype=torch.float32, device=tokens.device)
        total.index_add_(0, self.token_layer, sq)
        return (total / self.layer_numel).sqrt().clamp(min=eps)

    def layer_rms_of_params(self, params: Sequence[torch.Tensor], eps: float = 1e-2) -> torch.Tensor:
        """Same as :meth:`layer_rms`, from the parameters themselves (one multi-tensor norm, no gather)."""
        if len(params) != len(self.param_layer):
            raise ValueError(f"expected {len(self.param_layer)} parameters, got {len(params)}")
        keep = [i for i, layer in enumerate(self.param_layer) if layer >= 0]
        norms = torch.stack(torch._foreach_norm([params[i].detach().float() for i in keep]))
        total = torch.zeros(len(self.layers), dtype=torch.float32, device=norms.device)
        total.index_add_(0, torch.tensor([self.param_layer[i] for i in keep], device=norms.device), norms ** 2)
        return (total / self.layer_numel).sqrt().clamp(min=eps)

    def _check_flat(self, flat: torch.Tensor) -> None:
        if flat.dim() != 1 or flat.numel() < self.numel:
            raise ValueError(f"the flat buffer must be 1-D with at least {self.numel} elements, got shape "
                             f"{tuple(flat.shape)}")
        self._check_device(flat)

    def _check_device(self, flat: torch.Tensor) -> None:
        if flat.device != self.device:
            raise ValueError(f"the flat buffer is on {flat.device}, the tokeniser's maps on {self.device}")


def spans_to_index(spans: torch.Tensor, token_size: int) -> torch.Tensor:
    """(K, T) int64 flat offsets of the token slots described by ``spans`` (K, 3) = (start, count, bias_offset):
    slot j < count -> start + j; slot count -> bias_offset when that is >= 0; -1 elsewhere (padding)."""
    j = torch.arange(token_size, device=spans.device)
    start, count, bias = spans[:, :1], spans[:, 1:2], spans[:, 2:3]
    index = torch.where(j < count, start + j, torch.full_like(start, -1).expand(-1, token_size))
    return torch.where((j == count) & (bias >= 0), bias.expand(-1, token_size), index)
