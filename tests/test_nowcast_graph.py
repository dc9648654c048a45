"""The neuron-graph nowcaster: graph construction, equivariance, fallback, forecasts, files, training, engine path."""
import json
import warnings

import pytest
import torch

import weightcast as wc
from weightcast.errors import InputError
from weightcast.forecasters import get, io
from weightcast.forecasters.neuron_graph import build_graph
from weightcast.forecasters.nowcast import param_type, predict_tensor
from weightcast.forecasters.nowcast_graph import (NowcastGraphForecaster, fallback_tensors, graph_shapes, init_graph,
                                                  predict_network)
from weightcast.forecasters.nowcast_graph_train import GraphTrainConfig, train_graph
from weightcast.cli import main
from weightcast.models import GPT, MLP, LeNet5
from weightcast.study.jumps import Jumps, nowcast_predictor
from weightcast.zoo import build_zoo, quick_spec

WINDOW, K = 5, 6
CONFIG = {"window": WINDOW, "hidden": 8, "k_max": K, "embed": 4, "rounds": 2, "fallback_hidden": 8,
          "spacings": [10, 20]}


def random_model(seed=0):
    """Weights with every layer non-zero (an untrained nowcaster stands still, which would prove nothing)."""
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randn(t.shape, generator=g) * 0.3 for name, t in init_graph(CONFIG).items()}


def named(model):
    return [n for n, _ in model.named_parameters()], [tuple(p.shape) for p in model.parameters()]


def windows_of(model, seed=0):
    """A window of WINDOW states of every parameter: the weights plus a random walk."""
    g = torch.Generator().manual_seed(seed)
    return [torch.stack([p.detach()] * WINDOW) + 0.01 * torch.randn(WINDOW, *p.shape, generator=g).cumsum(0)
            for p in model.parameters()]


def test_graph_of_an_mlp_shares_neurons_between_layers():
    names, shapes = named(MLP((1, 8, 8), 10, widths=(32, 16)))
    g = build_graph(shapes, names)
    assert g.num_nodes == 64 + 32 + 16 + 10 and g.fallback == [] and g.placed == list(range(6))
    assert g.num_weight_edges == 64 * 32 + 32 * 16 + 16 * 10
    assert g.num_edges == g.num_weight_edges + 32 + 16 + 10  # biases: one self-loop per neuron
    # layers.2.weight (16, 32): element (o, i) goes from hidden neuron i of layer 0 to neuron o of layer 1
    start = 64 * 32 + 32
    assert int(g.src[start + 5 * 32 + 7]) == 64 + 7 and int(g.dst[start + 5 * 32 + 7]) == 64 + 32 + 5
    bias = start + 32 * 16
    assert torch.equal(g.src[bias:bias + 16], g.dst[bias:bias + 16])


def test_graph_of_lenet5_has_channel_nodes_and_flattens_into_them():
    names, shapes = named(LeNet5((1, 8, 8), 10, width=0.5))  # channels 3, 8; fc 60, 42; flatten 8 x 2 x 2 = 32
    g = build_graph(shapes, names)
    assert g.fallback == [] and g.num_nodes == 1 + 3 + 8 + 60 + 42 + 10
    assert g.num_weight_edges == 3 * 1 * 25 + 8 * 3 * 25 + 60 * 32 + 42 * 60 + 10 * 42
    assert g.num_edges == g.num_weight_edges + 3 + 8 + 60 + 42 + 10
    start = 3 * 25 + 3 + 8 * 3 * 25 + 8  # classifier.0.weight (60, 32): input j belongs to channel j // 4
    channel_nodes = torch.arange(1 + 3, 1 + 3 + 8)
    assert torch.equal(g.src[start:start + 32], channel_nodes.repeat_interleave(4))
    # a conv weight's k x k taps are parallel edges of one (in, out) channel pair
    conv2 = 3 * 25 + 3
    assert set(g.src[conv2:conv2 + 25].tolist()) == {1} and set(g.dst[conv2:conv2 + 25].tolist()) == {4}


