"""Timing, correctness and safety of the forecast jumps of ForecastSGD."""
import copy
import warnings

import pytest
import torch

import weightcast as wc
from weightcast.forecasters import Forecaster, least_squares_line_coefficients

from helpers import clone_params, odd_params, run


class SpyForecaster(Forecaster):
    """Linear forecaster that remembers every (steps, target) it was asked for."""

    name = "spy"

    def __init__(self, coefficients=None):
        super().__init__()
        self.calls = []
        self.fixed = coefficients

    def coefficients(self, steps, target):
        self.calls.append((list(steps), target))
        if self.fixed is not None:
            return torch.tensor(self.fixed, dtype=torch.float64)
        return least_squares_line_coefficients(steps, target)


def test_timing_rule_is_exact():
    spy = SpyForecaster()
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.01, forecaster=spy, window=3, record_every=2, jump_every=6, horizon=4)
    run(opt, params, 13)
    # records at 2,4,6 -> jump at 6 (target 10), window emptied; records at 8,10,12 -> jump at 12 (target 16)
    assert spy.calls == [([2, 4, 6], 10), ([8, 10, 12], 16)]
    assert opt.num_jumps == 2


def test_window_must_refill_before_the_next_jump():
    spy = SpyForecaster()
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.01, forecaster=spy, window=4, jump_every=2, horizon=1)
    run(opt, params, 12)
    # full at 4 -> jump; refills 5..8 -> jump at 8; 9..12 -> jump at 12
    assert [target for _, target in spy.calls] == [5, 9, 13]


def test_defaults_jump_every_window_steps_with_horizon_equal():
    spy = SpyForecaster()
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.01, forecaster=spy)
    run(opt, params, 10)
    assert spy.calls == [([1, 2, 3, 4, 5], 10), ([6, 7, 8, 9, 10], 15)]


def test_linear_jump_lands_on_the_straight_trajectory():
    """Constant gradients make plain SGD a straight line: the jump must land where SGD would be after horizon."""
    params = [torch.nn.Parameter(torch.randn(1001)), torch.nn.Parameter(torch.randn(3, 5))]
    grads = [torch.randn_like(p) for p in params]
    opt = wc.ForecastSGD(params, lr=0.1, forecaster="linear", window=4, horizon=7)
    start = [p.detach().clone() for p in params]
    for _ in range(4):
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    assert opt.num_jumps == 1
    for p, p0, g in zip(params, start, grads):
        torch.testing.assert_close(p.detach(), p0 - 0.1 * (4 + 7) * g, rtol=1e-5, atol=1e-5)


def test_non_finite_forecast_is_skipped_and_warned_once():
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.01, forecaster=SpyForecaster([1e38, 1e38]), window=2)
    with pytest.warns(RuntimeWarning, match="not finite") as caught:
        for t in range(6):
            before = [p.detach().clone() for p in params]
            run(opt, params, 1, start=t)
            if t % 2 == 1:  # a jump step: the parameters are those of the plain SGD step
                reference = clone_params(before)
                run(torch.optim.SGD(reference, lr=0.01), reference, 1, start=t)
                assert all(torch.equal(a, b) for a, b in zip(params, reference))
    assert len([w for w in caught if "not finite" in str(w.message)]) == 1
    assert opt.num_jumps == 0 and opt.num_skipped_jumps == 3


def test_jump_is_all_or_nothing_across_buckets():
    """Two dtypes -> two buckets; the float16 one overflows, so the float32 one must not jump either."""
    big = torch.nn.Parameter(torch.full((8,), 30000.0, dtype=torch.float16))
    small = torch.nn.Parameter(torch.zeros(8))
    twins = clone_params([big, small])
    opt = wc.ForecastSGD([big, small], lr=1.0, forecaster="linear", window=2, horizon=100)
    plain = torch.optim.SGD(twins, lr=1.0)
    for _ in range(2):
        for a, b in (([big, small], opt), (twins, plain)):
            a[0].grad = torch.full((8,), -500.0, dtype=torch.float16)
            a[1].grad = torch.ones(8)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                b.step()
    assert opt.num_skipped_jumps == 1 and opt.num_jumps == 0
    assert torch.equal(small.detach(), twins[1].detach()) and torch.equal(big.detach(), twins[0].detach())


