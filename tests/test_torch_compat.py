"""ForecastSGD and Forecast where users put torch optimizers: tied weights, checkpoint tools, dtype changes, frozen
layers, copies, hooks, wrapped optimizers' extras. Each case compares with what torch.optim does."""
import copy
import inspect
import pickle

import numpy as np
import pytest
import torch

import weightcast as wc
from weightcast.forecasters import FarcastForecaster, WNNForecaster
from weightcast.forecasters.latent import LatentForecaster

from helpers import classifier_batch, odd_params, run, tiny_classifier


def train(model, opt, steps, seed=0):
    x, y = classifier_batch(seed)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


# ------------------------------------------------------------------------------------------ parameters stay theirs


class TiedLM(torch.nn.Module):
    """An embedding and an output layer sharing one weight storage (tied through ``.data``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(11, 6)
        self.out = torch.nn.Linear(6, 11, bias=False)
        self.out.weight.data = self.emb.weight.data

    def forward(self, idx):
        return self.out(self.emb(idx))


@pytest.mark.parametrize("forecaster", [None, "linear", "farcast"])
def test_tied_parameters_stay_tied(forecaster):
    model = TiedLM()
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster=forecaster, window=5, record_every=1)
    idx = torch.arange(11)
    for _ in range(12):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(idx), idx).backward()
        opt.step()
    assert model.out.weight.data_ptr() == model.emb.weight.data_ptr()
    assert torch.equal(model.out.weight, model.emb.weight)
    assert opt.num_jumps == (0 if forecaster is None else 2)


def test_accelerate_save_state_and_load_state(tmp_path):
    accelerate = pytest.importorskip("accelerate")
    import safetensors.torch

    model = tiny_classifier()
    acc = accelerate.Accelerator(cpu=True)
    model, opt = acc.prepare(model, wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="linear", window=3))
    train(model, opt, 1)
    acc.save_state(str(tmp_path / "ckpt"))
    saved = safetensors.torch.load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    assert set(saved) == set(model.state_dict())  # nothing "removed as shared"
    expected = params_of(model)
    train(model, opt, 3)  # a jump in between
    acc.load_state(str(tmp_path / "ckpt"))
    for p, q in zip(model.parameters(), expected):
        assert torch.equal(p, q)
    safetensors.torch.save_model(model, str(tmp_path / "model.safetensors"))
    assert set(safetensors.torch.load_file(str(tmp_path / "model.safetensors"))) == set(model.state_dict())


def test_dtype_change_after_construction_keeps_float64_progress():
    """model.double() after building the optimizer: the history follows (no float32 staging erasing 1e-10 steps)."""
    model = torch.nn.Linear(1, 1, bias=False)
    opt = wc.ForecastSGD(model.parameters(), lr=1.0, forecaster="linear", window=4, horizon=4)
    model.double()
    model.weight.data.fill_(1.0)
    for _ in range(4):
        model.weight.grad = torch.full_like(model.weight, -1e-10)
        opt.step()
    assert opt.num_jumps == 1 and model.weight.dtype == torch.float64
    # the line through 1 + 1e-10 t, t = 1..4, evaluated at t = 8
    assert abs(float(model.weight.detach()) - (1 + 8e-10)) < 1e-15


def test_device_or_dtype_change_carries_the_window_over():
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.05, forecaster="linear", window=3)
    run(opt, params, 2)  # two snapshots in float32
    for p in params:
        p.data = p.data.double()
    run(opt, params, 1, start=2)  # the third snapshot, then the jump from the carried window
    assert opt.num_jumps == 1
    assert all(p.dtype == torch.float64 for p in params)
    (_, bucket), = opt.engine.buckets
    assert bucket.history.dtype == torch.float64


FORECASTERS = {
    "linear": lambda dtype: wc.forecasters.get("linear", history_dtype=dtype),
    "farcast": lambda dtype: FarcastForecaster(history_dtype=dtype),
    "wnn": lambda dtype: WNNForecaster(history_dtype=dtype),
    "latent": lambda dtype: LatentForecaster(),
}
CASES = [(name, dtype) for name in FORECASTERS for dtype in (None, torch.bfloat16)
         if not (name == "latent" and dtype is not None)]


@pytest.mark.parametrize("how", ["requires_grad", "lr0"])
@pytest.mark.parametrize("name,history_dtype", CASES, ids=[f"{n}-{d}" for n, d in CASES])
def test_frozen_parameters_keep_their_values_bit_for_bit(name, history_dtype, how):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters()}]
    opt = wc.ForecastSGD(groups, lr=0.05, momentum=0.9, forecaster=FORECASTERS[name](history_dtype), window=5,
                         record_every=1)
    train(model, opt, 7)  # a jump at 5 moved everything
    assert opt.num_jumps == 1
    if how == "requires_grad":
        model[0].requires_grad_(False)
    else:
        opt.param_groups[0]["lr"] = 0.0
    frozen = params_of(model[0])
    moving = params_of(model[2])
    train(model, opt, 13, seed=1)  # jumps at 10, 15 and 20
    assert opt.num_jumps + opt.num_skipped_jumps == 4
    for p, q in zip(model[0].parameters(), frozen):
        assert torch.equal(p, q)
    assert any(not torch.equal(p, q) for p, q in zip(model[2].parameters(), moving))


# --------------------------------------------------------------------------------------------- copies and pickles


def _make(kind):
    model = tiny_classifier()
    if kind == "sgd":
        return model, wc.ForecastSGD(model.parameters(), lr=0.1, momentum=0.9)
    if kind == "forecast-sgd":
        return model, wc.ForecastSGD(model.parameters(), lr=0.1, momentum=0.9, forecaster="linear", window=3)
    return model, wc.Forecast(torch.optim.AdamW(model.parameters(), lr=1e-2), forecaster="linear", window=3)


@pytest.mark.parametrize("kind", ["sgd", "forecast-sgd", "forecast-adamw"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_deepcopy_and_pickle_continue_like_the_original(kind, how):
    model, opt = _make(kind)
    train(model, opt, 2)
    if how == "deepcopy":
        model2, opt2 = copy.deepcopy((model, opt))
    else:
        model2, opt2 = pickle.loads(pickle.dumps((model, opt)))
    train(model, opt, 5)
    train(model2, opt2, 5)
    assert opt2.num_jumps == opt.num_jumps
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    assert all(p is q for p, q in zip(opt2.param_groups[0]["params"], model2.parameters()))


@pytest.mark.parametrize("kind", ["sgd", "forecast-sgd", "forecast-adamw"])
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_of_an_optimizer_with_an_lr_scheduler_step_themselves(kind, how):
    """An LR scheduler wraps the instance's step (bound to that optimizer); a copy must step its own
    parameters, as torch's optimizers' copies do, and pickling must work."""
    model, opt = _make(kind)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    train(model, opt, 2)
    scheduler.step()
    model2, opt2 = copy.deepcopy((model, opt)) if how == "deepcopy" else pickle.loads(pickle.dumps((model, opt)))
    before = params_of(model)
    train(model2, opt2, 3)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))   # the original did not move
    train(model, opt, 3)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), model2.parameters()))


@pytest.mark.parametrize("kind", ["forecast-sgd", "forecast-adamw"])
def test_step_hooks_run_once_per_step_even_after_a_plain_sgd_exists(kind):
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)   # torch then wraps SGD.step with its hooks
    model, opt = _make(kind)
    calls = []
    opt.register_step_pre_hook(lambda *args: calls.append("pre"))
    opt.register_step_post_hook(lambda *args: calls.append("post"))
    train(model, opt, 2)
    assert calls == ["pre", "post"] * 2


@pytest.mark.parametrize("kind", ["forecast-sgd", "forecast-adamw"])
def test_a_refused_param_group_is_not_left_half_added(kind):
    model, opt = _make(kind)
    groups = len(opt.param_groups)
    with pytest.raises(TypeError):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(3, dtype=torch.complex64))]})
    assert len(opt.param_groups) == groups
    train(model, opt, 3)   # steps as before


def test_a_group_the_engine_refuses_added_to_the_wrapped_optimizer_is_refused_before_anything_moves():
    model, opt = _make("forecast-adamw")
    bad = torch.nn.Parameter(torch.ones(3, dtype=torch.complex64))
    opt.optimizer.add_param_group({"params": [bad]})
    x, y = classifier_batch(0)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    bad.grad = torch.ones_like(bad)
    before = params_of(model)
    with pytest.raises(TypeError):
        opt.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before)) and torch.equal(bad, torch.ones(3))
    assert len(opt.optimizer.param_groups) == 1 and opt.engine.step_count == 0
    train(model, opt, 2)


def test_a_custom_schedule_without_spec_is_refused_at_construction():
    class Halving(wc.schedules.Schedule):
        def horizon(self, j):
            return max(1, 8 >> j)

        def max_horizon(self):
            return 8

    with pytest.raises(TypeError, match="Halving does not implement spec"):
        wc.ForecastSGD(tiny_classifier().parameters(), lr=0.1, forecaster="linear", window=3, horizon=Halving())


def test_an_optimizer_pickled_before_steps_could_be_held_continues_like_the_original():
    """Engines pickled by the version before held fused steps kept their count in ``step_count``; unpickled now
    (the same state, the count under its old name, no held steps) they continue exactly."""
    model, opt = _make("forecast-sgd")
    train(model, opt, 2)
    model2, opt2 = copy.deepcopy((model, opt))
    old = dict(opt2.engine.__dict__)
    old["step_count"] = old.pop("_step_count")
    del old["_held_steps"], old["_held_skips"]
    opt2.engine.__dict__.clear()
    opt2.engine.__setstate__(old)
    train(model, opt, 5)
    train(model2, opt2, 5)
    assert opt2.engine.step_count == opt.engine.step_count == 7 and opt2.num_jumps == opt.num_jumps
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), model2.parameters()))


def test_distributed_checkpoint_state_dict_round_trip():
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    model = tiny_classifier()
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="linear", window=3)  # stateless SGD: DCP inits it
    osd = get_optimizer_state_dict(model, opt)
    assert opt.engine.step_count == 0 and opt.engine.buckets[0][1].filled == 0  # DCP's init step not counted
    train(model, opt, 4)
    osd = get_optimizer_state_dict(model, opt)
    assert opt.engine.step_count == 4
    model2 = copy.deepcopy(model)
    opt2 = wc.ForecastSGD(model2.parameters(), lr=0.1, forecaster="linear", window=3)
    set_optimizer_state_dict(model2, opt2, osd)
    assert opt2.engine.step_count == 4 and opt2.num_jumps == 1
    train(model, opt, 5)
    train(model2, opt2, 5)
    assert opt2.num_jumps == opt.num_jumps == 3
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


# ------------------------------------------------------------------------------------------------ load_state_dict


def _saved(forecaster="linear", **kw):
    model = tiny_classifier()
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, momentum=0.9, forecaster=forecaster, **kw)
    train(model, opt, 2)
    return opt.state_dict()


@pytest.mark.parametrize("saved_kw,this_kw,message", [
    (dict(), dict(forecaster="farcast"), "saved with forecaster 'linear', this optimizer uses 'farcast'"),
    (dict(), dict(window=4), "window saved 5, this optimizer 4"),
    (dict(), dict(horizon=7), "horizon saved"),
    (dict(), dict(forecaster=wc.forecasters.get("linear", history_dtype=torch.bfloat16)),
     "saved with history_dtype None, this optimizer uses bfloat16"),
])
def test_load_state_dict_is_all_or_nothing_and_names_both_sides(saved_kw, this_kw, message):
    state = _saved(**saved_kw)
    model = tiny_classifier(seed=1)
    kw = dict(dict(forecaster="linear"), **this_kw)
    opt = wc.ForecastSGD(model.parameters(), lr=0.3, momentum=0.5, **kw)
    train(model, opt, 1)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    after = opt.state_dict()
    assert after["param_groups"][0]["lr"] == 0.3 and after["param_groups"][0]["momentum"] == 0.5
    assert same(after, before)


def same(a, b) -> bool:
    """Nested state dicts equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def test_checkpoint_of_another_float_dtype_loads_with_a_cast():
    model = tiny_classifier()
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="linear", window=3)
    train(model, opt, 2)
    state = opt.state_dict()
    model64 = copy.deepcopy(model).double()
    opt64 = wc.ForecastSGD(model64.parameters(), lr=0.1, forecaster="linear", window=3)
    opt64.load_state_dict(state)
    (_, bucket), = opt64.engine.buckets
    assert bucket.history.dtype == torch.float64 and bucket.filled == 2
    saved = state["param_groups"][0]["forecast"]["buckets"][0]["history"]
    assert torch.equal(bucket.history, saved.double())


