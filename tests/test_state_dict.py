"""state_dict/load_state_dict hold everything: resuming reproduces the uninterrupted run bit for bit."""
import io

import pytest
import torch

import weightcast as wc

from helpers import clone_params, odd_params, run


def roundtrip(obj):
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def make_sgd(params, **extra):
    return wc.ForecastSGD(params, lr=0.02, momentum=0.9, nesterov=True, forecaster="linear", window=4,
                          record_every=1, jump_every=4, horizon=6, **extra)


def make_adamw(params, **extra):
    return wc.Forecast(torch.optim.AdamW(params, lr=1e-3), forecaster="linear", window=3, horizon=5,
                       after_jump="scale")


@pytest.mark.parametrize("make", [make_sgd, make_adamw], ids=["ForecastSGD", "Forecast(AdamW)"])
def test_resume_at_step_10_is_bit_exact(make):
    params = odd_params()
    resumed = clone_params(params)
    opt = make(params)
    run(opt, params, 20)
    assert opt.num_jumps >= 3

    first = make(resumed)
    run(first, resumed, 10)
    saved_params = roundtrip([p.detach().clone() for p in resumed])
    saved_opt = roundtrip(first.state_dict())

    fresh = clone_params(resumed)
    with torch.no_grad():
        for p, q in zip(fresh, saved_params):
            p.zero_()
    second = make(fresh)
    with torch.no_grad():
        for p, q in zip(fresh, saved_params):
            p.copy_(q)  # as model.load_state_dict does: in place
    second.load_state_dict(saved_opt)
    run(second, fresh, 10, start=10)
    assert second.num_jumps == opt.num_jumps
    for a, b in zip(params, fresh):
        assert torch.equal(a, b)


def test_state_dict_keeps_history_in_storage_dtype_and_counters():
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.01, forecaster=wc.forecasters.get("linear", history_dtype=torch.float16))
    run(opt, params, 7)
    state = roundtrip(opt.state_dict())["param_groups"][0]["forecast"]
    assert state["step"] == 7 and state["num_jumps"] == 1
    assert state["buckets"][0]["history"].dtype == torch.float16
    assert state["buckets"][0]["filled"] == 2 and state["forecaster"]["name"] == "linear"


def test_loading_into_another_layout_or_schedule_fails_clearly():
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.01, forecaster="linear")
    run(opt, params, 2)
    state = opt.state_dict()
    other = wc.ForecastSGD(clone_params(params), lr=0.01, forecaster="linear", window=3)
    with pytest.raises(ValueError, match="schedule"):
        other.load_state_dict(state)
    fewer = wc.ForecastSGD(clone_params(params)[:3], lr=0.01, forecaster="linear")
    with pytest.raises(ValueError):
        fewer.load_state_dict(state)
    plain = wc.ForecastSGD(clone_params(params), lr=0.01)
    with pytest.raises(ValueError, match="saved with forecaster .linear., this optimizer has none"):
        plain.load_state_dict(state)


def test_plain_state_dict_loads_into_torch_sgd():
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.01, momentum=0.9)
    run(opt, params, 3)
    torch_opt = torch.optim.SGD(clone_params(params), lr=0.01, momentum=0.9)
    torch_opt.load_state_dict(opt.state_dict())
    assert torch_opt.state_dict()["param_groups"] == opt.state_dict()["param_groups"]


@pytest.mark.parametrize("base", [torch.optim.SGD, torch.optim.AdamW], ids=["SGD", "AdamW"])
def test_a_forecast_state_carried_through_a_plain_optimizer_is_not_restored(base):
    """A plain optimizer that loaded a forecasting checkpoint keeps its forecast entry and saves it again; loaded
    back into Forecast, that stale window must not come back (the history starts empty, with a warning)."""
    p = torch.nn.Parameter(torch.zeros(4))

    def make():
        return wc.Forecast(base([p], lr=0.1), forecaster="linear", window=3, record_every=1, jump_every=3,
                           horizon=3)

    opt = make()
    for _ in range(4):
        p.grad = -torch.ones(4)
        opt.step()
    plain = base([p], lr=0.1)
    plain.load_state_dict(roundtrip(opt.state_dict()))
    for _ in range(20):
        p.grad = -torch.ones(4)
        plain.step()
    stale = roundtrip(plain.state_dict())
    assert "forecast" in stale["param_groups"][0]  # torch keeps what it does not know in a param group
    resumed = make()
    with pytest.warns(RuntimeWarning, match="forecast history starts empty"):
        resumed.load_state_dict(stale)
    assert resumed.engine.step_count == 0 and all(b.filled == 0 for _, b in resumed.engine.buckets)
    own = roundtrip(resumed.state_dict())  # the forecasting optimizer's own checkpoint still restores its state
    for _ in range(2):
        p.grad = -torch.ones(4)
        resumed.step()
    assert resumed.num_jumps == 0
    again = make()
    again.load_state_dict(own)
    assert again.engine.state_dict()["step"] == 0


def test_a_checkpoint_saved_before_the_mark_resumes_exactly_once_marked():
    """A checkpoint of an earlier version (no top-level forecast_step) loads with an empty history and a warning
    naming the one-line mark that restores it; marked so, it resumes exactly."""
    p = torch.nn.Parameter(torch.zeros(4))
    opt = wc.ForecastSGD([p], lr=0.1, forecaster="linear", window=3, record_every=1, jump_every=3, horizon=3)
    for _ in range(4):
        p.grad = -torch.ones(4)
        opt.step()
    old = roundtrip(opt.state_dict())
    del old["forecast_step"]
    fresh = wc.ForecastSGD([p], lr=0.1, forecaster="linear", window=3, record_every=1, jump_every=3, horizon=3)
    with pytest.warns(RuntimeWarning, match=r"set sd\['forecast_step'\] = sd\['param_groups'\]\[0\]\['forecast'\]\['step'\]"):
        fresh.load_state_dict(old)
    old["forecast_step"] = old["param_groups"][0]["forecast"]["step"]
    fresh.load_state_dict(old)
    assert fresh.engine.state_dict()["step"] == 4
    assert fresh.engine.buckets[0][1].filled == opt.engine.buckets[0][1].filled == 1   # the window after the jump
