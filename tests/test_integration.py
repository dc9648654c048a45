"""ForecastSGD and Forecast in the places a torch optimizer is used: schedulers, AMP, closures, compile."""
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import weightcast as wc

from helpers import classifier_batch, tiny_classifier


def train(model, opt, steps, x, y, scheduler=None):
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


@pytest.mark.parametrize("wrap", ["ForecastSGD", "Forecast"])
def test_lr_scheduler_drives_the_learning_rate_without_warnings(wrap):
    model = tiny_classifier()
    if wrap == "ForecastSGD":
        opt = wc.ForecastSGD(model.parameters(), lr=0.1, momentum=0.9, forecaster="linear")
    else:
        opt = wc.Forecast(torch.optim.AdamW(model.parameters(), lr=0.1), forecaster="linear")
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
    x, y = classifier_batch()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        train(model, opt, 9, x, y, scheduler)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 3)
    assert opt.num_jumps == 1


def test_forecast_wrapper_is_an_optimizer_sharing_the_inner_state():
    model = tiny_classifier()
    inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
    opt = wc.Forecast(inner, forecaster="linear", window=3)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.param_groups is inner.param_groups and opt.state is inner.state
    x, y = classifier_batch()
    train(model, opt, 6, x, y)
    assert opt.num_jumps == 2 and len(inner.state) == 4
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        wc.Forecast(model)


def test_closure_zero_grad_and_parameters_without_gradients():
    model = tiny_classifier()
    frozen = torch.nn.Parameter(torch.randn(5))  # never gets a gradient
    opt = wc.ForecastSGD(list(model.parameters()) + [frozen], lr=0.1, forecaster="linear", window=2)
    x, y = classifier_batch()
    before = frozen.detach().clone()

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss.detach()

    losses = [opt.step(closure).item() for _ in range(6)]
    assert losses[-1] < losses[0]
    assert opt.num_jumps == 3
    assert torch.equal(frozen.detach(), before)  # a constant trajectory forecasts itself
    assert all(p.grad is not None for p in model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_add_param_group_after_construction():
    model = tiny_classifier()
    head = torch.nn.Linear(3, 3)
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, forecaster="linear", window=2)
    x, y = classifier_batch()
    train(model, opt, 3, x, y)
    opt.add_param_group({"params": head.parameters(), "lr": 0.01})
    assert len(opt.engine.buckets) == 2
    for _ in range(4):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(model(x)), y).backward()
        opt.step()
    assert opt.num_jumps == 3
    assert opt.engine.buckets[1][1].params[0] is head.weight


SCALED = {  # forecasting optimizers that GradScaler steps on the non-fused and on the fused path
    "ForecastSGD": lambda params, **kw: wc.ForecastSGD(params, lr=0.1, **kw),
    "ForecastSGD-fused": lambda params, **kw: wc.ForecastSGD(params, lr=0.1, fused=True, **kw),
    "Forecast(SGD-fused)": lambda params, **kw: wc.Forecast(torch.optim.SGD(params, lr=0.1, fused=True), **kw),
    "Forecast(Adam-fused)": lambda params, **kw: wc.Forecast(torch.optim.Adam(params, lr=0.01, fused=True), **kw),
}


def scaled_training(model, opt, steps, inf_step=None):
    """bfloat16 autocast + GradScaler; an inf in the gradient at ``inf_step`` (the scaler must skip that step).
    Returns the scaler's scale after every step."""
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    x, y = classifier_batch()
    scales = []
    for step in range(steps):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        if step == inf_step:
            model[0].weight.grad[0, 0] = float("inf")
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    return scales


@pytest.mark.parametrize("make", SCALED.values(), ids=SCALED.keys())
def test_grad_scaler_skips_inf_steps_and_keeps_the_count_exact(make):
    model = tiny_classifier()
    opt = make(model.parameters(), forecaster="linear", window=2)
    scaled_training(model, opt, 6, inf_step=2)
    assert opt.engine.step_count == 5
    assert opt.num_jumps == 2
    assert all(torch.isfinite(p).all() for p in model.parameters())


