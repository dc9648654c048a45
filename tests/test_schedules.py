"""Horizon schedules (weightcast.schedules): values, the optimizer's use of them, state_dict and resume."""
import copy

import numpy as np
import pytest
import torch

import weightcast as wc
from weightcast.schedules import Constant, Decaying, from_spec

from helpers import classifier_batch, tiny_classifier


def test_decaying_follows_the_nino_formula():
    s = Decaying(k_max=40, power=2, total_steps=10_000)
    s.bind(record_every=200, jump_every=1000)
    n = 10
    want = [max(1, round(v)) for v in (np.linspace(40 ** 0.5, 1, n) ** 2)]
    assert [s.k(j) for j in range(n)] == want and want[0] == 40 and want[-1] == 1
    assert s.horizon(0) == 8000 and s.horizon(n) == 200 and s.max_horizon() == 8000


def test_invalid_schedules_are_refused():
    for kwargs in (dict(k_max=0), dict(power=0), dict(total_steps=0), dict(k_max=2.5)):
        with pytest.raises(ValueError):
            Decaying(**kwargs)
    with pytest.raises(ValueError, match="holds no jump"):
        Decaying(k_max=4, total_steps=10).bind(record_every=1, jump_every=20)
    assert Constant(np.int64(5)).steps == 5 and from_spec(Constant(5).spec()) == Constant(5)


def _train(model, opt, steps, seen):
    x, y = classifier_batch()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def test_the_optimizer_jumps_with_the_scheduled_horizon_and_resumes_exactly():
    """Spy on the target steps the forecaster is asked for; a run resumed from a state_dict asks for the same."""
    targets = []

    class Spy(wc.forecasters.LinearForecaster):
        def coefficients(self, steps, target):
            targets.append(target - max(steps))
            return super().coefficients(steps, target)

    def build(model):
        return wc.ForecastSGD(model.parameters(), lr=0.05, forecaster=Spy(), window=3, record_every=2,
                              horizon=Decaying(k_max=9, power=2, total_steps=36))

    model = tiny_classifier()
    opt = build(model)
    assert "Decaying(k_max=9, power=2, total_steps=36)" in repr(opt)
    _train(model, opt, 18, targets)
    state = copy.deepcopy(opt.state_dict())
    assert state["param_groups"][0]["forecast"]["schedule"]["horizon"] == \
        {"kind": "decaying", "k_max": 9, "power": 2.0, "total_steps": 36}
    twin = copy.deepcopy(model)
    _train(model, opt, 24, targets)
    first = list(targets)
    targets.clear()
    opt2 = build(twin)
    opt2.load_state_dict(state)
    _train(twin, opt2, 24, targets)
    # jumps every 6 steps: k_j = round(linspace(3, 1, 6) ** 2) record intervals of 2 steps, then 1
    ks = [max(1, round(v)) for v in np.linspace(3, 1, 6) ** 2]
    assert first == [2 * k for k in ks] + [2] * 1
    assert targets == first[3:]
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    other = wc.ForecastSGD(tiny_classifier().parameters(), lr=0.05, forecaster="linear", window=3, record_every=2,
                           horizon=Decaying(k_max=8, power=2, total_steps=36))
    with pytest.raises(ValueError, match="horizon saved"):
        other.load_state_dict(state)


def test_a_schedule_shared_by_two_optimizers_is_bound_to_each_separately():
    d = wc.schedules.Decaying(k_max=8, power=1, total_steps=400)
    p, q = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    first = wc.Forecast(torch.optim.AdamW([p]), forecaster="linear", window=3, record_every=10, jump_every=50,
                        horizon=d)
    before = [first.engine.horizon.horizon(j) for j in (0, 1, 3, 7)]
    wc.Forecast(torch.optim.AdamW([q]), forecaster="linear", window=3, record_every=20, jump_every=200, horizon=d)
    assert [first.engine.horizon.horizon(j) for j in (0, 1, 3, 7)] == before == [80, 70, 50, 10]


def test_decaying_gives_the_j_th_jump_its_horizon_when_jump_steps_pass_without_a_full_window():
    """jump_every < window * record_every: the first jump steps find no full window; the first jump made still gets
    k_max (the horizon the construction check is based on), and a resumed run gets the same horizons."""
    horizons = []

    class Spy(wc.forecasters.LinearForecaster):
        def coefficients(self, steps, target):
            horizons.append(target - max(steps))
            return super().coefficients(steps, target)

    def train(opt, p, steps):
        for _ in range(steps):
            p.grad = -torch.ones(10)
            opt.step()

    def build(p):
        return wc.Forecast(torch.optim.SGD([p], lr=0.1), forecaster=Spy(), window=5, record_every=10,
                           jump_every=20, horizon=Decaying(k_max=8, power=2, total_steps=200))

    p, q = torch.nn.Parameter(torch.zeros(10)), torch.nn.Parameter(torch.zeros(10))
    opt = build(p)
    train(opt, p, 100)
    state = copy.deepcopy(opt.state_dict())
    train(opt, p, 100)
    assert horizons == [80, 70, 60]
    first = list(horizons)
    horizons.clear()
    resumed = build(q)
    resumed.load_state_dict(state)
    train(resumed, q, 100)
    assert horizons == first[1:]
