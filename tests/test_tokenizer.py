"""The weight tokeniser: exact round trip over every supported layer kind and odd shapes, layout and positions."""
import math

import pytest
import torch
from torch import nn

from weightcast.wsl import POSITION_FEATURES, Tokenizer


class EveryKind(nn.Module):
    """One of each supported layer kind, with odd sizes."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 7)
        self.lin = nn.Linear(13, 5)
        self.lin_nobias = nn.Linear(9, 3, bias=False)
        self.conv1 = nn.Conv1d(3, 4, 5)
        self.conv2 = nn.Conv2d(2, 3, (3, 2))
        self.conv3 = nn.Conv3d(1, 2, 2)
        self.bn = nn.BatchNorm2d(3)
        self.ln = nn.LayerNorm(7)
        self.attn = nn.MultiheadAttention(6, 2)
        self.scalar = nn.Parameter(torch.tensor(0.5))
        self.long = nn.Linear(300, 2)  # rows longer than a token: chunks


def flat_of(params):
    return torch.cat([p.detach().reshape(-1) for p in params])


@pytest.mark.parametrize("token_size", [1, 5, 16, 64, 301])
def test_round_trip_is_exact_for_every_kind(token_size):
    torch.manual_seed(0)
    params = list(EveryKind().parameters())
    for p in params:
        p.data.normal_()
    tok = Tokenizer.for_params(params, token_size)
    flat = torch.cat([flat_of(params), torch.randn(9)])  # padding past numel, as a Bucket has
    tokens = tok.tokenize(flat)
    assert tokens.shape == (tok.num_tokens, token_size)
    assert bool((tokens[~tok.mask] == 0).all())
    out = torch.full_like(flat, float("nan"))
    out[tok.numel:] = flat[tok.numel:]
    tok.detokenize(tokens, out)
    assert torch.equal(out, flat)
    # every parameter element is in exactly one token slot
    covered = tok.index[tok.mask]
    assert torch.equal(covered.sort().values, torch.arange(tok.numel))


def test_layout_bias_appended_and_kinds():
    lin = nn.Linear(10, 3)      # rows of 10 >= T = 8: a row per token pair, the bias appended (11 values)
    exact = nn.Linear(8, 3)     # rows of exactly T: the bias would need a token of its own per row -> a vector
    short = nn.Linear(4, 3)     # rows shorter than T: packed (12 values in 2 tokens), the bias a vector
    conv = nn.Conv2d(2, 5, 3)
    ln = nn.LayerNorm(6)
    params = [lin.weight, lin.bias, exact.weight, exact.bias, short.weight, short.bias, conv.weight, conv.bias,
              ln.weight, ln.bias]
    tok = Tokenizer.for_params(params, token_size=8)
    kinds = [layer.kind for layer in tok.layers]
    assert kinds == ["matrix", "matrix", "vector", "matrix", "vector", "conv2d+", "vector", "vector"]
    assert tok.param_layer == [0, 0, 1, 2, 3, 4, 5, 5, 6, 7]
    assert [(lay.rows, lay.row_len, lay.chunks) for lay in tok.layers[:5]] == \
        [(3, 11, 2), (3, 8, 1), (1, 3, 1), (1, 12, 2), (1, 3, 1)]
    flat = flat_of(params)
    tokens = tok.tokenize(flat)
    # the Linear's row 0: 8 weights, then 2 weights + bias[0] + padding
    assert torch.equal(tokens[0], lin.weight[0, :8].detach())
    assert torch.equal(tokens[1, :3], torch.cat([lin.weight[0, 8:], lin.bias[:1]]).detach())
    assert bool((tokens[1, 3:] == 0).all())
    assert tuple(tok.spans[1].tolist()) == (8, 2, 30)  # start, count, bias offset (after the 3 x 10 weight)
    # the packed Linear: its 12 weights in order over two tokens, no bias inside
    first = tok.layers[3].first_token
    assert torch.equal(tokens[first:first + 2].reshape(-1)[:12], short.weight.detach().reshape(-1))
    # the conv rows are 2*3*3 + 1 = 19 values: 3 chunks of 8
    conv_layer = tok.layers[5]
    assert (conv_layer.rows, conv_layer.row_len, conv_layer.chunks) == (5, 19, 3)
    row1 = torch.cat([tokens[conv_layer.first_token + 3 + c] for c in range(3)])[:19]
    assert torch.equal(row1, torch.cat([conv.weight[1].reshape(-1), conv.bias[1:2]]).detach())


def test_reference_models_fill_their_tokens():
    """At T = 64 the reference models' tokens are >= 89% full, so a window of 5 latents of d = 8 plus the maps
    stays below one float32 copy of the parameters."""
    from weightcast import models

    for name, kwargs in [("lenet5", {}), ("mlp", {}), ("gpt", {"vocab_size": 96}),
                         ("gpt", {"vocab_size": 50, "n_layer": 1, "n_embd": 32, "n_head": 2})]:
        params = list(models.get(name, **kwargs).parameters())
        tok = Tokenizer.for_params(params, 64)
        numel = sum(p.numel() for p in params)
        assert numel / (tok.num_tokens * 64) > 0.89, name
        assert 5 * tok.num_tokens * 8 * 4 + tok.map_bytes() < 4 * numel, name


def test_positions_are_normalised():
    for model in (nn.Sequential(nn.Linear(3, 2)), EveryKind()):
        tok = Tokenizer.for_params(list(model.parameters()), 16)
        pos = tok.positions
        assert pos.shape == (tok.num_tokens, POSITION_FEATURES)
        assert bool((pos >= 0).all()) and bool((pos <= 1).all())
        assert bool((pos[:, 3:7].sum(1) == 1).all())  # one kind each


def test_layer_rms_two_ways_agree():
    torch.manual_seed(1)
    params = list(EveryKind().parameters())
    tok = Tokenizer.for_params(params, 16)
    a = tok.layer_rms(tok.tokenize(flat_of(params)))
    b = tok.layer_rms_of_params(params)
    torch.testing.assert_close(a, b)
    assert bool((a >= 1e-2).all())


def test_errors():
    with pytest.raises(ValueError, match="no parameters"):
        Tokenizer([], 8)
    with pytest.raises(ValueError, match="token_size"):
        Tokenizer([(2, 2)], 0)
    tok = Tokenizer([(2, 3)], 4)
    with pytest.raises(ValueError, match="at least 6"):
        tok.tokenize(torch.zeros(5))
    with pytest.raises(ValueError, match="tokens must be"):
        tok.detokenize(torch.zeros(3, 4), torch.zeros(6))


def test_positions_of_blocks_match_the_per_layer_definition():
    """Positions computed from the per-layer tables (any block of tokens) equal the definition of the module
    docstring, written out layer by layer."""
    from weightcast.wsl.tokenizer import KINDS

    params = list(EveryKind().parameters())
    tok = Tokenizer.for_params(params, 5)
    expected = torch.zeros(tok.num_tokens, POSITION_FEATURES)
    for li, layer in enumerate(tok.layers):
        pos = expected[layer.first_token:layer.first_token + layer.num_tokens]
        pos[:, 0] = li / (len(tok.layers) - 1)
        pos[:, 1] = torch.arange(layer.rows).repeat_interleave(layer.chunks) / max(layer.rows - 1, 1)
        pos[:, 2] = torch.arange(layer.chunks).repeat(layer.rows) / max(layer.chunks - 1, 1)
        pos[:, 3 + KINDS.index(layer.kind)] = 1.0
        pos[:, 7] = math.log2(layer.rows) / 16
        pos[:, 8] = math.log2(layer.row_len) / 16
    assert torch.equal(tok.positions, expected)
    assert torch.equal(tok.positions_of(slice(7, 30)), expected[7:30])
