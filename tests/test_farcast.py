"""The "farcast" forecaster (1-layer direct multi-step, seed 004), forecaster files, and the training CLI."""
import copy
import json

import pytest
import torch

import weightcast as wc
from weightcast.forecasters import ForecasterFileError, io
from weightcast.forecasters.farcast import FarcastForecaster, horizon_row
from weightcast.forecasters.train import farcast_predict, farcast_regulariser


def _A(max_horizon=4, lags=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(max_horizon, lags, generator=g, dtype=torch.float64)


def test_coefficients_extrapolate_constants_and_sum_to_one():
    f = FarcastForecaster(A=_A())
    steps = [30, 40, 50, 10, 20]  # ring order
    c = f.coefficients(steps, 75)
    assert c.shape == (6,) and c.dtype == torch.float64
    assert abs(float(c.sum()) - 1.0) < 1e-12


def test_jump_equals_reference_math():
    """ForecastSGD's fused jump = w_t + A_h . features(w_0, window), as trained (h = 2.5: interpolated)."""
    A = _A()
    model = torch.nn.Linear(5, 3)
    w0 = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    opt = wc.ForecastSGD(model.parameters(), lr=0.1, momentum=0.9, forecaster=FarcastForecaster(A=A), window=5,
                         record_every=10, jump_every=50, horizon=25)
    bucket = opt.engine.buckets[0][1]
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    for _ in range(50):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    assert opt.num_jumps == 1 and bucket.slot_steps == [10, 20, 30, 40, 50]
    n = bucket.numel
    # (n, 5) chronological; the jump left the recorded window in place
    window = torch.cat([bucket.history[:5, bucket.segment(i)] for i in range(len(bucket.params))], 1).T
    batch = {"window": window.double(), "w0": w0.double(), "h": torch.full((n,), 2.5, dtype=torch.float64),
             "frac_dt": torch.full((n,), 10 / 50, dtype=torch.float64)}
    expected = farcast_predict(A, batch).float()
    got = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_horizon_interpolation_and_limit():
    A = _A()
    torch.testing.assert_close(horizon_row(A, 2.5), 0.5 * (A[1] + A[2]))
    torch.testing.assert_close(horizon_row(A, 0.5), 0.5 * A[0])
    with pytest.raises(ValueError, match="max-horizon"):
        horizon_row(A, 4.5)


def test_frozen_parameter_kept_bit_for_bit():
    frozen = torch.nn.Parameter(torch.randn(7))
    moving = torch.nn.Parameter(torch.randn(7))
    opt = wc.ForecastSGD([frozen, moving], lr=0.1, forecaster=FarcastForecaster(A=_A()), window=5,
                         record_every=1, jump_every=5, horizon=3)
    before = frozen.detach().clone()
    for _ in range(5):
        opt.zero_grad()
        moving.square().sum().backward()
        opt.step()
    assert opt.num_jumps == 1 and torch.equal(frozen.detach(), before)


def test_state_dict_resumes_exactly():
    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        return model, wc.ForecastSGD(model.parameters(), lr=0.05, momentum=0.9, forecaster="farcast", window=5,
                                     record_every=2, jump_every=10, horizon=5)

    def run(model, opt, steps, seed):
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            opt.zero_grad()
            model(torch.randn(8, 4, generator=g)).square().mean().backward()
            opt.step()

    m1, o1 = make()
    run(m1, o1, 14, 1)
    state = copy.deepcopy(o1.state_dict())
    run(m1, o1, 14, 2)
    m2, o2 = make()
    run(m2, o2, 14, 1)
    o2.load_state_dict(state)
    run(m2, o2, 14, 2)
    assert o1.num_jumps == o2.num_jumps == 2
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


def test_regulariser_penalises_growing_or_reversed_steps():
    window = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]] * 3)  # mean step +1
    b = {"window": window, "h": torch.full((3,), 2.0), "scale": torch.ones(3)}
    pred = torch.tensor([4.0 + 2 * 0.5, 4.0 + 2 * 3.0, 4.0 - 2 * 1.0])  # contracting, growing, reversed
    r = farcast_regulariser(pred, b)
    assert r[0] == 0 and r[1] == pytest.approx(2.0) and r[2] == pytest.approx(1.0)


def test_shipped_weights_and_card():
    f = wc.forecasters.get("farcast")
    card = json.loads(io.card_path(io.default_path("farcast")).read_text())
    assert card["kind"] == "farcast" and "--kind farcast" in card["command"]
    assert f.A.shape == (card["config"]["max_horizon"], card["config"]["lags"])


def test_bad_files_fail_clearly(tmp_path):
    good = io.default_path("farcast")
    with pytest.raises(ForecasterFileError, match="not 'wnn'"):
        wc.forecasters.get("wnn", path=good)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(ForecasterFileError, match="truncated"):
        wc.forecasters.get("farcast", path=truncated)
    pickled = tmp_path / "p.safetensors"
    torch.save({"A": torch.zeros(6, 5)}, pickled)  # a pickle: must be refused, never unpickled
    with pytest.raises(ForecasterFileError, match="safetensors"):
        wc.forecasters.get("farcast", path=pickled)
    wrong = tmp_path / "w.safetensors"
    io.save(wrong, "farcast", {"lags": 5, "max_horizon": 6}, {"A": torch.zeros(6, 4)})
    with pytest.raises(ForecasterFileError, match="shapes"):
        wc.forecasters.get("farcast", path=wrong)
    foreign = tmp_path / "f.safetensors"
    from safetensors.torch import save_file

    save_file({"A": torch.zeros(6, 5)}, foreign)
    with pytest.raises(ForecasterFileError, match="format"):
        wc.forecasters.get("farcast", path=foreign)
    with pytest.raises(ForecasterFileError, match="weightcast forecaster train"):
        wc.forecasters.get("farcast", path=tmp_path / "missing.safetensors")


def test_train_cli_on_a_quick_zoo(tmp_path):
    from weightcast.cli import main
    from weightcast.zoo import build_zoo, quick_spec

    torch.set_num_threads(1)
    zoo = tmp_path / "zoo"
    build_zoo(zoo, quick_spec()[:4], progress=False)
    for kind in ("farcast", "wnn"):
        out = tmp_path / f"{kind}.safetensors"
        assert main(["forecaster", "train", "--kind", kind, "--zoo", str(zoo), "--out", str(out), "--steps", "3",
                     "--samples", "2", "--elements", "64", "--max-horizon", "2", "--no-progress"]) == 0
        card = json.loads(io.card_path(out).read_text())
        assert card["zoo_runs"]["train"] >= 1 and card["zoo_runs"]["val"] >= 1 and len(card["curve"]) == 2
        f = wc.forecasters.get(kind, path=out)
        assert f.name == kind
    from weightcast.forecasters.evaluate import evaluate
    from weightcast.forecasters.train import ZooWindows

    forecasters = {k: wc.forecasters.get(k, **({} if k == "linear" else {"path": tmp_path / f"{k}.safetensors"}))
                   for k in ("linear", "farcast", "wnn")}
    rows = evaluate({"val": ZooWindows(zoo, "val", 5, 2, strides=(1,))}, forecasters, every=2)
    assert {r["forecaster"] for r in rows} == set(forecasters)
    assert all(r["rel_l2"] > 0 and r["windows"] > 0 for r in rows)