def test_gpt_attention_and_stray_parameters_fall_back():
    names, shapes = named(GPT(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    g = build_graph(shapes, names)
    fallback = {names[i] for i in g.fallback}
    assert {"blocks.0.attn.qkv.weight", "blocks.0.attn.proj.weight", "blocks.0.attn.qkv.bias"} <= fallback
    assert "blocks.0.mlp.0.weight" in {names[i] for i in g.placed}
    assert sorted(g.placed + g.fallback) == list(range(len(shapes)))
    assert build_graph([(3, 4, 5)]).fallback == [0]  # a 3-D tensor is no layer
    with pytest.raises(ValueError, match="one name per parameter"):
        build_graph(shapes, names[:-1])


def test_permuting_hidden_neurons_permutes_the_forecast_identically():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 5, widths=(12, 9))
    names, _ = named(model)
    windows = windows_of(model)
    p1, p2 = torch.randperm(12), torch.randperm(9)
    # layers.0: rows by p1; layers.2: rows by p2, columns by p1; layers.4: columns by p2
    perms = [lambda w: w[:, p1], lambda b: b[:, p1], lambda w: w[:, p2][:, :, p1], lambda b: b[:, p2],
             lambda w: w[:, :, p2], lambda b: b]
    permuted = [f(w) for f, w in zip(perms, windows)]
    tensors = random_model()
    out = predict_network(tensors, 2, windows, [1, K], names)
    out_p = predict_network(tensors, 2, permuted, [1, K], names)
    moved = False
    for f, w, a, b in zip(perms, windows, out, out_p):
        for x, y in zip(a, b):
            torch.testing.assert_close(f(x[None])[0], y, atol=1e-5, rtol=1e-5)
            moved |= bool((x - w[-1]).abs().max() > 1e-3)
    assert moved  # the forecast is not the last state (the test would prove nothing then)
    # and the graph matters: a network with one hidden neuron changed changes other neurons' forecasts
    changed = [w.clone() for w in windows]
    changed[0][:, 0] += torch.linspace(0, 1, WINDOW)[:, None]
    out_c = predict_network(tensors, 2, changed, [K], names)
    assert not torch.allclose(out_c[2][0][:, 1:], out[2][1][:, 1:])


def test_unplaced_parameters_get_the_per_element_forecast():
    model = GPT(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
    names, shapes = named(model)
    windows = windows_of(model)
    tensors = random_model()
    out = predict_network(tensors, 2, windows, [0, 2], names)
    graph = build_graph(shapes, names)
    for i in graph.fallback:
        expected = predict_tensor(fallback_tensors(tensors), windows[i], param_type(shapes[i], names[i]), [0, 2])
        for a, b in zip(out[i], expected):
            torch.testing.assert_close(a, b)
    for i, preds in enumerate(out):
        assert preds[0].shape == shapes[i] and torch.equal(preds[0], windows[i][-1])  # k = 0: the last state
        assert preds[1].dtype == windows[i].dtype and torch.isfinite(preds[1]).all()


def test_untrained_model_stands_still_and_keeps_dtypes():
    model = LeNet5((1, 8, 8), 10, width=0.5)
    windows = [w.to(torch.float64) for w in windows_of(model)]
    out = predict_network(init_graph(CONFIG), 2, windows, [1, K])
    for w, preds in zip(windows, out):
        for p in preds:
            assert p.dtype == torch.float64
            torch.testing.assert_close(p, w[-1], atol=1e-5, rtol=1e-5)


def test_bad_inputs_are_refused():
    f = NowcastGraphForecaster(tensors=random_model(), config=CONFIG)
    w = [torch.randn(WINDOW, 3, 2), torch.randn(WINDOW, 3)]
    with pytest.raises(ValueError, match="not a whole number in 0..6"):
        f.predict(w, [K + 1])
    with pytest.raises(ValueError, match="not a whole number"):
        f.predict(w, [1.5])
    with pytest.raises(ValueError, match="one name per parameter"):
        f.predict(w, [1], ["a.weight"])
    with pytest.raises(ValueError, match="same number of states"):
        f.predict([torch.randn(WINDOW, 3, 2), torch.randn(WINDOW - 1, 3)], [1])
    with pytest.raises(ValueError, match="record spacings"):
        f.check_schedule(WINDOW, 50, 50)
    with pytest.raises(ValueError, match="do not match config"):
        NowcastGraphForecaster(tensors={**random_model(), "out_w": torch.zeros(K + 1, 8)}, config=CONFIG)
    assert f.predict([], [1]) == []


def test_training_loop_jumps_and_the_engine_use_the_whole_network():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, widths=(6,))
    f = NowcastGraphForecaster(tensors=random_model(), config=CONFIG)
    names, _ = named(model)
    predictor = nowcast_predictor(f, names)
    jumps = Jumps(list(model.parameters()), predictor, window=WINDOW, record_every=2, ks=[K])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(32, 16)
    for t in range(1, 2 * WINDOW + 1):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
        before = [p.detach().clone() for p in model.parameters()]
        jumped = jumps.after_step(t)
    assert jumped and jumps.chosen == [K]
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    # the engine: a bucket of the same network gets the same forecast as predict_network on its windows
    model2, plain = MLP((1, 4, 4), 3, widths=(6,)), MLP((1, 4, 4), 3, widths=(6,))
    plain.load_state_dict(model2.state_dict())
    any_spacing = NowcastGraphForecaster(tensors=f.tensors, config={**CONFIG, "spacings": []})
    opt2 = wc.Forecast(torch.optim.SGD(model2.parameters(), lr=0.1), any_spacing, window=WINDOW, record_every=1,
                       jump_every=WINDOW, horizon=2)
    opt3 = torch.optim.SGD(plain.parameters(), lr=0.1)  # the same steps without jumps: the recorded states
    states = []
    for _ in range(WINDOW):
        for m, o in ((model2, opt2), (plain, opt3)):
            o.zero_grad()
            m(x).square().mean().backward()
            o.step()
        states.append([p.detach().clone() for p in plain.parameters()])
    assert opt2.num_jumps == 1
    expected = predict_network(f.tensors, 2, [torch.stack([s[i] for s in states]) for i in range(len(states[0]))],
                               [2])
    for p, e in zip(model2.parameters(), expected):
        torch.testing.assert_close(p.detach(), e[0], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def quick_zoo(tmp_path_factory):
    out = tmp_path_factory.mktemp("nowcast_graph") / "zoo"
    build_zoo(out, quick_spec()[:4], progress=False)  # the digits MLP runs (the GPT run is too short for a window)
    return out


def test_meta_training_on_a_small_zoo_saves_a_file_that_loads_by_name(quick_zoo, tmp_path):
    cfg = GraphTrainConfig(k_max=2, spacings=(5,), hidden=8, embed=4, fallback_hidden=8, steps=4,
                           samples_per_batch=2, val_windows=2)
    config, tensors, card = train_graph(quick_zoo, cfg, progress=False, command="test")
    assert card["trained_for"] == {"window": 5, "spacings_steps": [5], "k_range": [1, 2]}
    assert set(card["val_l1_by_horizon"]) == {"graph", "per_element", "still", "line"}
    assert all(len(v) == 2 for v in card["val_l1_by_horizon"].values()) and card["val_runs"] >= 1
    assert card["params"] == sum(t.numel() for t in tensors.values())
    path = tmp_path / "nowcast-graph.safetensors"
    io.save(path, "nowcast-graph", config, tensors, card)
    f = get("nowcast-graph", path=path)
    assert (f.k_max, f.spacings, f.rounds) == (2, [5], 2)
    assert json.loads(io.card_path(path).read_text())["command"] == "test"
    for name, t in tensors.items():
        torch.testing.assert_close(f.tensors[name], t)
    with pytest.raises(io.ForecasterFileError):
        get("nowcast", path=path)
    with pytest.raises(InputError, match=r"hold \(record interval, snapshots\)"):
        train_graph(quick_zoo, GraphTrainConfig(spacings=(50,), steps=1), progress=False)
    with pytest.raises(InputError, match="at least 2 states"):
        train_graph(quick_zoo, GraphTrainConfig(window=1, spacings=(5,), steps=1), progress=False)


def test_cli_trains_it_with_the_per_element_model_and_a_held_out_zoo_in_the_card(quick_zoo, tmp_path):
    out = tmp_path / "g.safetensors"
    assert main(["forecaster", "train", "--kind", "nowcast-graph", "--zoo", str(quick_zoo), "--out", str(out),
                 "--steps", "2", "--samples", "2", "--hidden", "8", "--k-max", "3", "--spacings", "5",
                 "--held-out-zoo", str(quick_zoo), "--no-progress"]) == 0
    card = json.loads(io.card_path(out).read_text())
    assert card["config"]["hidden"] == card["config"]["fallback_hidden"] == 8
    assert len(card["val_l1_by_horizon"]["compare"]) == 3  # the shipped per-element nowcast, on the same windows
    assert set(card["held_out"]["l1_by_horizon"]) == set(card["val_l1_by_horizon"])


def test_shipped_weights_and_card():
    f = get("nowcast-graph")
    card = json.loads(io.card_path(io.default_path("nowcast-graph")).read_text())
    assert card["kind"] == "nowcast-graph" and card["config"] == f.config
    assert card["trained_for"]["spacings_steps"] == f.spacings and card["trained_for"]["k_range"] == [1, f.k_max]
    val = card["val_l1_by_horizon"]
    assert {"graph", "per_element", "still", "line"} <= set(val) and all(len(val[k]) == f.k_max for k in val
                                                                           if k != "compare")
    assert card["params"] == sum(t.numel() for t in f.tensors.values())
    assert {tuple(t.shape) for t in f.tensors.values()} == set(graph_shapes(f.config).values())


@pytest.mark.parametrize("name", ["nowcast", "nowcast-graph"])
def test_a_zero_size_parameter_jumps_without_warnings(name):
    """Its window statistics were the std of nothing: torch warned "degrees of freedom is <= 0" at every jump."""
    params = [torch.nn.Parameter(torch.zeros(0, 3)), torch.nn.Parameter(torch.randn(4, 3))]
    opt = wc.Forecast(torch.optim.AdamW(params, lr=1e-2), name, record_every=10, jump_every=50, horizon=50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(50):
            for p in params:
                p.grad = torch.ones_like(p)
            opt.step()
    assert opt.num_jumps == 1 and params[0].shape == (0, 3) and torch.isfinite(params[1]).all()