@pytest.mark.parametrize("base", ["sgd", "adamw"])
def test_plain_torch_checkpoint_loads_into_the_forecasting_optimizer(base):
    model = tiny_classifier()
    plain = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if base == "sgd" else \
        torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, plain, 3)
    model2 = copy.deepcopy(model)
    if base == "sgd":
        opt = wc.ForecastSGD(model2.parameters(), lr=0.1, momentum=0.9, forecaster="linear", window=3)
    else:
        opt = wc.Forecast(torch.optim.AdamW(model2.parameters(), lr=1e-2), forecaster="linear", window=3)
    opt.load_state_dict(copy.deepcopy(plain.state_dict()))  # (a copy: torch would share the momentum buffers)
    assert opt.engine.step_count == 0 and all(b.filled == 0 for _, b in opt.engine.buckets)
    train(model, plain, 2)
    train(model2, opt, 2)  # no jump yet: the forecasting optimizer continues exactly like the plain one
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    train(model2, opt, 1)
    assert opt.num_jumps == 1


# ----------------------------------------------------------------------------------- Forecast and the wrapped one


def test_forecast_forwards_the_wrapped_optimizers_extras():
    schedulefree = pytest.importorskip("schedulefree")
    model = tiny_classifier()
    opt = wc.Forecast(schedulefree.AdamWScheduleFree(model.parameters(), lr=1e-2), forecaster="linear", window=3)
    opt.train()
    train(model, opt, 6)
    opt.eval()
    assert opt.num_jumps == 2 and opt.optimizer.param_groups[0]["train_mode"] is False
    with pytest.raises(AttributeError, match="no_such_method"):
        opt.no_such_method()


