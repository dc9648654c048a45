"""The multi-horizon nowcaster: features, forecasts, meta-training, files, schedule checks and the engine path."""
import itertools
import json

import pytest
import torch

import weightcast as wc
from weightcast.errors import InputError
from weightcast.forecasters import get, io
from weightcast.forecasters.base import check_trained_range
from weightcast.forecasters.nowcast import (PARAM_TYPES, NowcastForecaster, init_nowcast, param_type,
                                            predict_tensor)
from weightcast.forecasters.nowcast_train import NowcastTrainConfig, train_nowcast
from weightcast.zoo import build_zoo, quick_spec

WINDOW, K = 5, 8


def line_model(k_max=K, window=WINDOW):
    """Weights whose forecast is the straight line through the first and last state (skip m_k = k mean(d))."""
    t = init_nowcast(window, 16, k_max)
    for k in range(1, k_max + 1):
        t["skip"][k - 1, :window - 1] = k / (window - 1)
    return t


def test_param_types():
    assert PARAM_TYPES[param_type((4, 3, 5, 5))] == "conv"
    assert PARAM_TYPES[param_type((10, 20), "layers.0.weight")] == "linear"
    assert PARAM_TYPES[param_type((10,), "layers.0.bias")] == "bias"
    assert PARAM_TYPES[param_type((10,), "blocks.0.ln1.weight")] == "norm"
    assert PARAM_TYPES[param_type((50, 16), "wte.weight")] == "embedding"
    assert PARAM_TYPES[param_type((48, 16), "blocks.0.attn.qkv.weight")] == "attention"
    assert PARAM_TYPES[param_type((10,))] == "bias"  # without a name, by shape


def test_untrained_model_stands_still_and_k0_is_the_last_state():
    g = torch.Generator().manual_seed(0)
    window = torch.randn(WINDOW, 7, 3, generator=g)
    preds = predict_tensor(init_nowcast(WINDOW, 16, K), window, 1, [0, 1, K])
    for p in preds:
        torch.testing.assert_close(p, window[-1], atol=1e-5, rtol=1e-5)


def test_line_weights_extrapolate_a_straight_line_at_every_horizon():
    g = torch.Generator().manual_seed(1)
    start, slope = torch.randn(13, 5, generator=g), torch.randn(13, 5, generator=g) * 0.1
    window = torch.stack([start + i * slope for i in range(WINDOW)])
    ks = [1, 3, K]
    preds = predict_tensor(line_model(), window, 1, ks)
    for k, p in zip(ks, preds):
        torch.testing.assert_close(p, start + (WINDOW - 1 + k) * slope, atol=1e-4, rtol=1e-4)


def test_predict_refuses_horizons_outside_the_trained_range():
    f = NowcastForecaster(tensors=line_model(), config={"window": WINDOW, "hidden": 16, "k_max": K, "embed": 8,
                                                        "spacings": [10, 20]})
    w = torch.randn(WINDOW, 4)
    with pytest.raises(ValueError, match="not a whole number in 0..8"):
        f.predict([w], [K + 1])
    with pytest.raises(ValueError, match="horizon 2.5 intervals is not a whole number"):
        f.predict([w], [2.5])
    # a whole number of intervals given as a float (a constant horizon in steps / record_every) is the same horizon
    torch.testing.assert_close(f.predict([w], [2.0])[0][0], f.predict([w], [2])[0][0])
    with pytest.raises(ValueError, match="record spacings"):
        f.check_schedule(WINDOW, 50, 50)
    with pytest.raises(ValueError, match="trained for horizons up to 8 record intervals"):
        check_trained_range(f, 10, 10 * (K + 1))
    with pytest.raises(ValueError, match="window of 5"):
        f.check_schedule(4, 10, 10)
    f.check_schedule(WINDOW, 20, 160)


def test_optimizer_refuses_a_schedule_beyond_the_trained_horizons():
    p = torch.nn.Parameter(torch.zeros(3))
    f = NowcastForecaster(tensors=line_model(), config={"window": WINDOW, "hidden": 16, "k_max": K, "embed": 8,
                                                        "spacings": [10, 20]})
    with pytest.raises(ValueError, match="trained for horizons up to 8 record intervals"):
        wc.Forecast(torch.optim.AdamW([p]), f, window=WINDOW, record_every=10,
                    horizon=wc.schedules.Decaying(k_max=K + 1, power=2, total_steps=1000))
    opt = wc.Forecast(torch.optim.AdamW([p]), f, window=WINDOW, record_every=10,
                      horizon=wc.schedules.Decaying(k_max=K, power=2, total_steps=1000))
    assert opt.num_jumps == 0


