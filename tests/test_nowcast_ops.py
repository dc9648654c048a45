"""The fused nowcaster op ``weightcast::nowcast_forecast``: every backend against the reference (which is
``predict_tensor``, the one definition of the math) on fresh random inputs, odd sizes, several model configs and
horizons; non-finite inputs; the forecaster's predict (the study's multi-horizon guard) and forecast (the optimizer
engine) paths; errors and limits."""
import pytest
import torch

import weightcast as wc
from weightcast.forecasters import nowcast
from weightcast.forecasters.nowcast import NowcastForecaster, init_nowcast, param_type, predict_tensor
from weightcast.ops import BackendUnavailableError, available_backends, use_backend
from weightcast.ops.limits import NOWCAST_MAX_HIDDEN
from weightcast.ops.nowcast_forecast import mlp_numel, nowcast_forecast, pack_mlp, unpack_mlp

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
BACKEND_CASES = [(d, b) for d in DEVICES for b in available_backends(d, "nowcast_forecast") if b != "reference"]
# (window, hidden, embed, k_max): the shipped size, the smallest, odd sizes, the kernels' limits
CONFIGS = [(5, 32, 8, 32), (2, 1, 0, 1), (7, 20, 3, 5), (16, 64, 64, 64)]
# float32 outputs: backends sum in another order (and fuse multiply-adds); float16/bfloat16: one rounding of the output
TOL = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def random_model(window, hidden, embed, k_max, seed):
    """A nowcaster with every weight non-zero (init_nowcast's output layers start at zero)."""
    g = torch.Generator().manual_seed(seed)
    t = init_nowcast(window, hidden, k_max, embed, seed=seed)
    return {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in t.items()}


def random_history(lengths, window, seed, gap=3):
    """History (W, N) of segments ``lengths`` (gaps of ``gap`` unused columns between them), each a drifting
    random walk with its own offset and scale and one outlier element (clamped differences); the last non-empty
    segment is constant (sigma = 0)."""
    g = torch.Generator().manual_seed(seed)
    offsets, cols = [], 0
    for n in lengths:
        offsets.append(cols)
        cols += n + gap
    history = torch.randn(window, cols, generator=g)
    for i, (start, n) in enumerate(zip(offsets, lengths)):
        base = torch.randn(n, generator=g) * (i + 1) + i
        drift = torch.randn(n, generator=g) * 0.05
        steps = torch.randn(window, n, generator=g).mul(0.01).cumsum(0)
        history[:, start:start + n] = base + drift * torch.arange(window)[:, None] + steps
        if n > 4:  # an outlier element whose differences exceed the clamp (+-20 typical moves)
            history[:, start] += torch.arange(window) * 50.0 * drift.abs().mean()
    last = max((i for i, n in enumerate(lengths) if n), default=None)
    if last is not None and lengths[last] > 1:
        history[:, offsets[last]:offsets[last] + lengths[last]] = 1.0
    return history, offsets


def run(backend, history, order, offsets, lengths, types, rows, tensors, cfg, dtype):
    window, hidden, embed, k_max = cfg
    out = torch.full((len(rows), history.shape[1]), float("nan"), dtype=dtype, device=history.device)
    with use_backend(backend):
        nowcast_forecast(out, history, order, offsets, lengths, types, rows, pack_mlp(tensors).to(history.device),
                         hidden, embed, k_max)
    return out


def segment_values(out, offsets, lengths):
    return torch.cat([out[:, s:s + n] for s, n in zip(offsets, lengths)], dim=1)


@pytest.mark.parametrize("device,backend", BACKEND_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cfg,lengths", [(CONFIGS[0], [7, 0, 130, 1, 333]), (CONFIGS[1], [1]),
                                         (CONFIGS[2], [129, 5, 64, 2]), (CONFIGS[3], [300, 17])])