@pytest.mark.parametrize("after_jump", ["keep", "reset", "scale"])
def test_after_jump_momentum_handling(after_jump):
    params = odd_params()
    twin = clone_params(params)
    opt = wc.ForecastSGD(params, lr=0.01, momentum=0.9, forecaster="linear", window=3, horizon=2,
                         after_jump=after_jump)
    plain = torch.optim.SGD(twin, lr=0.01, momentum=0.9)
    run(opt, params, 3)
    run(plain, twin, 3)
    for p, q in zip(params, twin):
        buffer = opt.state[p]["momentum_buffer"]
        expected = plain.state[q]["momentum_buffer"]
        if after_jump == "keep":
            assert torch.equal(buffer, expected)
        elif after_jump == "reset":
            assert torch.equal(buffer, torch.zeros_like(expected))
        else:
            torch.testing.assert_close(buffer, expected * 0.9 ** 2)


SGD_PATHS = {"for-loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}


def reset_run(make, steps=4):
    """Two parameters, a jump every 2 steps with after_jump="reset"; ``b`` has no gradient at the first jump
    step (an unused branch), so a jump resets ``a``'s state only. Returns both parameters."""
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(4)), torch.nn.Parameter(torch.randn(4))
    opt = make([a, b])
    for t in range(1, steps + 1):
        a.grad = torch.ones(4)
        b.grad = None if t == 2 else torch.ones(4)
        opt.step()
    assert opt.num_jumps == steps // 2
    return a.detach(), b.detach()


@pytest.mark.parametrize("wrapped", [False, True], ids=["ForecastSGD", "Forecast(SGD)"])
def test_reset_when_a_parameter_had_no_gradient_at_the_jump_is_the_same_on_every_sgd_path(wrapped):
    """The fused kernel takes no mix of present and missing momentum buffers: reset keeps every buffer."""
    schedule = dict(forecaster="linear", window=2, record_every=1, jump_every=2, horizon=1, after_jump="reset")

    def make(path):
        if wrapped:
            return lambda params: wc.Forecast(torch.optim.SGD(params, lr=0.1, momentum=0.9, **path), **schedule)
        return lambda params: wc.ForecastSGD(params, lr=0.1, momentum=0.9, **path, **schedule)

    results = {name: reset_run(make(path)) for name, path in SGD_PATHS.items()}
    for name, result in results.items():
        assert all(torch.equal(x, y) for x, y in zip(result, results["for-loop"])), name


RESET_BASES = {
    "RMSprop": lambda params: torch.optim.RMSprop(params, lr=0.01, momentum=0.9, foreach=False),
    "RMSprop-foreach": lambda params: torch.optim.RMSprop(params, lr=0.01, momentum=0.9, foreach=True),
    "Adam": lambda params: torch.optim.Adam(params, lr=0.01),
    "SGD-dampening": lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9, dampening=0.5),
}


@pytest.mark.parametrize("make", RESET_BASES.values(), ids=RESET_BASES.keys())
def test_reset_zeroes_the_momentum_state_of_any_optimizer_as_it_initialises_it(make):
    """After a reset jump the base optimizer continues from zeroed momentum-like state (momentum_buffer, exp_avg),
    the other state untouched: the same as the plain optimizer given the jumped parameters and that state."""
    p = torch.nn.Parameter(torch.randn(5))
    opt = wc.Forecast(make([p]), forecaster="linear", window=2, record_every=1, jump_every=2, after_jump="reset")
    grads = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    for t in range(2):
        p.grad = grads[t]
        opt.step()
    assert opt.num_jumps == 1
    assert all(not bool(opt.state[p][k].any()) for k in ("momentum_buffer", "exp_avg") if k in opt.state[p])
    twin = torch.nn.Parameter(p.detach().clone())
    plain = make([twin])
    plain.load_state_dict(copy.deepcopy(opt.optimizer.state_dict()))
    p.grad, twin.grad = grads[2], grads[2].clone()
    opt.step()  # step 3: no jump
    plain.step()
    assert torch.equal(p, twin)


def test_a_jump_step_at_which_nothing_moves_is_no_jump():
    """lr 0 at every jump step: no parameter was updated, so nothing is forecast, counted, hooked or reset."""
    p, twin = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    opt = wc.ForecastSGD([p], lr=0.1, momentum=0.9, forecaster="linear", window=2, record_every=1, jump_every=2,
                         horizon=5, after_jump="reset")
    plain = torch.optim.SGD([twin], lr=0.1, momentum=0.9)
    hooked = []
    opt.register_jump_hooks(before=lambda o, t: hooked.append(t), after=lambda o, t: hooked.append(t))
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda k: 0.0 if k % 2 else 1.0) for o in (opt, plain)]
    for _ in range(4):
        p.grad, twin.grad = -torch.ones(3), -torch.ones(3)
        opt.step()
        plain.step()
        for s in schedulers:
            s.step()
    assert opt.num_jumps == opt.num_skipped_jumps == opt.num_rejected_jumps == 0 and hooked == []
    assert torch.equal(p, twin) and torch.equal(opt.state[p]["momentum_buffer"], plain.state[twin]["momentum_buffer"])
    assert opt.engine.step_count == 4