def test_engine_jump_with_the_nowcaster_follows_a_line():
    # plain SGD with a constant gradient moves the parameter on a straight line; the jump continues it
    p = torch.nn.Parameter(torch.linspace(-1, 1, 12).reshape(3, 4))
    f = NowcastForecaster(tensors=line_model(), config={"window": WINDOW, "hidden": 16, "k_max": K, "embed": 8})
    opt = wc.Forecast(torch.optim.SGD([p], lr=0.1), f, window=WINDOW, record_every=1, jump_every=WINDOW, horizon=3)
    direction = torch.linspace(0.5, 1.5, 12).reshape(3, 4)
    start = p.detach().clone()
    for _ in range(WINDOW):
        p.grad = direction.clone()
        opt.step()
    assert opt.num_jumps == 1
    torch.testing.assert_close(p.detach(), start - 0.1 * (WINDOW + 3) * direction, atol=1e-4, rtol=1e-4)


def test_meta_training_on_a_small_zoo_saves_a_file_that_loads_by_name(tmp_path):
    build_zoo(tmp_path / "zoo", quick_spec(), progress=False)
    cfg = NowcastTrainConfig(k_max=2, spacings=(5,), hidden=8, steps=5, samples_per_batch=2, elements=64,
                             val_windows=2)
    config, tensors, card = train_nowcast(tmp_path / "zoo", cfg, progress=False, command="test")
    assert card["trained_for"] == {"window": 5, "spacings_steps": [5], "k_range": [1, 2]}
    assert len(card["val_l1_by_horizon"]["model"]) == 2 and card["val_runs"] >= 1
    path = tmp_path / "nowcast.safetensors"
    io.save(path, "nowcast", config, tensors, card)
    f = get("nowcast", path=path)
    assert f.k_max == 2 and f.spacings == [5]
    assert json.loads(io.card_path(path).read_text())["command"] == "test"
    for name, t in tensors.items():
        torch.testing.assert_close(f.tensors[name], t)
    with pytest.raises(io.ForecasterFileError):
        get("wnn", path=path)
    with pytest.raises(InputError, match=r"hold \(record interval, snapshots\)"):  # windows no run can supply
        train_nowcast(tmp_path / "zoo", NowcastTrainConfig(spacings=(10, 20, 40), steps=1), progress=False)
    with pytest.raises(InputError, match="at least 2 states"):
        train_nowcast(tmp_path / "zoo", NowcastTrainConfig(window=1, spacings=(5,), steps=1), progress=False)


def test_schedule_left_out_takes_the_cards_spacing_and_given_ones_are_kept():
    model = torch.nn.Linear(3, 2)
    spacing = min(get("nowcast").spacings)
    opt = wc.Forecast(torch.optim.AdamW(model.parameters()), forecaster="nowcast")
    engine = opt.engine
    assert (engine.record_every, engine.jump_every) == (spacing, 5 * spacing)
    assert engine.horizon.max_horizon() == 5 * spacing
    sgd = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="nowcast", record_every=2 * spacing)
    assert sgd.engine.record_every == 2 * spacing
    assert wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="linear").engine.record_every == 1
    with pytest.raises(ValueError, match="record spacings"):
        wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="nowcast", record_every=1)


def test_horizons_that_are_not_whole_record_intervals_are_refused_at_construction():
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="not a multiple of record_every=10"):
        wc.Forecast(torch.optim.AdamW(model.parameters()), forecaster="nowcast", record_every=10, jump_every=50,
                    horizon=15)


def test_the_guard_shrinks_a_nowcast_jump_in_whole_record_intervals():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 2)
    opt = wc.Forecast(torch.optim.AdamW(model.parameters(), lr=1e-2), forecaster="nowcast", record_every=10,
                      jump_every=50, horizon=wc.schedules.Decaying(k_max=32, power=2, total_steps=500))
    evaluations = itertools.count()
    # every evaluation is worse than the one before: each jump is shrunk (to 320 // 2 // 10 * 10 = 160 steps, ...)
    # and finally refused; a horizon between record intervals would make the nowcaster raise
    opt.guard_jumps(lambda: float(next(evaluations)), shrink=0.5, tries=4)
    for _ in range(500):
        opt.zero_grad()
        model(torch.randn(16, 8)).square().mean().backward()
        opt.step()
    assert (opt.num_jumps, opt.num_rejected_jumps) == (0, 10)