def test_backends_match_reference(device, backend, dtype, cfg, lengths):
    if backend == "triton" and device == "cpu" and dtype == torch.bfloat16:
        pytest.skip("bf16 is not run in Triton's interpreter")
    window, hidden, embed, k_max = cfg
    seed = sum(lengths) + window
    history, offsets = random_history(lengths, window, seed)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(window, generator=g).tolist()
    history = history[torch.argsort(torch.tensor(order))]  # row order[k] holds the k-th state
    types = torch.randint(0, len(nowcast.PARAM_TYPES), (len(lengths),), generator=g).tolist()
    k = k_max
    rows = sorted({k - 1, max(k // 2, 1) - 1, max(k // 4, 1) - 1})  # the guard's k, k/2, k/4 in one call
    tensors = random_model(window, hidden, embed, k_max, seed)
    history = history.to(device, dtype)
    expected = run("reference", history, order, offsets, lengths, types, rows, tensors, cfg, dtype)
    got = run(backend, history, order, offsets, lengths, types, rows, tensors, cfg, dtype)
    exp, res = segment_values(expected, offsets, lengths), segment_values(got, offsets, lengths)
    assert torch.isfinite(exp).all()
    torch.testing.assert_close(res.float(), exp.float(), rtol=TOL[dtype], atol=TOL[dtype])
    gaps = torch.ones(history.shape[1], dtype=torch.bool)
    for s, n in zip(offsets, lengths):
        gaps[s:s + n] = False
    assert torch.isnan(got[:, gaps.to(device)].float()).all()  # columns outside the segments are not written


@pytest.mark.parametrize("device,backend", BACKEND_CASES)
def test_every_horizon_of_the_shipped_model(device, backend):
    f = wc.forecasters.get("nowcast")
    cfg = (f.window, int(f.config["hidden"]), int(f.config["embed"]), f.k_max)
    lengths = [65, 3, 200]
    history, offsets = random_history(lengths, f.window, seed=5)
    rows = list(range(f.k_max))
    args = (history.to(device), list(range(f.window)), offsets, lengths, [1, 2, 0], rows, f.tensors, cfg,
            torch.float32)
    expected, got = run("reference", *args), run(backend, *args)
    torch.testing.assert_close(segment_values(got, offsets, lengths), segment_values(expected, offsets, lengths),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device,backend", BACKEND_CASES)
def test_non_finite_windows_give_non_finite_forecasts_where_the_reference_does(device, backend):
    cfg = CONFIGS[2]
    lengths = [40, 33, 50]
    history, offsets = random_history(lengths, cfg[0], seed=11)
    history[2, offsets[0] + 5] = float("nan")
    history[0, offsets[1] + 7] = float("inf")
    tensors = random_model(*cfg, seed=1)
    args = (history.to(device), list(range(cfg[0])), offsets, lengths, [1, 1, 2], [0, 4], tensors, cfg, torch.float32)
    expected, got = run("reference", *args), run(backend, *args)
    exp, res = segment_values(expected, offsets, lengths), segment_values(got, offsets, lengths)
    assert not torch.isfinite(exp[:, :73]).any() and torch.isfinite(exp[:, 73:]).all()
    assert torch.equal(torch.isfinite(res), torch.isfinite(exp))
    torch.testing.assert_close(res[:, 73:], exp[:, 73:], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif("cpp" not in available_backends("cpu", "nowcast_forecast"), reason="weightcast._C not built")
def test_cpp_result_does_not_depend_on_the_number_of_threads():
    cfg = CONFIGS[0]
    lengths = [70_000, 5, 40_000]
    history, offsets = random_history(lengths, cfg[0], seed=2)
    args = (history, list(range(cfg[0])), offsets, lengths, [1, 2, 0], [3, 31], random_model(*cfg, seed=2), cfg,
            torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run("cpp", *args)
        torch.set_num_threads(2)
        two = run("cpp", *args)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(segment_values(one, offsets, lengths), segment_values(two, offsets, lengths))


def model_forecaster(cfg=CONFIGS[0], seed=0):
    window, hidden, embed, k_max = cfg
    return NowcastForecaster(tensors=random_model(*cfg, seed=seed),
                             config={"window": window, "hidden": hidden, "embed": embed, "k_max": k_max})


@pytest.mark.parametrize("backend", available_backends("cpu", "nowcast_forecast"))
def test_predict_gives_every_requested_horizon_of_every_tensor(backend):
    """The study's guard path: several tensors of different types, k, k/2, k/4 and 0 from one call."""
    f = model_forecaster()
    g = torch.Generator().manual_seed(3)
    shapes = [(4, 1, 3, 3), (4,), (10, 36), (1,), (20, 8), (12, 8)]
    names = ["conv.weight", "conv.bias", "fc.weight", "ln.weight", "wte.weight", "attn.qkv.weight"]
    windows = [torch.randn(*s, generator=g) + 0.02 * torch.randn(*s, generator=g) * torch.arange(5.0).view(
        5, *[1] * len(s)) for s in [(5, *shape) for shape in shapes]]
    ks = [16, 8, 4, 0]
    with use_backend(backend):
        preds = f.predict(windows, ks, names)
    for w, name, pred in zip(windows, names, preds):
        expected = predict_tensor(f.tensors, w, param_type(w.shape[1:], name), ks)
        for p, e in zip(pred, expected):
            assert p.shape == e.shape and p.dtype == e.dtype
            if backend == "reference":
                assert torch.equal(p, e)
            else:
                torch.testing.assert_close(p, e, rtol=1e-4, atol=1e-4)
    assert torch.equal(preds[0][3], windows[0][-1])


@pytest.mark.parametrize("backend", available_backends("cpu", "nowcast_forecast"))
@pytest.mark.parametrize("history_dtype", [None, torch.bfloat16, torch.float16])
def test_engine_path_equals_the_reference_math(backend, history_dtype):
    """forecast() on the engine's history buffer: bit for bit the reference math on the reference backend (float32
    history), within float32 rounding on the kernels, and within the history's rounding for bf16/fp16 storage."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 5),
                                torch.nn.LayerNorm(5))
    f = model_forecaster()
    f.history_dtype = history_dtype
    opt = wc.Forecast(torch.optim.SGD(model.parameters(), lr=0.05), f, window=5, record_every=2, jump_every=10 ** 6,
                      horizon=2)
    x = torch.randn(8, 1, 4, 4)
    for _ in range(10):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    bucket = opt.engine.buckets[0][1]
    assert bucket.history.dtype == (history_dtype or torch.float32)
    steps = list(bucket.slot_steps)
    order = sorted(range(5), key=lambda i: steps[i])
    with use_backend(backend):
        got = f.forecast(bucket, steps, max(steps) + 3 * 2)
    for i, shape in enumerate(bucket.shapes):
        window = bucket.history[order][:, bucket.segment(i)].reshape(5, *shape).float().contiguous()
        expected = predict_tensor(f.tensors, window, param_type(shape), [3])[0].reshape(-1)
        if backend == "reference":
            assert torch.equal(got[i], expected)
        else:
            torch.testing.assert_close(got[i], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", available_backends("cpu", "nowcast_forecast"))
def test_engine_skips_a_jump_whose_forecast_is_not_finite(backend):
    p = torch.nn.Parameter(torch.linspace(-1, 1, 12))
    opt = wc.Forecast(torch.optim.SGD([p], lr=0.1), model_forecaster(), window=5, record_every=1, jump_every=5,
                      horizon=2)
    start = p.detach().clone()
    with use_backend(backend), pytest.warns(RuntimeWarning, match="not finite"):
        for step in range(5):  # records at steps 1..5, the jump after step 5
            p.grad = torch.ones(12)
            opt.step()
            if step == 2:
                with torch.no_grad():
                    p[3] = float("inf")
    assert opt.engine.num_skipped_jumps == 1 and opt.num_jumps == 0
    expected = start - 0.1 * 5
    expected[3] = float("inf")
    torch.testing.assert_close(p.detach(), expected)  # left as the base optimizer put it


def test_errors_and_models_beyond_the_kernels():
    cfg = CONFIGS[2]
    window, hidden, embed, k_max = cfg
    history, offsets = random_history([5, 6], window, seed=0)
    mlp = pack_mlp(random_model(*cfg, seed=0))
    out = torch.empty(1, history.shape[1])
    good = dict(order=list(range(window)), offsets=offsets, numels=[5, 6], types=[0, 1], rows=[0])

    def call(**kw):
        a = dict(good, **kw)
        nowcast_forecast(kw.get("out", out), history, a["order"], a["offsets"], a["numels"], a["types"], a["rows"],
                         kw.get("mlp", mlp), hidden, embed, k_max)

    with pytest.raises(ValueError, match="permutation"):
        call(order=[0] * window)
    with pytest.raises(ValueError, match="previous segment"):
        call(offsets=[0, 3])
    with pytest.raises(ValueError, match="rows"):
        call(rows=[k_max])
    with pytest.raises(ValueError, match="types"):
        call(types=[0, 6])
    with pytest.raises(ValueError, match="mlp must be"):
        call(mlp=mlp[:-1])
    assert unpack_mlp(mlp, *cfg)["skip"].shape == (k_max, window + 1)
    # float64 and models wider than the kernels run on the reference; asking a kernel for them is an error
    wide = (window, NOWCAST_MAX_HIDDEN + 1, embed, k_max)
    wide_mlp = pack_mlp(random_model(*wide, seed=0))
    assert wide_mlp.numel() == mlp_numel(*wide)
    for h, m, dtype in ((history.double(), mlp, torch.float64), (history, wide_mlp, torch.float32)):
        width = wide[1] if m is wide_mlp else hidden
        o = torch.empty(1, h.shape[1], dtype=dtype)
        nowcast_forecast(o, h, list(range(window)), offsets, [5, 6], [0, 1], [0], m, width, embed, k_max)
        assert torch.isfinite(o[:, :5]).all()
        for backend in set(available_backends("cpu", "nowcast_forecast")) - {"reference"}:
            with use_backend(backend), pytest.raises(BackendUnavailableError, match="reference"):
                nowcast_forecast(o, h, list(range(window)), offsets, [5, 6], [0, 1], [0], m, width, embed, k_max)


@pytest.mark.skipif("cpp" not in available_backends("cpu", "nowcast_forecast"), reason="weightcast._C not built")
def test_native_op_checks_and_meta():
    cfg = CONFIGS[2]
    window, hidden, embed, k_max = cfg
    history, offsets = random_history([5, 6], window, seed=0)
    mlp = pack_mlp(random_model(*cfg, seed=0))
    args = [list(range(window)), offsets, [5, 6], [0, 1], [0, 2]]
    meta = [t.to("meta") for t in (torch.empty(2, history.shape[1]), history)]
    torch.ops.weightcast_C.nowcast_forecast(*meta, *args, mlp.to("meta"), hidden, embed, k_max)
    op = torch.ops.weightcast_C.nowcast_forecast
    with pytest.raises(RuntimeError, match="hidden must be"):
        op(torch.empty(2, history.shape[1]), history, *args, mlp, NOWCAST_MAX_HIDDEN + 1, embed, k_max)
    with pytest.raises(RuntimeError, match="permutation"):
        op(torch.empty(2, history.shape[1]), history, [0] * window, *args[1:], mlp, hidden, embed, k_max)
    with pytest.raises(RuntimeError, match="overlap"):
        op(history[:2], history, *args, mlp, hidden, embed, k_max)
    with pytest.raises(RuntimeError, match="out must be"):
        op(torch.empty(1, history.shape[1]), history, *args, mlp, hidden, embed, k_max)


def test_opcheck():
    cfg = CONFIGS[2]
    history, offsets = random_history([9, 30], cfg[0], seed=1)
    out = torch.empty(2, history.shape[1])
    torch.library.opcheck(torch.ops.weightcast.nowcast_forecast.default,
                          (out, history, list(range(cfg[0])), offsets, [9, 30], [0, 3], [0, 4],
                           pack_mlp(random_model(*cfg, seed=1)), cfg[1], cfg[2], cfg[3]),
                          test_utils=("test_schema", "test_faketensor"))