def test_forecast_adamw_scale_uses_beta1():
    p = torch.nn.Parameter(torch.randn(10))
    opt = wc.Forecast(torch.optim.AdamW([p], lr=1e-2, betas=(0.8, 0.99)), forecaster="linear", window=2, horizon=3,
                      after_jump="scale")
    twin = torch.nn.Parameter(p.detach().clone())
    plain = torch.optim.AdamW([twin], lr=1e-2, betas=(0.8, 0.99))
    for t in range(2):
        p.grad = torch.full((10,), 0.1 * (t + 1))
        twin.grad = p.grad.clone()
        opt.step()
        plain.step()
    assert opt.num_jumps == 1
    torch.testing.assert_close(opt.state[p]["exp_avg"], plain.state[twin]["exp_avg"] * 0.8 ** 3)


def test_parameters_stay_the_users_tensors_and_keep_their_layout():
    """No re-binding: every parameter keeps its storage, and a channels_last weight its strides, through jumps."""
    conv = torch.nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last)
    twin = copy.deepcopy(conv).to(memory_format=torch.contiguous_format)
    before = [(p.untyped_storage().data_ptr(), p.stride()) for p in conv.parameters()]
    opt = wc.ForecastSGD(conv.parameters(), lr=0.1, forecaster="linear", window=3)
    twin_opt = wc.ForecastSGD(twin.parameters(), lr=0.1, forecaster="linear", window=3)
    for t in range(7):
        for model in (conv, twin):
            for i, p in enumerate(model.parameters()):
                p.grad = torch.full_like(p, 0.01 * (t + 1) * (i + 1))
        opt.step()
        twin_opt.step()
    assert opt.num_jumps == 2
    assert [(p.untyped_storage().data_ptr(), p.stride()) for p in conv.parameters()] == before
    for a, b in zip(conv.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_rebound_parameter_is_followed():
    """``p.data = ...`` (e.g. load_state_dict(assign=True)): the optimizer keeps using the parameter as it is now."""
    params = odd_params()
    twin = clone_params(params)
    opt = wc.ForecastSGD(params, lr=0.05, momentum=0.9, forecaster="linear", window=3)
    twin_opt = wc.ForecastSGD(twin, lr=0.05, momentum=0.9, forecaster="linear", window=3)
    params[1].data = params[1].data.clone()  # the user re-binds one parameter
    run(opt, params, 7)
    run(twin_opt, twin, 7)
    assert opt.num_jumps == twin_opt.num_jumps == 2
    for a, b in zip(params, twin):
        assert torch.equal(a, b)


def test_bf16_history_storage():
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.01, forecaster=wc.forecasters.get("linear", history_dtype=torch.bfloat16))
    run(opt, params, 3)
    (_, bucket), = opt.engine.buckets
    assert bucket.history.dtype == torch.bfloat16
    assert opt.state_dict()["param_groups"][0]["forecast"]["buckets"][0]["history"].dtype == torch.bfloat16


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(lr=-1.0), ValueError, "learning rate"),
    (dict(window=1), ValueError, "window"),
    (dict(window=40), ValueError, "window"),
    (dict(horizon=0), ValueError, "horizon"),
    (dict(horizon=2.5), ValueError, "horizon"),
    (dict(record_every=2, jump_every=5), ValueError, "multiple of record_every"),
    (dict(forecaster="nope"), ValueError, "unknown forecaster"),
    (dict(after_jump="zero"), ValueError, "after_jump"),
    (dict(record_every=0), ValueError, "record_every"),
])
def test_invalid_arguments_name_the_argument(kwargs, error, match):
    kwargs = dict(dict(lr=0.1, forecaster="linear"), **kwargs)
    with pytest.raises(error, match=match):
        wc.ForecastSGD(odd_params(), **kwargs)


def test_sparse_gradients_are_refused_with_a_forecaster():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    opt = wc.ForecastSGD(emb.parameters(), lr=0.1, forecaster="linear")
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(TypeError, match="sparse"):
        opt.step()
    plain = wc.ForecastSGD(emb.parameters(), lr=0.1)  # plain SGD supports them, as torch does
    plain.step()


