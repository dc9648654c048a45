"""A learned forecaster's card range: horizons beyond it are refused when the optimizer is built, the default
horizon stays inside it, and a checkpoint of another model of the same kind is refused on load."""
import pytest
import torch

import weightcast as wc
from weightcast.forecasters.farcast import FarcastForecaster
from weightcast.forecasters.nowcast import NowcastForecaster, init_nowcast
from weightcast.forecasters.wnn import WNNForecaster, init_wnn


def nowcast(k_max=4, hidden=16, spacings=(5, 10)):
    return NowcastForecaster(tensors=init_nowcast(5, hidden, k_max),
                             config={"window": 5, "hidden": hidden, "k_max": k_max, "embed": 8,
                                     "spacings": list(spacings)})


def wnn(max_horizon=3):
    return WNNForecaster(tensors=init_wnn(5, 16), config={"window": 5, "hidden": 16, "max_horizon": max_horizon})


def farcast(max_horizon=3):
    return FarcastForecaster(A=torch.zeros(max_horizon, 5, dtype=torch.float64))


SHORT_RANGE = {"nowcast": nowcast, "wnn": wnn, "farcast": farcast}   # each trained for 3-4 record intervals


def adamw():
    return torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-2)


@pytest.mark.parametrize("make", SHORT_RANGE.values(), ids=SHORT_RANGE)
@pytest.mark.parametrize("horizon", [50, wc.schedules.Decaying(k_max=40, power=2, total_steps=1000)],
                         ids=["int", "decaying"])
def test_a_horizon_beyond_the_trained_range_is_refused_when_built(make, horizon):
    f = make()
    with pytest.raises(ValueError, match="trained for"):
        wc.Forecast(adamw(), f, record_every=10, jump_every=50, horizon=horizon)
    longest = f.max_trained_horizon(10)
    assert wc.Forecast(adamw(), f, record_every=10, jump_every=50, horizon=longest).engine.horizon.max_horizon() \
        == longest


def test_a_forecaster_that_only_states_its_range_is_held_to_it():
    """The range is checked in one place for every forecaster, not by each one's check_schedule."""
    class ShortLinear(wc.forecasters.get("linear").__class__):
        def max_trained_horizon(self, record_every):
            return 2 * record_every

    with pytest.raises(ValueError, match="trained for horizons up to 2 record intervals"):
        wc.Forecast(adamw(), ShortLinear(), record_every=10, jump_every=50, horizon=50)
    assert wc.Forecast(adamw(), ShortLinear(), record_every=10).engine.horizon.max_horizon() == 20
    model = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError, match="trained for horizons up to 4 record intervals"):
        wc.ForecastEMA(model, nowcast(k_max=4), record_every=5, horizon=25)


def test_the_shipped_wnn_refuses_what_it_was_not_trained_for():
    """The shipped wnn was trained on horizons up to 6 record intervals; 1,000 intervals ahead it moved weights
    20x their largest value (a loss of 338 on a toy model) before it refused them."""
    f = wc.forecasters.get("wnn")
    assert f.max_trained_horizon(1) == 6
    with pytest.raises(ValueError, match="trained for horizons up to 6 record intervals"):
        wc.Forecast(adamw(), f, record_every=1, jump_every=5, horizon=100)


@pytest.mark.parametrize("make", SHORT_RANGE.values(), ids=SHORT_RANGE)
def test_without_schedule_arguments_the_horizon_stays_in_the_trained_range(make):
    f = make()
    opt = wc.Forecast(adamw(), f)
    e = opt.engine
    assert e.jump_every == 5 * e.record_every   # the default jump_every: window * record_every
    assert e.horizon.max_horizon() == f.max_trained_horizon(e.record_every) < e.jump_every


def test_forecast_ema_takes_the_same_default_horizon():
    model = torch.nn.Linear(3, 2)
    assert wc.ForecastEMA(model, nowcast(k_max=4), record_every=5).horizon.max_horizon() == 20
    assert wc.ForecastEMA(model, nowcast(k_max=8), record_every=5).horizon.max_horizon() == 25


def test_a_default_horizon_inside_the_range_is_jump_every():
    opt = wc.Forecast(adamw(), nowcast(k_max=8), record_every=5)
    assert opt.engine.horizon.max_horizon() == opt.engine.jump_every == 25


def test_a_checkpoint_of_another_nowcaster_is_refused_naming_both():
    model = torch.nn.Linear(3, 2)
    saved = wc.Forecast(torch.optim.AdamW(model.parameters()), nowcast(k_max=4), record_every=5).state_dict()
    other = wc.Forecast(torch.optim.AdamW(model.parameters()), nowcast(k_max=4, hidden=8), record_every=5)
    with pytest.raises(ValueError, match="'hidden': 16.*'hidden': 8"):
        other.load_state_dict(saved)
    same = wc.Forecast(torch.optim.AdamW(model.parameters()), nowcast(k_max=4), record_every=5)
    same.load_state_dict(saved)


def test_a_wnn_file_from_before_its_config_recorded_the_range_takes_it_from_its_card(tmp_path):
    from weightcast.forecasters import io

    path = tmp_path / "old_wnn.safetensors"
    io.save(path, "wnn", {"window": 5, "hidden": 16}, init_wnn(5, 16), card={"training": {"max_horizon": 4}})
    f = wc.forecasters.get("wnn", path=path)
    assert f.max_trained_horizon(10) == 40
    with pytest.raises(ValueError, match="trained for horizons up to 4 record intervals"):
        wc.Forecast(adamw(), f, record_every=10, jump_every=50, horizon=50)
    io.card_path(path).unlink()
    with pytest.raises(ValueError, match="names no max_horizon"):
        wc.forecasters.get("wnn", path=path)
