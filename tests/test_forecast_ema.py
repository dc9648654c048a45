"""ForecastEMA: the average jumps along its forecast, the trained weights never move, exact resume, bad input."""
import copy

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import weightcast as wc
from weightcast import data, models
from weightcast.schedules import Decaying

RECORD = 10


class StepAhead:
    """A stand-in forecaster: the last state plus k (so a jump's horizon is visible in the weights)."""

    window = 5

    def __init__(self, value=None):
        self.value, self.calls = value, []

    def check_schedule(self, window, record_every, max_horizon):
        pass

    def predict(self, windows, ks, names):
        self.calls.append((list(ks), list(names)))
        fill = (lambda w, k: torch.full_like(w[-1], self.value)) if self.value is not None else \
            (lambda w, k: w[-1] + k)
        return [[fill(w, k) for k in ks] for w in windows]


def train(model, updates, average, opt=None, seed=0):
    """``updates`` AdamW steps on digits, each followed by the average's update (ForecastEMA.update or an
    AveragedModel's update_parameters); returns the optimizer (pass it back to continue)."""
    task = data.get_task("digits")
    opt = opt or torch.optim.AdamW(model.parameters(), lr=1e-2)
    batches = task.batches(32, generator=seed)
    update = average.update if isinstance(average, wc.ForecastEMA) else lambda: average.update_parameters(model)
    for _ in range(updates):
        x, y = next(batches)
        opt.zero_grad()
        task.loss(model(x), y).backward()
        opt.step()
        update()
    return opt


def mlp():
    torch.manual_seed(0)
    task = data.get_task("digits")
    return models.get("mlp", **task.model_kwargs(), widths=(16,))


def test_the_average_jumps_k_intervals_and_the_trained_weights_stay():
    model, twin = mlp(), mlp()
    forecaster = StepAhead()
    avg = wc.ForecastEMA(model, forecaster, decay=0.9, record_every=RECORD,
                         horizon=Decaying(k_max=4, power=2, total_steps=200))
    plain = AveragedModel(twin, multi_avg_fn=get_ema_multi_avg_fn(0.9))
    opt, twin_opt = train(model, 49, avg), train(twin, 49, plain)
    for a, b in zip(avg.module.parameters(), plain.module.parameters()):
        assert torch.equal(a, b)  # before the first jump: exactly an EMA
    jumped = avg.update()  # update 50: the first jump
    plain.update_parameters(twin)
    assert jumped and avg.num_jumps == 1 and forecaster.calls[0][0] == [4]  # k_0 = k_max
    assert forecaster.calls[0][1] == [n for n, _ in model.named_parameters()]
    train(model, 150, avg, opt, seed=1)
    train(twin, 150, plain, twin_opt, seed=1)
    assert avg.num_jumps == 4 and [c[0] for c in forecaster.calls] == [[4], [3], [2], [1]]  # round(linspace(2, 1, 4)^2)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)  # the optimizer's weights never see a jump
    assert any(not torch.equal(a, b) for a, b in zip(avg.module.parameters(), plain.module.parameters()))


def test_a_jump_writes_the_forecast_of_the_recorded_average():
    model = mlp()
    avg = wc.ForecastEMA(model, StepAhead(), decay=0.5, record_every=RECORD, horizon=2 * RECORD)
    train(model, 49, avg)
    last = [p.clone() for p in avg.module.parameters()]  # EMA at update 49; the 50th is recorded, then jumped
    params = [p.detach().clone() for p in model.parameters()]
    seen = []
    # no optimizer step between: the 50th average is 0.5 * last + 0.5 * params; before_jump sees it, then the jump
    assert avg.update(before_jump=lambda: seen.append([p.clone() for p in avg.module.parameters()]))
    assert len(seen) == 1
    for a, b, before, p in zip(avg.module.parameters(), seen[0], last, params):
        torch.testing.assert_close(b, 0.5 * before + 0.5 * p)
        torch.testing.assert_close(a, 0.5 * before + 0.5 * p + 2)
    assert not avg.update(before_jump=lambda: seen.append(None)) and len(seen) == 1


def test_a_forecast_that_is_not_finite_is_not_written():
    model = mlp()
    avg = wc.ForecastEMA(model, StepAhead(float("nan")), decay=0.9, record_every=RECORD)
    train(model, 50, avg)
    assert avg.num_jumps == 0 and avg.num_skipped_jumps == 1
    assert all(bool(torch.isfinite(p).all()) for p in avg.module.parameters())