class HostReads(TorchDispatchMode):
    """Counts device-to-host scalar reads (``.item()``, ``bool()`` of a tensor: a sync on a GPU)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", [n for n in SCALED if "fused" in n])
def test_fused_grad_scaler_flags_are_read_only_where_a_record_or_jump_can_fall(name):
    """On the fused path GradScaler's found_inf stays on the device: read once at a step that may record or jump
    (here every 3rd), never at the others, so those steps add no sync to the fused optimizer's (which adds none);
    a skipped step moves the records and jumps exactly as on the non-fused path, where the scaler never calls
    step()."""
    schedule = dict(forecaster="linear", window=2, record_every=3, jump_every=6)
    model, twin = tiny_classifier(), tiny_classifier()
    opt, plain = SCALED[name](model.parameters(), **schedule), SCALED["ForecastSGD"](twin.parameters(), **schedule)
    scaler, x, y = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10), *classifier_batch()
    reads = []
    for step in range(14):
        opt.zero_grad()
        scaler.scale(torch.nn.functional.cross_entropy(model(x), y)).backward()
        if step == 4:
            model[0].weight.grad[0, 0] = float("inf")
        with HostReads() as host:
            scaler.step(opt)
            scaler.update()
        reads.append(host.count)
    scaled_training(twin, plain, 14, inf_step=4)
    # calls 3 and 6 could be steps 3 and 6; the 5th call was skipped, so the 6th is step 5 and the 7th is step 6
    # (read again), then calls 10 and 13 are steps 9 and 12
    assert [c for c, r in enumerate(reads, 1) if r] == [3, 6, 7, 10, 13], reads
    assert opt.engine.step_count == plain.engine.step_count == 13
    assert opt.num_jumps == plain.num_jumps == 2
    assert [b.slot_steps for _, b in opt.engine.buckets] == [b.slot_steps for _, b in plain.engine.buckets]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (tools/gpu_check.sh runs it)")
@pytest.mark.parametrize("base", [torch.optim.SGD, torch.optim.Adam], ids=["SGD", "Adam"])
def test_on_cuda_the_fused_grad_scaler_path_matches_the_plain_optimizer_and_reads_only_at_records(base):
    """On a GPU, where a host read is a sync: Forecast around a fused optimizer under GradScaler gives the plain
    fused optimizer's weights bit for bit (an overflow at call 5 skipped), and adds host reads only at the calls
    that may record (3 and 6, and 7 after the skip), none at the others."""
    x, y = (t.cuda() for t in classifier_batch())
    reads = {}
    models = {}
    for name in ("forecast", "plain"):
        model = tiny_classifier().cuda()
        opt = base(model.parameters(), lr=0.01, fused=True)
        if name == "forecast":
            opt = wc.Forecast(opt, forecaster="linear", window=2, record_every=3, jump_every=99)   # no jump
        scaler, reads[name], models[name] = torch.amp.GradScaler("cuda", init_scale=2.0 ** 10), [], model
        for call in range(1, 10):
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            if call == 5:
                model[0].weight.grad[0, 0] = float("inf")
            with HostReads() as host:
                scaler.step(opt)
                scaler.update()
            reads[name].append(host.count)
    assert all(torch.equal(p, q) for p, q in zip(models["forecast"].parameters(), models["plain"].parameters()))
    extra = [a - b for a, b in zip(reads["forecast"], reads["plain"])]
    assert [call for call, n in enumerate(extra, 1) if n] == [3, 6, 7], reads


@pytest.mark.parametrize("inf_step", [None, 1], ids=["finite", "overflow"])
@pytest.mark.parametrize("forecaster", [None, "linear"])
@pytest.mark.parametrize("base", [torch.optim.SGD, torch.optim.Adam], ids=["SGD", "Adam"])
def test_grad_scaler_with_a_fused_wrapped_optimizer_is_the_plain_fused_optimizer(base, forecaster, inf_step):
    """GradScaler hands a fused optimizer grad_scale and found_inf; through Forecast they must reach the wrapped
    optimizer's kernel (unscaled gradients, the overflowing step skipped) as without the wrapper."""
    model, twin = tiny_classifier(), tiny_classifier()
    opt = wc.Forecast(base(model.parameters(), lr=0.01, fused=True), forecaster=forecaster, window=2,
                      jump_every=100)
    plain = base(twin.parameters(), lr=0.01, fused=True)
    assert scaled_training(model, opt, 4, inf_step) == scaled_training(twin, plain, 4, inf_step)
    for p, q in zip(model.parameters(), twin.parameters()):
        assert torch.equal(p, q)
        assert opt.state[p].keys() == plain.state[q].keys()
        assert all(torch.equal(opt.state[p][k], plain.state[q][k]) for k in opt.state[p])  # Adam's step too
    assert not hasattr(opt.optimizer, "grad_scale") and not hasattr(opt.optimizer, "found_inf")


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_torch_compile_of_a_training_step(backend):
    if backend == "inductor":
        pytest.importorskip("torch._inductor")
    model = tiny_classifier()
    twin = tiny_classifier()
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, momentum=0.9, forecaster="linear", window=3)
    twin_opt = wc.ForecastSGD(twin.parameters(), lr=0.1, momentum=0.9, forecaster="linear", window=3)
    x, y = classifier_batch()

    def step(m, o):
        o.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
        o.step()
        return loss

    compiled = torch.compile(step, backend=backend)
    for _ in range(7):
        compiled(model, opt)
        step(twin, twin_opt)
    assert opt.num_jumps == twin_opt.num_jumps == 2
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