@pytest.mark.parametrize("kind", ["forecast-sgd", "forecast-adamw"])
def test_state_dict_hooks_see_the_full_dict(kind):
    model, opt = _make(kind)
    seen = {}

    def note(key, value):
        seen[key] = value  # returns None: torch's hooks replace the state_dict with a returned value

    opt.register_state_dict_pre_hook(lambda o: note("pre", True))
    opt.register_state_dict_post_hook(lambda o, sd: note("post", "forecast" in sd["param_groups"][0]))
    opt.register_load_state_dict_pre_hook(lambda o, sd: note("load_pre", "forecast" in sd["param_groups"][0]))
    opt.register_load_state_dict_post_hook(lambda o: note("load_post", o.engine.step_count))
    train(model, opt, 2)
    opt.load_state_dict(opt.state_dict())
    assert seen == {"pre": True, "post": True, "load_pre": True, "load_post": 2}


def test_params_added_to_the_wrapped_optimizer_after_wrapping_are_forecast():
    model = tiny_classifier()
    inner = torch.optim.SGD(model[0].parameters(), lr=0.1)
    opt = wc.Forecast(inner, forecaster="linear", window=3)
    inner.add_param_group({"params": model[2].parameters()})
    before = params_of(model[2])
    moves = []
    opt.register_jump_hooks(before=lambda o, t: moves.append(params_of(model[2])),
                            after=lambda o, t: moves.append(params_of(model[2])))
    train(model, opt, 3)
    assert opt.num_jumps == 1 and len(opt.engine.buckets) == 2
    assert not torch.equal(moves[0][0], moves[1][0]) and not torch.equal(before[0], moves[0][0])