def test_state_dict_resumes_exactly():
    model = mlp()
    avg = wc.ForecastEMA(model, "nowcast", record_every=RECORD, horizon=Decaying(8, 2, total_steps=300))
    opt = train(model, 73, avg)  # mid-window: 2 records held
    state, model_state, opt_state = copy.deepcopy(avg.state_dict()), copy.deepcopy(model.state_dict()), \
        copy.deepcopy(opt.state_dict())
    train(model, 100, avg, opt, seed=1)

    resumed_model = mlp()
    resumed_model.load_state_dict(model_state)
    resumed = wc.ForecastEMA(resumed_model, "nowcast", record_every=RECORD, horizon=Decaying(8, 2, total_steps=300))
    resumed.load_state_dict(state)
    resumed_opt = torch.optim.AdamW(resumed_model.parameters(), lr=1e-2)
    resumed_opt.load_state_dict(opt_state)
    train(resumed_model, 100, resumed, resumed_opt, seed=1)
    assert resumed.num_jumps == avg.num_jumps >= 2
    for a, b in zip(avg.module.parameters(), resumed.module.parameters()):
        assert torch.equal(a, b)


def test_the_default_decay_lags_ten_records():
    assert wc.ForecastEMA(mlp(), StepAhead(), record_every=100).decay == pytest.approx(0.999)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="decay must be in"):
        wc.ForecastEMA(mlp(), StepAhead(), decay=1.0, record_every=RECORD)
    with pytest.raises(ValueError, match="at least window \\* record_every"):
        wc.ForecastEMA(mlp(), StepAhead(), record_every=RECORD, jump_every=20)
    with pytest.raises(ValueError, match="multiple of record_every"):
        wc.ForecastEMA(mlp(), StepAhead(), record_every=RECORD, jump_every=55)
    with pytest.raises(ValueError, match="record intervals"):  # the nowcaster's card: k up to 32
        wc.ForecastEMA(mlp(), "nowcast", record_every=100, horizon=3300)
    with pytest.raises(TypeError, match="multi-horizon forecaster"):
        wc.ForecastEMA(mlp(), object(), record_every=RECORD)
    avg = wc.ForecastEMA(mlp(), StepAhead(), decay=0.9, record_every=RECORD)
    other = wc.ForecastEMA(mlp(), StepAhead(), decay=0.8, record_every=RECORD)
    with pytest.raises(ValueError, match="same forecaster, decay"):
        other.load_state_dict(avg.state_dict())
    with pytest.raises(ValueError, match="same forecaster, decay"):  # a plain EMA is not a forecast one
        wc.ForecastEMA(mlp(), None, decay=0.9, record_every=RECORD).load_state_dict(avg.state_dict())
    with pytest.raises(TypeError, match="guard must be a function"):
        wc.ForecastEMA(mlp(), StepAhead(), record_every=RECORD, guard=3.0)
    with pytest.raises(ValueError, match="plain EMA"):
        wc.ForecastEMA(mlp(), None, guard=lambda m: 0.0)
    with pytest.raises(TypeError, match="guard_fractions must be a sequence"):
        wc.ForecastEMA(mlp(), StepAhead(), record_every=RECORD, guard_fractions=0.5)
    with pytest.raises(ValueError, match="model with parameters"):
        wc.ForecastEMA(torch.nn.ReLU(), None)


def test_without_a_forecaster_it_is_torchs_ema_exactly():
    """forecaster=None: a plain EMA, the same numbers as AveragedModel with get_ema_multi_avg_fn, batch-norm buffers
    copied from the model at every update; no records, no jumps."""
    model, twin = bn_mlp(), bn_mlp()
    avg = wc.ForecastEMA(model, None, decay=0.95)
    plain = AveragedModel(twin, multi_avg_fn=get_ema_multi_avg_fn(0.95))
    train(model, 30, avg)
    train(twin, 30, plain)
    assert avg.num_jumps == 0 and avg.records == [] and int(avg.averaged.n_averaged) == 30
    for a, b in zip(avg.module.state_dict().values(), plain.module.state_dict().values()):
        assert torch.equal(a, b)
    assert not torch.equal(avg.module[2].running_mean, torch.zeros(16))  # the buffers followed the model


def test_an_averagedmodel_checkpoint_continues_as_torch_would():
    """An AveragedModel's state_dict is refused by load_state_dict with a pointer to avg.averaged; loaded there,
    the next updates average into it (as AveragedModel's do once n_averaged > 0), not over it."""
    model, twin = bn_mlp(), bn_mlp()
    plain = AveragedModel(twin, multi_avg_fn=get_ema_multi_avg_fn(0.95))
    train(twin, 10, plain)
    saved = copy.deepcopy(plain.state_dict())
    model.load_state_dict(twin.state_dict())
    avg = wc.ForecastEMA(model, None, decay=0.95)
    with pytest.raises(ValueError, match=r"AveragedModel's: load it with avg.averaged.load_state_dict"):
        avg.load_state_dict(saved)
    avg.averaged.load_state_dict(saved)
    train(model, 5, avg)
    train(twin, 5, plain)
    for a, b in zip(avg.module.state_dict().values(), plain.module.state_dict().values()):
        assert torch.equal(a, b)


