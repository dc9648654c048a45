"""The latent forecaster's fused ops (tokenize_encode, decode_overwrite) on every available backend against the
pure-PyTorch reference, for random layouts with odd shapes."""
import pytest
import torch

from weightcast import ops
from weightcast.ops import latent_reference as reference
from weightcast.wsl import Tokenizer

LAYOUTS = [
    [(7, 5), (7,), (3, 2, 3, 3), (11,), ()],
    [(1, 1)],
    [(4, 300), (4,), (65,), (2, 3, 7)],
    [(3, 20), (3,), (6, 16), (6,), (5, 3), (5,)],  # at T = 16: bias appended, bias of its own, packed rows
]
# (layout, token size T, hidden H): odd and power-of-two sizes, one token to a few hundred
CASES = [(LAYOUTS[0], 16, 24), (LAYOUTS[1], 5, 7), (LAYOUTS[2], 64, 128), (LAYOUTS[0], 5, 7), (LAYOUTS[2], 16, 24),
         (LAYOUTS[3], 16, 24)]


def backends():
    found = set(ops.available_backends("cpu", "tokenize_encode")) & set(
        ops.available_backends("cpu", "decode_overwrite"))
    if torch.cuda.is_available():
        found |= {f"cuda:{b}" for b in ops.available_backends("cuda", "tokenize_encode")}
    return sorted(found)


def _setup(layout, token_size, hidden, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    tok = Tokenizer(layout, token_size, device)
    K = tok.num_tokens
    rand = lambda *s: torch.randn(*s, generator=g).to(device)  # noqa: E731
    flat = rand(tok.numel + 7)
    scale = (torch.rand(K, generator=g) + 0.5).to(device)
    return tok, flat, scale, rand


def _split(backend):
    return ("cuda", backend[5:]) if backend.startswith("cuda:") else ("cpu", backend)


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("layout,token_size,hidden", CASES)
def test_tokenize_encode_matches_reference(backend, layout, token_size, hidden):
    device, name = _split(backend)
    tok, flat, scale, rand = _setup(layout, token_size, hidden, device)
    weight, bias = rand(hidden, token_size), rand(tok.num_tokens, hidden)
    expected = reference.tokenize_encode(flat, tok.spans, scale, weight, bias)
    with ops.use_backend(name):
        got = ops.tokenize_encode(flat, tok.spans, scale, weight, bias)
    assert got.shape == (tok.num_tokens, hidden) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("layout,token_size,hidden", CASES)
@pytest.mark.parametrize("accumulate,with_bias", [(True, False), (False, True), (True, True)])
def test_decode_overwrite_matches_reference(backend, layout, token_size, hidden, accumulate, with_bias):
    device, name = _split(backend)
    tok, flat, scale, rand = _setup(layout, token_size, hidden, device, seed=1)
    hid, weight = rand(tok.num_tokens, hidden), rand(token_size, hidden)
    bias = rand(token_size) if with_bias else None
    expected = flat.clone()
    reference.decode_overwrite(expected, hid, weight, bias, tok.spans, scale, accumulate)
    got = flat.clone()
    with ops.use_backend(name):
        ops.decode_overwrite(got, hid, weight, bias, tok.spans, scale, accumulate)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(got[tok.numel:], flat[tok.numel:])  # past the parameters: untouched


def test_reference_is_the_unfused_composition():
    """tokenize_encode = first layer over tokenize(); decode_overwrite(accumulate=False) = detokenize(decode)."""
    tok, flat, scale, rand = _setup(LAYOUTS[0], 8, 12, "cpu", seed=2)
    weight, bias = rand(12, 8), rand(tok.num_tokens, 12)
    x = tok.tokenize(flat) * scale[:, None]
    torch.testing.assert_close(ops.tokenize_encode(flat, tok.spans, scale, weight, bias), bias + x @ weight.t())
    hid, w2 = rand(tok.num_tokens, 12), rand(8, 12)
    out = flat.clone()
    ops.decode_overwrite(out, hid, w2, None, tok.spans, scale, False)
    expected = tok.detokenize((hid @ w2.t()) * scale[:, None], flat.clone())
    torch.testing.assert_close(out, expected)


def test_half_parameters_run_the_reference():
    tok, flat, scale, rand = _setup(LAYOUTS[0], 8, 12, "cpu", seed=3)
    half = flat.half()
    weight, bias = rand(12, 8), rand(tok.num_tokens, 12)
    torch.testing.assert_close(ops.tokenize_encode(half, tok.spans, scale, weight, bias),
                               reference.tokenize_encode(half, tok.spans, scale, weight, bias))
    out = half.clone()
    ops.decode_overwrite(out, rand(tok.num_tokens, 12), rand(8, 12), None, tok.spans, scale, True)
    assert out.dtype == torch.float16 and bool(torch.isfinite(out).all())


def test_errors_are_clear():
    tok, flat, scale, rand = _setup(LAYOUTS[0], 8, 12, "cpu")
    with pytest.raises(ValueError, match="weight must be"):
        ops.tokenize_encode(flat, tok.spans, scale, rand(12, 8, 1), rand(tok.num_tokens, 12))
    with pytest.raises(ValueError, match="spans do not fit"):  # tokens of 8 values, a weight for tokens of 5
        ops.tokenize_encode(flat, tok.spans, scale, rand(12, 5), rand(tok.num_tokens, 12))
    with pytest.raises(ValueError, match="spans do not fit"):  # a buffer shorter than the parameters
        ops.decode_overwrite(flat[:tok.numel - 1], rand(tok.num_tokens, 12), rand(8, 12), None, tok.spans, scale,
                             True)
    with pytest.raises(ValueError, match="spans must be"):
        ops.tokenize_encode(flat, tok.spans.int(), scale, rand(12, 8), rand(tok.num_tokens, 12))
    with pytest.raises(ValueError, match="scale must be"):
        ops.decode_overwrite(flat, rand(tok.num_tokens, 12), rand(8, 12), None, tok.spans, scale[:-1], True)


def test_opcheck():
    tok, flat, scale, rand = _setup(LAYOUTS[0], 8, 12, "cpu")
    torch.library.opcheck(ops.tokenize_encode, (flat, tok.spans, scale, rand(12, 8), rand(tok.num_tokens, 12)),
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(ops.decode_overwrite, (flat.clone(), rand(tok.num_tokens, 12), rand(8, 12), None,
                                                 tok.spans, scale, True), test_utils=("test_schema", "test_faketensor"))


def test_spans_are_checked_once_per_table_and_again_after_a_change():
    """Blocks of a checked spans table are trusted; an in-place change of the table is caught at the next call."""
    from weightcast.ops import latent as latent_ops

    tok, flat, scale, rand = _setup(LAYOUTS[2], 16, 12, "cpu")
    weight, bias = rand(12, 16), rand(tok.num_tokens, 12)
    ops.tokenize_encode(flat, tok.spans, scale, weight, bias)
    assert getattr(tok.spans, latent_ops.CHECKED_ATTR)[:2] == (16, flat.numel())
    block = slice(2, 7)
    view = tok.spans[block]
    ops.tokenize_encode(flat, view, scale[block], weight, bias[block])  # a block of the checked table
    assert not hasattr(view, latent_ops.CHECKED_ATTR)
    tok.spans[3, 1] = 17  # a count longer than a token, written through the table
    with pytest.raises(ValueError, match="spans do not fit"):
        ops.tokenize_encode(flat, tok.spans[block], scale[block], weight, bias[block])