def test_jump_hooks_are_removable():
    model, opt = _make("forecast-sgd")
    calls = []
    handles = opt.register_jump_hooks(before=lambda o, t: calls.append(("before", t)),
                                      after=lambda o, t: calls.append(("after", t)))
    train(model, opt, 3)
    for h in handles:
        h.remove()
    train(model, opt, 3)
    assert calls == [("before", 3), ("after", 3)] and opt.num_jumps == 2


def test_same_default_forecaster_and_repr_shows_the_schedule():
    sgd_default = inspect.signature(wc.ForecastSGD).parameters["forecaster"].default
    assert inspect.signature(wc.Forecast).parameters["forecaster"].default == sgd_default
    model = tiny_classifier()
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="linear", window=3, record_every=2,
                         horizon=wc.schedules.Decaying(k_max=4, total_steps=60))
    text = repr(opt)
    assert "forecaster='linear'" in text and "Decaying(k_max=4, power=2, total_steps=60)" in text
    assert "jump_every=6" in text
    wrapped = repr(wc.Forecast(torch.optim.AdamW(model.parameters()), forecaster="linear", horizon=7))
    assert "horizon=Constant(7)" in wrapped and "AdamW" in wrapped


def test_numpy_integers_are_accepted_and_bad_schedules_refused_without_a_forecaster():
    model = tiny_classifier()
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="linear", window=np.int64(3),
                         record_every=np.int32(2), horizon=np.int64(4))
    assert (opt.engine.window, opt.engine.record_every, opt.engine.jump_every) == (3, 2, 6)
    assert isinstance(opt.engine.window, int)
    for bad in (dict(window=1), dict(horizon=0), dict(record_every=2, jump_every=5), dict(after_jump="zero")):
        with pytest.raises(ValueError):
            wc.ForecastSGD(model.parameters(), lr=0.1, **bad)
        with pytest.raises(ValueError):
            wc.Forecast(torch.optim.SGD(model.parameters(), lr=0.1), **bad)