def test_a_plain_ema_does_not_check_the_jump_arguments_it_does_not_use():
    """forecaster=None ignores jump_every and horizon, so a jump_every left over from a forecasting setup (below
    the default window * record_every) is not refused (review); with a forecaster it still is."""
    avg = wc.ForecastEMA(torch.nn.Linear(3, 2), None, decay=0.99, jump_every=50)
    assert avg.update() is False and avg.num_jumps == 0
    with pytest.raises(ValueError, match="jump_every"):
        wc.ForecastEMA(torch.nn.Linear(3, 2), StepAhead(), jump_every=50)
    model = torch.nn.Linear(3, 2)
    saved = wc.ForecastEMA(model, None, decay=0.99, record_every=7, jump_every=50)
    saved.update()
    resumed = wc.ForecastEMA(model, None, decay=0.99)   # its state does not depend on the unused arguments
    resumed.load_state_dict(saved.state_dict())
    assert resumed.num_updates == 1 and torch.equal(resumed.module.weight, saved.module.weight)
    with pytest.raises(ValueError, match="saved with"):
        wc.ForecastEMA(model, None, decay=0.9).load_state_dict(saved.state_dict())


class MoveGuard:
    """A guard loss: |(how far every weight moved from where the first call saw it) - best_move|."""

    def __init__(self, best_move):
        self.best_move, self.origin = best_move, None

    def __call__(self, module):
        flat = torch.cat([p.flatten() for p in module.parameters()])
        if self.origin is None:
            self.origin = flat.clone()  # the guard's first call sees the average as it is
        return float((flat - self.origin).mean() - self.best_move) ** 2


def test_the_guard_keeps_the_best_horizon_or_the_average_as_it_is():
    """Candidates k, k/2, k/4 (one forecast) and staying; the guard's loss picks one; 'stay' restores the average."""
    for best_move, chosen in ((4.0, 4), (1.9, 2), (0.0, 0)):  # StepAhead moves every weight by k
        model = mlp()
        avg = wc.ForecastEMA(model, StepAhead(), decay=0.5, record_every=RECORD, horizon=8 * RECORD,
                             guard=MoveGuard(best_move))
        train(model, 49, avg)
        seen = []
        assert avg.update(before_jump=lambda: seen.append([p.clone() for p in avg.module.parameters()]))
        assert avg.chosen == [chosen] and avg.num_jumps == (chosen > 0)  # of 8, 4, 2 and staying
        for a, b in zip(avg.module.parameters(), seen[0]):
            torch.testing.assert_close(a, b + chosen, rtol=0, atol=0)
    with pytest.raises(ValueError, match="guard_fractions"):
        wc.ForecastEMA(mlp(), StepAhead(), record_every=RECORD, guard=lambda m: 0.0, guard_fractions=(1.0, 0.0))


def _at_first_jump(guard):
    """A ForecastEMA with StepAhead and ``guard`` trained to one update before its first jump (k = 8)."""
    model = mlp()
    avg = wc.ForecastEMA(model, StepAhead(), decay=0.5, record_every=RECORD, horizon=8 * RECORD, guard=guard)
    train(model, 49, avg)
    return model, avg


def test_a_guard_loss_that_is_not_finite_never_wins_and_a_failing_guard_changes_nothing():
    losses = iter([float("nan"), 2.0, float("inf"), 1.0])  # staying, then k = 8, 4, 2
    _, avg = _at_first_jump(lambda m: next(losses))
    assert avg.update() and avg.chosen == [2] and avg.num_jumps == 1  # the one finite loss, at k = 2, wins

    calls = []

    def failing(module):
        calls.append(1)
        if len(calls) == 2:  # on the first candidate, after it was written into the average
            raise KeyError("boom")
        return 0.0

    _, avg = _at_first_jump(failing)
    seen = []
    with pytest.raises(KeyError):
        avg.update(before_jump=lambda: seen.append([p.clone() for p in avg.module.parameters()]))
    assert avg.chosen == [] and avg.num_jumps == 0 and len(avg.records) == 5
    for a, b in zip(avg.module.parameters(), seen[0]):
        assert torch.equal(a, b)  # the average as it was before the jump
    _, bad = _at_first_jump(lambda m: torch.ones(3))
    with pytest.raises(TypeError, match="must return a number"):
        bad.update()


