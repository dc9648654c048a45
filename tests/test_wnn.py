"""The "wnn" forecaster and its fused op ``weightcast::wnn_forecast``: every backend against the reference, the
forecaster against the training math, the shipped weights, and the optimizer path."""
import json

import pytest
import torch

import weightcast as wc
from weightcast.forecasters import io
from weightcast.forecasters.train import wnn_predict
from weightcast.forecasters.wnn import WNNForecaster, init_wnn, segment_stats
from weightcast.ops import available_backends, use_backend
from weightcast.ops.wnn_forecast import mlp_numel, reference, wnn_forecast

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _inputs(lengths, window, hidden, device, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    history = torch.randn(window, n, generator=g).to(device, dtype)
    order = torch.randperm(window, generator=g).to(device)
    offsets = torch.tensor([0] + list(lengths)).cumsum(0).to(device)
    s = len(lengths)
    stats = (torch.randn(s, 4, generator=g) * torch.tensor([1.0, 0.5, 1.0, 0.1])).to(device)
    kinds = torch.randint(0, 3, (s,), generator=g, dtype=torch.int32).to(device)
    mlp = (torch.randn(mlp_numel(window, hidden), generator=g) * 0.3).to(device)
    return history, order, offsets, stats, kinds, mlp


BACKEND_CASES = [(d, b) for d in DEVICES for b in available_backends(d, "wnn_forecast") if b != "reference"]


@pytest.mark.parametrize("device,backend", BACKEND_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("lengths,window,hidden", [([7, 100, 1, 0, 333], 5, 16), ([1], 2, 1),
                                                   ([1025, 3, 65], 7, 32), ([50] * 40, 3, 5)])
def test_backends_match_reference(device, backend, dtype, lengths, window, hidden):
    if backend == "triton" and device == "cpu" and dtype == torch.bfloat16:
        pytest.skip("bf16 is not run in Triton's interpreter")
    history, order, offsets, stats, kinds, mlp = _inputs(lengths, window, hidden, device, dtype, seed=sum(lengths))
    expected = torch.empty(history.shape[1], device=device, dtype=dtype)
    with use_backend("reference"):
        wnn_forecast(expected, history, order, offsets, stats, kinds, mlp, hidden)
    got = torch.full_like(expected, float("nan"))
    with use_backend(backend):
        wnn_forecast(got, history, order, offsets, stats, kinds, mlp, hidden)
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(got.float(), expected.float(), rtol=tol, atol=tol)


def test_reference_float64_and_errors():
    history, order, offsets, stats, kinds, mlp = _inputs([5, 6], 4, 8, "cpu", torch.float64, 0)
    out = torch.empty(11, dtype=torch.float64)
    wnn_forecast(out, history, order, offsets, stats, kinds, mlp, 8)
    out32 = torch.empty(11)
    reference(out32, history.float(), order, offsets, stats, kinds, mlp, 8)
    torch.testing.assert_close(out.float(), out32)
    with pytest.raises(ValueError, match="permutation"):
        wnn_forecast(out, history, torch.zeros(4, dtype=torch.int64), offsets, stats, kinds, mlp, 8)
    with pytest.raises(ValueError, match="offsets"):
        wnn_forecast(out, history, order, torch.tensor([0, 5, 10]), stats, kinds, mlp, 8)
    with pytest.raises(ValueError, match="mlp"):
        wnn_forecast(out, history, order, offsets, stats, kinds, mlp[:-1], 8)


def test_opcheck():
    history, order, offsets, stats, kinds, mlp = _inputs([9, 30], 5, 16, "cpu", torch.float32, 1)
    out = torch.empty(39)
    torch.library.opcheck(torch.ops.weightcast.wnn_forecast.default,
                          (out, history, order, offsets, stats, kinds, mlp, 16),
                          test_utils=("test_schema", "test_faketensor"))


def _trained_like(window=5, hidden=16):
    tensors = init_wnn(window, hidden, seed=3)
    g = torch.Generator().manual_seed(4)
    return {k: v + 0.2 * torch.randn(v.shape, generator=g) for k, v in tensors.items()}


def test_forecaster_matches_training_math():
    """The jump (stats + fused op) equals the differentiable model the training optimises."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.Flatten(), torch.nn.Linear(12, 2))
    tensors = _trained_like()
    f = WNNForecaster(tensors=tensors, config={"window": 5, "hidden": 16, "max_horizon": 6})
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster=f, window=5, record_every=2, jump_every=1000)
    bucket = opt.engine.buckets[0][1]
    x = torch.randn(8, 1, 4, 4)
    for _ in range(10):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    steps = list(bucket.slot_steps)
    pred = f.forecast(bucket, steps, max(steps) + 5)  # h = 2.5 record intervals
    order = sorted(range(5), key=lambda k: steps[k])
    window = torch.cat([bucket.history[order][:, bucket.segment(i)] for i in range(len(bucket.params))], 1)
    lengths = torch.tensor([p.numel() for p in bucket.params])
    stats = segment_stats(window, lengths, 2.5)
    seg = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    kinds = torch.tensor([0, 2, 1, 2])[seg]
    batch = {"window": window.T, "a": stats[seg, 0], "c": stats[seg, 1], "e": stats[seg, 2],
             "D": stats[seg, 3] / 2.5, "h": torch.full((bucket.numel,), 2.5), "kind": kinds}
    torch.testing.assert_close(torch.cat(pred), wnn_predict(tensors, batch), rtol=1e-5, atol=1e-6)


def test_shipped_weights_and_card():
    f = wc.forecasters.get("wnn")
    card = json.loads(io.card_path(io.default_path("wnn")).read_text())
    assert card["kind"] == "wnn" and "weightcast forecaster train --kind wnn" in card["command"]
    assert card["zoo_runs"]["val"] > 0 and card["final"]["val_l1"] > 0
    assert io.default_path("wnn").stat().st_size < 1_000_000
    assert f.config["window"] == 5


def test_weights_load_once(monkeypatch):
    f = wc.forecasters.get("wnn")

    def no_reload(*args, **kwargs):
        raise AssertionError("forecast re-read the weights file")

    monkeypatch.setattr(io, "load", no_reload)
    model = torch.nn.Linear(3, 2)
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster=f, window=5, record_every=1, jump_every=5,
                         horizon=5)
    for _ in range(10):
        opt.zero_grad()
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
    assert opt.num_jumps == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_window_mismatch_is_explained():
    with pytest.raises(ValueError, match="window=5"):
        wc.ForecastSGD(torch.nn.Linear(2, 2).parameters(), lr=0.1, forecaster="wnn", window=4)


def test_frozen_parameter_stays():
    """A tensor that never moves has D = 0, so its forecast is its value (g = 0)."""
    f = WNNForecaster(tensors=_trained_like(), config={"window": 5, "hidden": 16, "max_horizon": 6})
    frozen = torch.nn.Parameter(torch.randn(6))
    moving = torch.nn.Parameter(torch.randn(6))
    opt = wc.ForecastSGD([frozen, moving], lr=0.1, forecaster=f, window=5, record_every=1, jump_every=5)
    before = frozen.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        moving.square().sum().backward()
        opt.step()
    assert opt.num_jumps == 1
    assert torch.equal(frozen.detach(), before)


def test_state_dict_roundtrip_keeps_weights():
    f = WNNForecaster(tensors=_trained_like(), config={"window": 5, "hidden": 16, "max_horizon": 6})
    g = wc.forecasters.get("wnn")
    g.load_state_dict(f.state_dict())
    assert all(torch.equal(g.tensors[k], f.tensors[k]) for k in f.tensors)
    with pytest.raises(ValueError):
        g.load_state_dict({"name": "farcast"})


def test_native_meta_and_limits():
    from weightcast import _extension

    if not _extension.extension_loaded() or not hasattr(torch.ops.weightcast_C, "wnn_forecast"):
        pytest.skip("weightcast._C with the wnn kernel is not built")
    history, order, offsets, stats, kinds, mlp = _inputs([3, 4], 5, 16, "cpu", torch.float32, 2)
    meta = [t.to("meta") for t in (torch.empty(7), history, order, offsets, stats, kinds, mlp)]
    torch.ops.weightcast_C.wnn_forecast(*meta, 16)  # shapes checked without data
    with pytest.raises(RuntimeError, match="hidden"):
        torch.ops.weightcast_C.wnn_forecast(torch.empty(7), history, order, offsets, stats, kinds,
                                   torch.zeros(mlp_numel(5, 33)), 33)
    # wider MLPs than the kernels hold run on the reference
    wide = torch.randn(mlp_numel(5, 40)) * 0.1
    out, expected = torch.empty(7), torch.empty(7)
    wnn_forecast(out, history, order, offsets, stats, kinds, wide, 40)
    reference(expected, history, order, offsets, stats, kinds, wide, 40)
    torch.testing.assert_close(out, expected)