def test_horizon_beyond_the_forecasters_range_is_refused_at_construction():
    farcast = FarcastForecaster()
    limit = farcast.A.shape[0]
    model = tiny_classifier()
    wc.ForecastSGD(model.parameters(), lr=0.1, forecaster=farcast, window=5, record_every=2, horizon=2 * limit)
    with pytest.raises(ValueError, match="trained for horizons up to"):
        wc.ForecastSGD(model.parameters(), lr=0.1, forecaster=farcast, window=5, record_every=2,
                       horizon=2 * limit + 1)
    with pytest.raises(ValueError, match="trained for horizons up to"):
        wc.ForecastSGD(model.parameters(), lr=0.1, forecaster=farcast, window=5, record_every=1,
                       horizon=wc.schedules.Decaying(k_max=limit + 1, total_steps=100))


def test_guard_restores_the_parameters_when_loss_fn_raises():
    """The guard's loss_fn raises after the forecast was written: the parameters of the jump step come back."""
    model = tiny_classifier()
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="linear", window=3)
    calls = []

    def loss_fn():
        calls.append(1)
        if len(calls) == 2:  # the evaluation of the forecast
            raise RuntimeError("evaluation failed")
        return 1.0

    opt.guard_jumps(loss_fn)
    train(model, opt, 2)
    twin = copy.deepcopy(model)
    x, y = classifier_batch()
    for m in (model, twin):
        m.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
    torch.optim.SGD(twin.parameters(), lr=0.1).step()  # the jump step's own update, without the jump
    with pytest.raises(RuntimeError, match="evaluation failed"):
        opt.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
    assert opt.num_jumps == 0


@pytest.mark.parametrize("given,named", [(torch.optim.AdamW, "the class AdamW"),
                                         ((p for p in [torch.zeros(2)]), "generator")])
def test_forecast_given_something_else_than_an_optimizer_says_how_to_build_one(given, named):
    with pytest.raises(TypeError, match=f"got {named}: build the optimizer first, e.g. "
                                        r"Forecast\(torch.optim.AdamW\(model.parameters\(\)"):
        wc.Forecast(given, "linear")


def test_capturable_is_refused_clearly():
    model = tiny_classifier()
    with pytest.raises(ValueError, match="not CUDA-graph capturable"):
        wc.Forecast(torch.optim.AdamW(model.parameters(), capturable=True), forecaster="linear")
    assert "capturable" in wc.ForecastSGD.__doc__ and "capturable" in wc.Forecast.__doc__


@pytest.mark.parametrize("history_dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_narrow_history_error_stays_within_the_documented_bound(history_dtype):
    """Forecaster docs: with a narrow history the forecast's error grows with sum_k |c_k| times the storage
    precision. Elementwise: |jump(narrow) - jump(float32)| <= sum_k |c_k| u |h_k| (u the unit roundoff of the
    storage dtype) plus float32 accumulation."""
    models = [tiny_classifier(), tiny_classifier()]
    opts = [wc.ForecastSGD(m.parameters(), lr=0.1, momentum=0.9, window=5, horizon=10,
                           forecaster=wc.forecasters.get("linear", history_dtype=d))
            for m, d in zip(models, (history_dtype, None))]
    windows = []
    opts[1].register_jump_hooks(before=lambda o, t: windows.append(o.engine.buckets[0][1].history.clone()))
    for m, opt in zip(models, opts):
        train(m, opt, 5)
    assert opts[0].num_jumps == opts[1].num_jumps == 1
    (_, bucket), = opts[1].engine.buckets
    c = wc.forecasters.least_squares_line_coefficients(list(bucket.slot_steps), 15).abs()
    u = torch.finfo(history_dtype).eps / 2
    h = windows[0].double().abs()
    scale = (c[:, None] * h).sum(0)
    bound = u * scale + 4 * 5 * torch.finfo(torch.float32).eps * scale
    for i, (p, q) in enumerate(zip(models[0].parameters(), models[1].parameters())):
        err = (p.detach().double() - q.detach().double()).reshape(-1).abs()
        assert bool((err <= bound[bucket.segment(i)]).all()), i
    assert any(not torch.equal(p, q) for p, q in zip(models[0].parameters(), models[1].parameters()))