def test_the_average_follows_the_live_parameters_and_refuses_a_dtype_mismatch():
    """Parameters re-assigned after construction (load_state_dict(assign=True)) are followed; a deep copy of the
    ForecastEMA averages its own copy of the model; a model moved to another dtype gets an error that says what to
    do (AveragedModel also raises)."""
    model = mlp()
    avg = wc.ForecastEMA(model, None, decay=0.5)
    train(model, 3, avg)
    model.load_state_dict({k: v.clone() + 1 for k, v in model.state_dict().items()}, assign=True)
    train(model, 20, avg)
    for a, p in zip(avg.module.parameters(), model.parameters()):
        assert float((a - p).detach().abs().max()) < 0.1  # it follows the new tensors (+1 away from the old ones)
    twin = copy.deepcopy(avg)
    before = [p.clone() for p in twin.module.parameters()]
    train(twin.model, 5, twin)
    assert all(not torch.equal(a, b) for a, b in zip(twin.module.parameters(), before))
    model.double()
    with pytest.raises(RuntimeError, match="avg.module.to"):
        avg.update()


def test_state_dict_is_a_snapshot():
    model = mlp()
    avg = wc.ForecastEMA(model, None, decay=0.5)
    train(model, 3, avg)
    state = avg.state_dict()
    saved = [v.clone() for v in state["averaged"].values()]
    train(model, 3, avg)
    assert all(torch.equal(a, b) for a, b in zip(state["averaged"].values(), saved))


def bn_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.BatchNorm1d(16),
                               torch.nn.ReLU(), torch.nn.Linear(16, 10))


def test_a_jump_forecasts_every_parameter_and_writes_only_the_trained_ones():
    """The forecaster sees the whole network (a graph forecaster needs it); a frozen parameter's average is not
    moved; with every parameter frozen a jump moves nothing and does not fail."""
    model = mlp()
    first = next(model.parameters())
    first.requires_grad_(False)
    forecaster = StepAhead()
    avg = wc.ForecastEMA(model, forecaster, decay=0.5, record_every=RECORD, horizon=2 * RECORD)
    train(model, 49, avg)
    before = [p.clone() for p in avg.module.parameters()]
    assert avg.update() and avg.num_jumps == 1
    assert forecaster.calls[0][1] == [n for n, _ in model.named_parameters()]
    assert torch.equal(next(avg.module.parameters()), before[0]) and torch.equal(before[0], first)
    assert all(not torch.equal(a, b) for a, b in list(zip(avg.module.parameters(), before))[1:])

    for p in model.parameters():
        p.requires_grad_(False)
    for _ in range(49):
        avg.update()
    seen = []
    assert avg.update(before_jump=lambda: seen.append([p.clone() for p in avg.module.parameters()]))
    assert avg.chosen == [2, 0] and avg.num_jumps == 1 and avg.records == []
    assert all(torch.equal(a, b) for a, b in zip(avg.module.parameters(), seen[0]))


def test_the_guard_restores_the_averages_modes_and_buffers():
    x = torch.randn(32, 64)

    def train_mode_guard(module):   # a guard that runs the average in train mode: batch-norm statistics change
        module.train()
        return float(module(x).square().mean())

    model = bn_mlp()
    avg = wc.ForecastEMA(model, StepAhead(), decay=0.5, record_every=RECORD, horizon=8 * RECORD,
                         guard=train_mode_guard)
    train(model, 49, avg)
    avg.module.eval()
    seen = []
    assert avg.update(before_jump=lambda: seen.append({k: b.clone() for k, b in avg.module.named_buffers()}))
    assert not any(m.training for m in avg.module.modules())
    assert all(torch.equal(b, seen[0][k]) for k, b in avg.module.named_buffers())


def test_a_forecast_of_the_wrong_shape_is_refused_naming_the_forecaster():
    class Short(StepAhead):
        def predict(self, windows, ks, names):
            return [[w[-1].flatten() for _ in ks] for w in windows]

    model = mlp()
    avg = wc.ForecastEMA(model, Short(), decay=0.5, record_every=RECORD)
    with pytest.raises(TypeError, match="Short.*must return.*shaped like the parameter"):
        train(model, 50, avg)
    assert avg.num_jumps == 0


def test_torch_save_of_the_whole_object_with_its_model_resumes_exactly(tmp_path):
    model = mlp()
    avg = wc.ForecastEMA(model, "nowcast", record_every=RECORD, horizon=Decaying(8, 2, total_steps=300))
    opt = train(model, 73, avg)
    torch.save({"model": model, "avg": avg, "opt": opt.state_dict()}, tmp_path / "avg.pt")
    loaded = torch.load(tmp_path / "avg.pt", weights_only=False)
    resumed = loaded["avg"]
    assert resumed.model is loaded["model"]   # one object again: training the loaded model moves the average
    resumed_opt = torch.optim.AdamW(loaded["model"].parameters(), lr=1e-2)
    resumed_opt.load_state_dict(loaded["opt"])
    train(model, 100, avg, opt, seed=1)
    train(loaded["model"], 100, resumed, resumed_opt, seed=1)
    assert resumed.num_jumps == avg.num_jumps >= 2
    for a, b in zip(avg.module.parameters(), resumed.module.parameters()):
        assert torch.equal(a, b)