def test_forecasters_registry():
    assert "linear" in wc.forecasters.names()
    assert isinstance(wc.forecasters.get("linear"), wc.forecasters.LinearForecaster)
    with pytest.raises(ValueError, match="unknown forecaster"):
        wc.forecasters.get("magic")
    c = least_squares_line_coefficients([1, 2, 3, 4, 5], 10)
    assert abs(float(c.sum()) - 1) < 1e-12
    assert abs(float((c * torch.arange(1, 6, dtype=torch.float64)).sum()) - 10) < 1e-12


def _bowl(p, target):
    return float(((p.detach() - target) ** 2).sum())


def test_guard_shrinks_an_overshooting_jump():
    """On a quadratic bowl the trajectory curves; a long linear extrapolation overshoots the minimum."""
    target = torch.linspace(-1, 1, 257)
    p = torch.nn.Parameter(torch.zeros(257))
    opt = wc.ForecastSGD([p], lr=0.1, forecaster="linear", window=3, horizon=64)
    opt.guard_jumps(lambda: _bowl(p, target), shrink=0.5, tries=8)
    losses = []
    opt.register_jump_hooks(before=lambda o, t: losses.append(_bowl(p, target)),
                            after=lambda o, t: losses.append(_bowl(p, target)))
    for _ in range(9):
        p.grad = 2 * (p.detach() - target)
        opt.step()
    assert opt.num_jumps + opt.num_rejected_jumps == 3 and opt.num_jumps >= 1
    for before, after in zip(losses[::2], losses[1::2]):
        assert after <= before


def test_guard_rejection_restores_the_jump_step_exactly():
    params = odd_params()
    twin = clone_params(params)
    rising = iter(range(10**6))
    opt = wc.ForecastSGD(params, lr=0.05, momentum=0.9, forecaster="linear", window=3)
    opt.guard_jumps(lambda: float(next(rising)), tries=2)  # every later evaluation is worse
    plain = torch.optim.SGD(twin, lr=0.05, momentum=0.9)
    run(opt, params, 7)
    run(plain, twin, 7)
    assert opt.num_rejected_jumps == 2 and opt.num_jumps == 0
    for a, b in zip(params, twin):
        assert torch.equal(a, b)


def test_guard_with_several_criteria_needs_all_of_them_not_to_rise():
    """loss_fn returning (loss, error): a jump that lowers the first criterion but raises the second is shrunk,
    then rejected; with the second criterion flat it passes."""
    from weightcast.optim.guard import JumpGuard

    guard = JumpGuard(lambda: (0.0, 0.0), tolerance=0.1)
    assert guard.accepts((1.0, 0.5), (0.9, 0.55)) and not guard.accepts((1.0, 0.5), (0.9, 0.56))
    assert not guard.accepts((1.0, 0.5), (0.9, float("nan")))
    with pytest.raises(ValueError, match="criteria"):
        guard.accepts((1.0, 0.5), (0.9,))
    for error_rises, jumps in ((True, 0), (False, 2)):
        params = odd_params()
        calls = iter(range(10**6))
        opt = wc.ForecastSGD(params, lr=0.05, momentum=0.9, forecaster="linear", window=3)
        opt.guard_jumps(lambda: (-float(next(calls)), float(next(calls)) if error_rises else 0.0), tries=2)
        run(opt, params, 7)
        assert opt.num_jumps == jumps and opt.num_rejected_jumps == 2 - jumps


def test_guard_arguments_are_checked():
    opt = wc.ForecastSGD(odd_params(), lr=0.1, forecaster="linear")
    with pytest.raises(ValueError, match="shrink"):
        opt.guard_jumps(lambda: 0.0, shrink=1.5)
    with pytest.raises(TypeError, match="callable"):
        opt.guard_jumps(3.0)
    with pytest.raises(ValueError, match="no forecaster"):
        wc.ForecastSGD(odd_params(), lr=0.1).guard_jumps(lambda: 0.0)
    # tries=2.5 was accepted, then failed at the first jump
    with pytest.raises(ValueError, match="tries must be a whole number"):
        opt.guard_jumps(lambda: 0.0, tries=2.5)


def test_guard_judges_no_horizon_twice():
    """At a horizon of one unit there is nothing shorter to try: one forecast is judged, not ``tries`` identical
    ones (each costs one evaluation of the loss)."""
    for horizon, evaluations in ((1, 2), (4, 4)):   # 4 -> 2 -> 1: three forecasts, plus the loss before
        params = odd_params()
        calls = []
        opt = wc.ForecastSGD(params, lr=0.05, forecaster="linear", window=3, jump_every=3, horizon=horizon)
        opt.guard_jumps(lambda: float(len(calls.append(0) or calls)), tries=5)   # rises at every call: rejected
        run(opt, params, 3)
        assert opt.num_rejected_jumps == 1 and len(calls) == evaluations
