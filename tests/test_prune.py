"""Pruners: exact sparsity, masks through torch.nn.utils.prune, save/load, errors, OBS details, hypernetwork."""
import copy
import dataclasses
import io
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from weightcast.data import get_task
from weightcast.prune import (BiasFreeMLP, MaskHypernetwork, apply_masks, finetune, load_pruned, make_permanent,
                              prune, recalibrate_bn, sparsity_of)
from weightcast.prune import allocation, hypernet, scores
from weightcast.prune.models import registered
from weightcast.prune.obs import LayerOBS
from weightcast import models

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import prune_accuracy as bench  # noqa: E402


@pytest.fixture(scope="module")
def task():
    return get_task("digits")


@pytest.fixture(scope="module")
def trained(task):
    torch.manual_seed(0)
    model = BiasFreeMLP(task.input_shape, 10, (24, 12))
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    batches = task.batches(64, 0)
    for _ in range(150):
        x, y = next(batches)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def lenet(task):
    torch.manual_seed(1)
    return models.get("lenet5", **task.model_kwargs(), width=0.5).eval()


def counts(masks):
    return {k: int((~m).sum()) for k, m in masks.items()}


@pytest.mark.parametrize("method", ["random", "magnitude", "lamp", "hypernet", "obs", "woodfisher", "chita"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.77, 0.98])
def test_global_methods_hit_the_sparsity_exactly(trained, task, method, sparsity):
    model = copy.deepcopy(trained)
    n = sum(m.numel() for m in (model.layers[0].weight, model.layers[2].weight, model.layers[4].weight))
    options = {"hypernet": MaskHypernetwork()} if method == "hypernet" else {}
    masks = prune(model, sparsity, method, data=task.eval_tensors("train", 96), **options)
    assert sum(counts(masks).values()) == round(sparsity * n)
    assert sparsity_of(model) >= round(sparsity * n) / n  # applied (a kept weight may also be zero)
    assert all(hasattr(m, "weight_mask") for m in (model.layers[0], model.layers[2], model.layers[4]))


@pytest.mark.parametrize("method,kwargs", [("random", {"scope": "layer"}), ("magnitude", {"scope": "layer"}),
                                           ("lamp", {"scope": "layer"}),
                                           ("hypernet", {"scope": "layer", "hypernet": MaskHypernetwork()}),
                                           ("obs", {"allocation": "uniform"}), ("obs", {"scope": "layer"})])
def test_layer_wise_methods_hit_the_sparsity_in_every_layer(lenet, task, method, kwargs):
    model = copy.deepcopy(lenet)
    masks = prune(model, 0.83, method, data=task.eval_tensors("train", 64), **kwargs)
    for name, mask in masks.items():
        assert int((~mask).sum()) == round(0.83 * mask.numel()), name
    assert set(masks) == {"features.0.weight", "features.3.weight", "classifier.0.weight", "classifier.2.weight",
                          "classifier.4.weight"}


def test_obs_global_allocation_takes_the_cheapest_steps_over_all_layers(trained, task):
    from weightcast.prune import obs

    state = obs.prepare(trained, task.eval_tensors("train", 96)[0])
    counts = obs.layer_counts(state, 0.7, "global")
    assert sum(counts) == round(0.7 * sum(layer.W.numel() for layer in state.values()))
    # each layer gives up its k cheapest steps, and no step given up costs more than any step kept, in any layer
    ranked = [layer.losses.double().flatten().sort().values for layer in state.values()]
    removed = max(float(r[k - 1]) for r, k in zip(ranked, counts) if k > 0)
    kept = min(float(r[k]) for r, k in zip(ranked, counts) if k < len(r))
    assert removed <= kept
    assert counts != obs.layer_counts(state, 0.7, "uniform")  # the layers' costs differ, so their shares do
    with pytest.raises(ValueError, match="allocation must be one of"):
        obs.layer_counts(state, 0.7, "per-row")


def test_obs_relative_allocation_is_unchanged_by_rescaling_consecutive_layers(trained, task):
    """Scaling one ReLU layer's weights by 4 and the next one's by 1/4 gives the same network; "relative" (the
    default) allocates the removals as before, "global" compares the layers' raw costs and does not."""
    from weightcast.prune import obs

    x = task.eval_tensors("train", 96)[0]
    rescaled = copy.deepcopy(trained)
    with torch.no_grad():
        rescaled.layers[0].weight.mul_(4.0)   # powers of two: every cost scales exactly
        rescaled.layers[2].weight.div_(4.0)
    torch.testing.assert_close(rescaled(x), trained(x))
    before, after = obs.prepare(trained, x), obs.prepare(rescaled, x)
    assert obs.layer_counts(after, 0.8, "relative") == obs.layer_counts(before, 0.8, "relative")
    assert obs.layer_counts(after, 0.8, "global") != obs.layer_counts(before, 0.8, "global")
    assert obs.DEFAULT_ALLOCATION == "relative"
    a, b = prune(copy.deepcopy(trained), 0.8, "obs", data=(x, None)), prune(rescaled, 0.8, "obs", data=(x, None))
    assert counts(a) == counts(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_untrained_hypernetwork_is_global_magnitude(trained):
    a = prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=MaskHypernetwork())
    b = prune(copy.deepcopy(trained), 0.9, "magnitude")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_data_based_methods_beat_random_and_keep_zeros(trained, task):
    data = task.eval_tensors("train", 256)
    dense = task.evaluate(trained)["acc"]
    rand = task.evaluate(prune_copy(trained, 0.6, "random"))["acc"]
    for method in ("obs", "woodfisher", "chita"):
        model = prune_copy(trained, 0.6, method, data)
        acc = task.evaluate(model)["acc"]
        assert acc > rand + 0.1 and acc > dense - 0.3, (method, acc, rand, dense)
        for layer in (model.layers[0], model.layers[2], model.layers[4]):
            assert bool((layer.weight[~layer.weight_mask.bool()] == 0).all())


def prune_copy(model, s, method, data=None):
    model = copy.deepcopy(model)
    prune(model, s, method, data=data)
    return model


def test_obs_compensation_lowers_the_layer_error(trained, task):
    x = task.eval_tensors("train", 256)[0]
    pruned = prune_copy(trained, 0.7, "obs", x)
    masked_only = copy.deepcopy(trained)
    masks = prune(masked_only, 0.7, "obs", data=x, apply=False, update_weights=False)
    apply_masks(masked_only, masks)
    first = lambda m: m.layers[0](x.flatten(1))  # noqa: E731
    ref = first(trained)
    assert (first(pruned) - ref).square().sum() < (first(masked_only) - ref).square().sum()


def test_obs_dead_inputs_go_first():
    torch.manual_seed(0)
    x = torch.randn(50, 6)
    x[:, [1, 4]] = 0
    W = torch.randn(3, 6)
    state = LayerOBS(W, x.double(), rel_damp=0.01)
    assert set(state.order[:, :2].flatten().tolist()) == {1, 4}
    assert bool((state.losses[:, :2] == 0).all())
    mask, _ = state.prune(2 / 6)
    assert not mask[:, [1, 4]].any() and mask[:, [0, 2, 3, 5]].all()


def test_pruned_model_saves_and_loads(trained, lenet, task):
    for base in (trained, lenet):
        model = prune_copy(base, 0.8, "obs", task.eval_tensors("train", 64)[0])
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        fresh = load_pruned(copy.deepcopy(base), torch.load(buffer))
        x = task.eval_tensors("val", 32)[0]
        torch.testing.assert_close(fresh(x), model(x))
        assert sparsity_of(fresh) == sparsity_of(model)
        plain = make_permanent(fresh)
        assert not any(k.endswith("_mask") for k in plain.state_dict())
        torch.testing.assert_close(plain(x), model(x))


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan"), "half", "0.5", None])
def test_bad_sparsity_is_refused(trained, bad):
    model = copy.deepcopy(trained)
    error = TypeError if bad is None or isinstance(bad, str) else ValueError
    with pytest.raises(error, match=r"sparsity must be"):
        prune(model, bad, "magnitude")
    assert not hasattr(model.layers[0], "weight_mask")


@pytest.mark.parametrize("method", ["obs", "woodfisher", "chita"])
def test_data_based_methods_need_data(trained, method):
    model = copy.deepcopy(trained)
    with pytest.raises(ValueError, match="needs calibration data"):
        prune(model, 0.5, method)
    assert not hasattr(model.layers[0], "weight_mask")


def test_other_bad_inputs(trained, task):
    x, _ = task.eval_tensors("train", 8)
    with pytest.raises(ValueError, match="needs labels"):
        prune(copy.deepcopy(trained), 0.5, "woodfisher", data=x)
    with pytest.raises(ValueError, match="unknown pruning method"):
        prune(copy.deepcopy(trained), 0.5, "l1")
    with pytest.raises(ValueError, match="scope"):
        prune(copy.deepcopy(trained), 0.5, "magnitude", scope="row")
    with pytest.raises(ValueError, match="no Linear or Conv"):
        prune(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(FileNotFoundError, match="weightcast prune train"):
        hypernet.load("/nonexistent/hypernet.safetensors")


@pytest.mark.parametrize("method", ["obs", "woodfisher", "chita"])
def test_calibration_data_that_does_not_fit_the_model_is_refused(trained, task, method):
    """Inputs of another shape raised torch's "mat1 and mat2 shapes cannot be multiplied" from inside the pruner,
    labels beyond the classes an index error; OBS reads no labels, so a regression target passes it."""
    x, y = task.eval_tensors("train", 8)
    model = copy.deepcopy(trained).train()
    with pytest.raises(ValueError, match=r"does not run on the calibration inputs x of shape \(8, 3, 32, 32\)"):
        prune(model, 0.5, method, data=(torch.randn(8, 3, 32, 32), y))
    assert model.training and not hasattr(model.layers[0], "weight_mask")
    for labels, low, high in ((torch.tensor([0] * 7 + [11]), 0, 11), (torch.tensor([-1] + [1] * 7), -1, 1)):
        if method == "obs":
            prune(copy.deepcopy(trained), 0.5, method, data=(x, labels))
            continue
        with pytest.raises(ValueError, match=rf"labels y run from {low} to {high}, but the model has 10 classes"):
            prune(model, 0.5, method, data=(x, labels))
    assert model.training and not hasattr(model.layers[0], "weight_mask")


def test_the_calibration_check_leaves_batchnorm_statistics_alone(task):
    bn = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10)).train()
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    x, y = task.eval_tensors("train", 16)
    with pytest.raises(ValueError, match="labels y run"):
        prune(bn, 0.5, "woodfisher", data=(x, y + 10))
    assert bn.training and all(torch.equal(v, bn.state_dict()[k]) for k, v in before.items())


def test_load_pruned_refuses_a_file_name(trained, tmp_path):
    with pytest.raises(TypeError, match=r"mapping .* got str; .*load_pruned\(model, torch.load\(FILE\)\)"):
        load_pruned(copy.deepcopy(trained), str(tmp_path / "pruned.pt"))


def test_a_mask_that_empties_a_layer_is_warned_about(trained):
    def shrunk():
        model = copy.deepcopy(trained)
        with torch.no_grad():
            model.layers[2].weight.mul_(1e-6)   # global magnitude then removes this whole layer first
        return model

    with pytest.warns(UserWarning, match=r"kept no weight of \['layers.2.weight'\].*scope='layer'"):
        prune(shrunk(), 0.5, "magnitude")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prune(copy.deepcopy(trained), 0.5, "magnitude")
        prune(shrunk(), 0.5, "magnitude", scope="layer")


def test_finetune_keeps_the_masks_and_bn_recalibration(trained, task):
    model = prune_copy(trained, 0.9, "magnitude")
    before = [layer.weight_mask.clone() for layer in (model.layers[0], model.layers[2], model.layers[4])]
    finetune(model, task.batches(32, 0), steps=5)
    for layer, mask in zip((model.layers[0], model.layers[2], model.layers[4]), before):
        assert torch.equal(layer.weight_mask, mask) and bool((layer.weight[~mask.bool()] == 0).all())
    assert recalibrate_bn(model, [task.eval_tensors("train", 16)]) is False
    bn = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8))
    prune(bn, 0.5)
    bn[2].running_mean.fill_(5.0)
    assert recalibrate_bn(bn, [task.eval_tensors("train", 64)]) is True
    assert bn[2].running_mean.abs().max() < 5.0


def test_recovery_from_endless_or_short_batches_stops_with_a_clear_error(task):
    """recalibrate_bn(model, task.batches(...)) never returned (update_bn reads every batch of an endless
    iterator); finetune took no list, and a short iterator raised a bare StopIteration leaving train mode."""
    bn = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 10))
    with pytest.raises(ValueError, match="pass steps=N"):
        recalibrate_bn(bn, task.batches(16, 0))
    bn[2].running_mean.fill_(5.0)
    assert recalibrate_bn(bn, task.batches(16, 0), steps=3) is True and bn[2].running_mean.abs().max() < 5.0
    assert recalibrate_bn(nn.Linear(64, 10), task.batches(16, 0)) is False   # nothing to do, nothing read
    batches = [task.eval_tensors("train", 16)] * 2
    finetune(bn, batches, steps=2)
    with pytest.raises(ValueError, match="ran out after 2 of 3 steps"):
        finetune(bn, batches, steps=3)
    assert not bn.training
    with pytest.raises(ValueError, match="steps must be >= 1"):
        finetune(bn, batches, steps=0)


def test_hypernetwork_trains_and_round_trips(trained, task, tmp_path):
    net = MaskHypernetwork(token_size=16, hidden=8)
    rows = hypernet.train(net, [(copy.deepcopy(trained), task)], steps=6, batch_size=32, log_every=3,
                          log=lambda *_: None)
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.head[-1].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in net.budget[-1].parameters())
    hypernet.save(net, tmp_path / "h.safetensors", {"command": "test"})
    again = hypernet.load(tmp_path / "h.safetensors")
    a, b = net.scores(trained, 0.8), again.scores(trained, 0.8)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_hypernetwork_layer_offset_moves_the_layer_budgets(trained):
    net = MaskHypernetwork(token_size=16, hidden=8, max_offset=1.0)
    with torch.no_grad():   # offset ~ +1 on the last layer only (its flag in layer_features), 0 elsewhere
        net.budget[0].weight.zero_()
        net.budget[0].bias.zero_()
        net.budget[0].weight[0, 8 + 3] = 5.0
        net.budget[-1].weight[0, 0] = 1.0
    ours = counts(prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=net))
    magnitude = counts(prune(copy.deepcopy(trained), 0.9, "magnitude"))
    assert sum(ours.values()) == sum(magnitude.values())
    assert ours["layers.4.weight"] < magnitude["layers.4.weight"]


def test_hypernetwork_training_keeps_the_best_checkpoint_then_gates_its_change(trained, task):
    net = MaskHypernetwork(token_size=16, hidden=8)
    rows = hypernet.train(net, [(copy.deepcopy(trained), task)], steps=4, lr=0.05, batch_size=32, log_every=2,
                          val_zoo=[(trained, task)], val_every=2, log=lambda *_: None)
    checks = {r["step"]: r["val_acc_per_s"] for r in rows if "val_acc_per_s" in r}
    assert set(checks) == {0, 2, 4} and all(len(v) == len(hypernet.VAL_SPARSITIES) for v in checks.values())
    selection, gate = rows[-2], rows[-1]
    chosen = selection["selected_step"]
    assert selection["active"] == [a > b for a, b in zip(checks[chosen], checks[0])]   # one run: where it gained
    assert gate["val_acc_magnitude"][0] == pytest.approx(checks[0], abs=1e-5)   # the log rounds to 5 digits
    assert gate["val_acc_by_shrink"]["1.0"][0] == pytest.approx(checks[chosen], abs=1e-5)
    assert set(gate["val_acc_by_shrink"]) == {"1.0", *map(str, hypernet.SHRINKS)}
    assert net.active.tolist() == gate["active"] and net.shrink.tolist() == gate["shrink"]
    expected = [gate["val_acc_by_shrink"][str(alpha)][0][j] if on else checks[0][j]
                for j, (on, alpha) in enumerate(zip(gate["active"], gate["shrink"]))]
    assert hypernet.val_score(net, [(trained, task)]) == pytest.approx(expected, abs=1e-5)


@pytest.mark.filterwarnings("ignore:pruning by hypernet")   # a random hypernetwork may empty a layer
def test_inactive_sparsities_fall_back_to_magnitude(trained):
    net = MaskHypernetwork(token_size=16, hidden=8)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
        net.active.copy_(torch.tensor([True, True, False, True, True, True]))   # off at s = 0.8
    assert [net.applies_at(s) for s in (0.3, 0.5, 0.6, 0.75, 0.8, 0.85, 0.9, 0.97, 0.98, 0.99)] == \
        [False, True, True, False, False, False, True, True, True, False]
    magnitude = prune(copy.deepcopy(trained), 0.8, "magnitude")
    off = prune(copy.deepcopy(trained), 0.8, "hypernet", hypernet=net)
    on = prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=net)
    assert all(torch.equal(off[k], magnitude[k]) for k in off)
    assert not all(torch.equal(on[k], prune(copy.deepcopy(trained), 0.9, "magnitude")[k]) for k in on)


def test_shipped_hypernetwork_prunes_an_unseen_width(task):
    if not hypernet.DEFAULT_FILE.exists():
        pytest.skip("no shipped hypernetwork weights")
    model = BiasFreeMLP(task.input_shape, 10, (40, 20))
    masks = prune(model, 0.9, "hypernet")
    assert sum(counts(masks).values()) == round(0.9 * (64 * 40 + 40 * 20 + 20 * 10))


def test_bias_free_mlp_is_registered_inside_the_block_only():
    with registered():
        model = models.get("mlp_nobias", in_shape=(1, 28, 28), num_classes=10)
    assert isinstance(model, BiasFreeMLP)
    assert [tuple(p.shape) for p in model.parameters()] == [(40, 784), (20, 40), (10, 20)]
    assert "mlp_nobias" not in models.names()


def test_path_scores_are_synflow_scores_on_a_bias_free_mlp(trained):
    weights = [layer.weight.detach().double() for layer in (trained.layers[0], trained.layers[2], trained.layers[4])]
    leaves = [w.abs().requires_grad_() for w in weights]
    x = torch.ones(weights[0].shape[1], dtype=torch.float64)
    for w in leaves:
        x = w @ x
    R = x.sum()   # 1ᵀ|W3||W2||W1|1; SynFlow's score |w dR/dw| sums to R over every layer
    R.backward()
    R = float(R.detach())
    for ours, w in zip(scores.path_scores(weights), leaves):
        assert ours.shape == w.shape and float(ours.sum()) == pytest.approx(1.0)
        torch.testing.assert_close(ours, (w * w.grad).detach() / R)


def test_path_scores_chain_a_conv_into_a_linear_and_lamp_keeps_each_layers_order(lenet):
    layers = [m for m in lenet.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    weights = [m.weight.detach() for m in layers]
    for ours, w in zip(scores.path_scores(weights), weights):
        assert ours.shape == w.shape and float(ours.sum()) == pytest.approx(1.0) and bool((ours > 0).all())
    # the Linear after the flatten: inputs of a conv channel with a stronger path in carry larger scores
    conv, fc = layers[1].weight.detach().abs(), layers[2].weight.detach().abs()
    scale = torch.ones(conv.shape[0])
    scale[0] = 100.0
    boosted = scores.path_scores([*weights[:1], conv * scale[:, None, None, None], *weights[2:]])[2]
    plain = scores.path_scores(weights)[2]
    per_channel = fc.shape[1] // conv.shape[0]
    ratio = (boosted / plain)[:, :per_channel].mean() / (boosted / plain)[:, per_channel:].mean()
    assert ratio > 10
    for score, w in zip(scores.lamp_scores(weights), weights):
        order = w.abs().flatten().argsort()
        assert bool((score.flatten()[order].diff() >= 0).all()) and float(score.max()) == pytest.approx(1.0)


def test_lamp_allocation_ignores_layer_scales_and_keeps_every_layer(lenet):
    # LAMP ranks within a layer by |w| and across layers by relative size: scaling one layer by 1e-3 empties it
    # under global magnitude pruning, and moves no LAMP mask
    scaled = copy.deepcopy(lenet)
    with torch.no_grad():
        scaled.classifier[2].weight.mul_(1e-3)
    lamp = prune(copy.deepcopy(lenet), 0.95, "lamp", apply=False)
    assert all(torch.equal(lamp[k], m) for k, m in prune(scaled, 0.95, "lamp", apply=False).items())
    with pytest.warns(UserWarning, match="kept no weight of .*classifier.2.weight"):
        assert not prune(scaled, 0.95, "magnitude", apply=False)["classifier.2.weight"].any()
    for name, mask in lamp.items():
        w = dict(lenet.named_parameters())[name].detach().abs()
        assert mask.flatten()[w.flatten().argmax()] and w[mask].min() >= w[~mask].max(), name
    with pytest.warns(UserWarning, match=r"kept no weight of \['features.3.weight'"):   # the unscaled one too
        magnitude = prune(copy.deepcopy(lenet), 0.95, "magnitude", apply=False)
    assert {k: int(m.sum()) for k, m in lamp.items()} != {k: int(m.sum()) for k, m in magnitude.items()}


def test_offset_search_never_does_worse_than_magnitude_on_its_batch(trained, task):
    p = hypernet.prepare(trained, 16)
    x, y = task.eval_tensors("train", 256)
    sizes = torch.tensor([shape.numel() for shape in p.shapes])
    layer_of = torch.repeat_interleave(torch.arange(len(sizes)), sizes)

    def loss(b):
        mask = torch.ones(len(p.flat))
        mask[torch.topk(p.flat.abs().log() + b[layer_of], round(0.95 * len(p.flat)), largest=False).indices] = 0
        return float(nn.functional.cross_entropy(hypernet.masked_forward(trained, p, mask, x), y))

    target = allocation.search_offsets(trained, p, x, y, 0.95)
    b = target.offsets
    assert b.shape == (3,) and abs(float(b.sum())) < 1e-5 and loss(b) <= loss(torch.zeros(3))
    assert target.curves.shape == (3, len(allocation.SEARCH_GRID)) and float(target.curves.min()) >= -0.011
    # the curves: the loss of one layer's offset moved to a grid value, relative to the optimum's
    j = 2
    moved = b.clone()
    moved[0] = target.grid[j]
    assert float(target.curves[0, j]) == pytest.approx(loss(moved) / loss(b) - 1, abs=1e-5)
    assert float(target.loss(b)) == pytest.approx(0.0, abs=0.011)
    assert torch.equal(allocation.search_offsets(trained, p, x, y, 0.95, min_gain=1.0).offsets, torch.zeros(3))


def test_hypernetwork_fits_searched_offsets(trained, task):
    net = MaskHypernetwork(token_size=16, hidden=8, max_shift=0.0, max_offset=1.5)
    target = torch.tensor([-0.5, 0.0, 0.5])
    grid = torch.tensor(allocation.SEARCH_GRID)
    curves = (grid[None, :] - target[:, None]).abs()   # a loss landscape with its minimum at the target
    rows = hypernet.train(net, [(copy.deepcopy(trained), task)], steps=150, lr=1e-2, log_every=50,
                          targets=[{0.9: allocation.Target(target, grid, curves)}], log=lambda *_: None)
    assert rows[-1]["loss"] < 0.05 < rows[0]["loss"]
    p = hypernet.prepare(trained, 16)
    torch.testing.assert_close(net.layer_offsets(p, 0.9), target, atol=0.1, rtol=0)
    ours = counts(prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=net))
    magnitude = counts(prune(copy.deepcopy(trained), 0.9, "magnitude"))
    assert ours["layers.0.weight"] > magnitude["layers.0.weight"] and \
        ours["layers.4.weight"] < magnitude["layers.4.weight"]


def test_shrink_scales_the_learned_change_and_is_chosen_on_validation(trained, task):
    net = MaskHypernetwork(token_size=16, hidden=8, max_offset=1.0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    p = hypernet.prepare(trained, 16)
    full = net.flat_scores(p, 0.9) - p.flat.abs().log()
    net.shrink.fill_(0.25)
    torch.testing.assert_close(net.flat_scores(p, 0.9) - p.flat.abs().log(), 0.25 * full)
    net.shrink.copy_(torch.tensor([1.0, 1.0, 1.0, 0.5, 0.25, 1.0]))
    assert [net.strength(s) for s in (0.9, 0.92, 0.95, 0.99)] == [0.5, 0.25, 0.25, 0.0]
    rows = hypernet.train(MaskHypernetwork(token_size=16, hidden=8), [(copy.deepcopy(trained), task)], steps=4,
                          lr=0.05, batch_size=32, log_every=2, val_zoo=[(trained, task)], val_every=2,
                          shrinks=(0.5,), log=lambda *_: None)
    last = rows[-1]
    assert set(last["val_gain_by_shrink"]) == set(last["val_acc_by_shrink"]) == {"1.0", "0.5"}
    floor, examples = last["val_acc_magnitude"], last["val_examples"]
    assert examples == [len(task.eval_tensors("val", task.eval_size)[1])]
    for j, (on, alpha) in enumerate(zip(last["active"], last["shrink"])):   # the margin rule, on the row's data
        errors = [hypernet.accuracy_error(f[j], n) for f, n in zip(floor, examples)]
        gains = {a: [r[j] - f[j] for r, f in zip(accs, floor)] for a, accs in last["val_acc_by_shrink"].items()}
        passing = {float(a): sum(g) / len(g) for a, g in gains.items() if hypernet.margin_gate(g, errors)}
        assert on == bool(passing) and (not on or passing[alpha] == max(passing.values()))
        assert all(round(sum(g) / len(g), 5) == last["val_gain_by_shrink"][a][j] for a, g in gains.items())


def test_benchmark_validation_diagnosis_methods_and_summary(trained, task, tmp_path):
    from weightcast.results import device_name, read_results, write_results

    net = MaskHypernetwork(token_size=16, hidden=8)   # untrained: magnitude pruning, gated or not
    n = sum(m.numel() for m in (trained.layers[0].weight, trained.layers[2].weight, trained.layers[4].weight))
    masks = {}
    for method in bench.VALIDATION_FREE + bench.VALIDATION_DATA:
        model = copy.deepcopy(trained)
        masks[method], weights = bench.validation_pruner(method, model, task, net, net, 96)(0.9)
        assert sum(counts(masks[method]).values()) == round(0.9 * n), method
        assert (weights is None) == (method != "woodfisher"), method
    for method in ("hypernet", "hypernet-ungated"):
        assert all(torch.equal(masks[method][k], m) for k, m in masks["magnitude"].items())
    assert all(torch.equal(masks["woodfisher-mask"][k], m) for k, m in masks["woodfisher"].items())
    common = dict(benchmark="prune-validation", metric="acc", unit="fraction", x_name="sparsity")
    rows = [dict(common, name=m, x_value=s, value=v, config={"run": "r", **bench.settings(m, s)})
            for s in bench.VALIDATION_SPARSITIES
            for m, v in (("magnitude", 0.5), ("lamp", 0.49), ("hypernet", 0.5), ("hypernet-ungated", 0.52))]
    rows += [dict(common, name=m, x_value=0.9, value=0.6, config={"run": "r", **bench.settings(m)})
             for m in bench.VALIDATION_DATA]
    write_results(tmp_path / "prune_validation.csv", rows, device="cpu")
    read = read_results(tmp_path / "prune_validation.csv")   # as main reads them
    text = bench.validation_summary(read, bench.stale_methods(read))
    assert f"pruned on the {device_name('cpu')} (the runs are local zoo builds" in text
    assert "| r | 50.00 | -1.00 | +0.00 | +2.00 | +10.00 | +10.00 | +10.00 | +10.00 |" in text
    assert "| mean (runs below magnitude) | | -1.00 (1) | +0.00 (0) | +2.00 (0) |" in text
    assert "Stale" not in text


def test_benchmark_validation_summary_names_rows_made_another_way_and_an_empty_file(tmp_path):
    from weightcast.results import read_results, write_results

    common = dict(benchmark="prune-validation", metric="acc", unit="fraction", x_name="sparsity", value=0.5)
    rows = [dict(common, name=m, x_value=s, config={"run": "r", **bench.settings(m, s)})
            for s in bench.VALIDATION_SPARSITIES for m in bench.VALIDATION_FREE]
    rows += [dict(common, name=m, x_value=0.9, config={"run": "r", **bench.settings(m)})
             for m in bench.VALIDATION_DATA]
    for r in rows:   # another hypernetwork's rows, and WoodFisher's on another calibration size
        if r["name"].startswith("hypernet"):
            r["config"]["strength"] = 0.123
        if r["name"] == "woodfisher":
            r["config"]["calibration"] = 1024
    write_results(tmp_path / "prune_validation.csv", rows, device="cpu")
    read = read_results(tmp_path / "prune_validation.csv")
    assert bench.stale_methods(read) == ["hypernet", "hypernet-ungated", "woodfisher"]
    assert "**Stale:** the rows of hypernet, hypernet-ungated, woodfisher were made with other settings" in \
        bench.validation_summary(read, bench.stale_methods(read))
    write_results(tmp_path / "empty.csv", [], device="cpu")
    assert "has no rows" in bench.validation_summary(read_results(tmp_path / "empty.csv"), [])


def test_benchmark_cache_reuses_only_rows_made_the_same_way(tmp_path):
    expected = {"run": "r", "calibration": 1024}
    rows = [dict(name=m, x_value=0.9, config={**expected, **bench.settings(m)}) for m in ("magnitude", "chita")]
    bench.save_cache(tmp_path / "c.json", rows)
    assert bench.load_cache(tmp_path / "c.json", expected) == rows
    assert bench.load_cache(tmp_path / "missing.json", expected) == [] == bench.load_cache(None, expected)
    assert bench.load_cache(tmp_path / "c.json", {**expected, "run": "other"}) == []   # another model
    fisher_rows = [dict(name="woodfisher", x_value=0.9, config={**expected, **bench.settings("woodfisher")})]
    assert bench.settings("woodfisher")["calibration"] == bench.fisher_setting("woodfisher", "calibration", 1024) \
        == bench.fisher_setting("woodfisher-mask", "calibration") == bench.FISHER_SETTINGS["woodfisher"]["calibration"]
    assert bench.fisher_setting("obs", "calibration", 1024) == 1024
    assert bench.fisher_setting("chita", "block_size") is None
    bench.save_cache(tmp_path / "f.json", fisher_rows)   # its own calibration size, not --calibration, decides
    assert bench.load_cache(tmp_path / "f.json", expected) == fisher_rows
    bench.save_cache(tmp_path / "f.json", [dict(name="woodfisher", x_value=0.9, config={**expected, "stages": 8})])
    assert bench.load_cache(tmp_path / "f.json", expected) == []   # made on --calibration examples, full Fisher


def test_benchmark_keeps_the_hypernetworks_rows_where_its_decision_is_unchanged(tmp_path, monkeypatch):
    net = MaskHypernetwork(token_size=16, hidden=8)
    net.active.copy_(torch.tensor([True, True, False, False, False, False]))
    monkeypatch.setattr(bench, "shipped_hypernet", lambda: net)
    with pytest.raises(ValueError, match="depend on the sparsity"):
        bench.settings("hypernet")
    assert bench.settings("hypernet", 0.5, None) == {"hypernet_prior": None, **net.decision(0.5, None)}
    assert bench.settings("hypernet-ungated", 0.9, None) == {"hypernet_prior": None,
                                                            **net.decision(0.5, None)}   # full strength anywhere
    expected = {"run": "r"}
    rows = [dict(name=m, x_value=s, metric="acc", config={**expected, "stage": "one-shot", **bench.settings(m, s)})
            for m in ("hypernet", "hypernet-vs-magnitude", "magnitude") for s in (0.5, 0.7, 0.9)]
    bench.save_cache(tmp_path / "c.json", rows)
    assert bench.load_cache(tmp_path / "c.json", expected) == rows
    regated = copy.deepcopy(net)
    regated.active[0] = False   # another gate at s = 0.5: only the hypernetwork's rows there are made again
    monkeypatch.setattr(bench, "shipped_hypernet", lambda: regated)
    kept = bench.load_cache(tmp_path / "c.json", expected)
    assert kept == [r for r in rows if r["x_value"] != 0.5 or r["name"] == "magnitude"]
    assert bench.split_done(kept, (0.5, 0.7, 0.9), {("hypernet", "acc", "one-shot"), ("magnitude", "acc",
                                                                                   "one-shot")}) == (
        [r for r in kept if r["x_value"] != 0.5], [0.5])
    assert bench.load_cache(tmp_path / "c.json", expected, prior="digits") == [   # the model's prior changed
        r for r in rows if r["name"] == "magnitude"]
    assert bench.stale_methods(rows) == ["hypernet", "hypernet-vs-magnitude"]
    assert bench.stale_methods(kept) == []
    gone = [dict(r, config={**r["config"], "hypernet_prior": "mnist"}) for r in kept]   # a prior it does not have
    assert bench.stale_methods(gone) == ["hypernet", "hypernet-vs-magnitude"]


def test_benchmark_tables_say_what_each_data_based_method_read():
    rows = [dict(name=m, metric="acc", config={"calibration": n, **({"block_size": b} if b else {})})
            for m, n, b in (("obs", 1024, None), ("obs", 1024, None), ("chita", 1024, None),
                            ("woodfisher", 8192, 2048), ("magnitude", 1024, None))]
    assert bench.calibration_line(rows) == ("Calibration: obs, chita: the first 1,024 training examples; woodfisher: "
                                            "the first 8,192 training examples, Fisher blocks of 2,048 weights (all "
                                            "of them where the task has fewer).")


def test_benchmark_seed_summary_gives_each_methods_gain_over_magnitude():
    rows = [dict(name="magnitude", value=0.90, config={"network": "mlp"})]
    rows += [dict(name="obs", value=v, config={"network": "mlp"}) for v in (0.91, 0.93, 0.92)]
    one = bench.seed_summary(rows)
    assert "| mlp | obs | +2.00 | +1.00 | +3.00 | 3 |" in one
    assert "MLP 784-40-20-10 (mlp) at" in one and "| both |" not in one   # one network: no pooled rows
    rows += [dict(name="magnitude", value=0.80, config={"network": "mlp-seed101"}),
             dict(name="obs", value=0.85, config={"network": "mlp-seed101"})]
    two = bench.seed_summary(rows)
    assert "MLP 784-40-20-10 (mlp, mlp-seed101) at" in two and "| both | obs | +2.50 | +1.00 | +5.00 | 4 |" in two


def test_benchmark_warns_when_the_results_file_was_made_from_another_model(tmp_path):
    """A results file made from another model of the same run id (zoo builds depend on the CPU): its figures all
    differ."""
    from common import write_results

    path = tmp_path / "prune_mlp.csv"
    assert bench.other_model_warning(path, "run-a", 0.9462) is None   # nothing committed to compare with
    rows = [dict(benchmark="prune-mlp", name=name, metric="acc", unit="fraction", x_name="sparsity", x_value=s,
                 value=v, config={"run": run, "stage": "dense"}) for name, s, v, run in
            (("dense", 0.0, 0.9462, "run-a"), ("magnitude", 0.9, 0.9497, "run-a"), ("dense", 0.0, 0.95, "run-b"))]
    write_results(path, rows, device="cpu")
    assert bench.other_model_warning(path, "run-a", 0.9462) is None
    assert bench.other_model_warning(path, "run-c", 0.5) is None   # another run id: nothing to compare
    warning = bench.other_model_warning(path, "run-a", 0.9497)
    assert "0.9497 here but 0.9462" in warning and "another model" in warning


def test_benchmark_summary_counts_the_hypernetwork_against_magnitude_at_every_sparsity():
    def rows(hypernet_gain):
        out = []
        for s in bench.SPARSITIES:
            for method, value in (("magnitude", 0.5), ("woodfisher", 0.6), ("hypernet", 0.5 + hypernet_gain(s))):
                out.append(dict(name=method, metric="acc", x_value=s, value=value, config={"stage": "one-shot"}))
        return out

    text = bench.summary({"mlp": rows(lambda s: 0.01 * (s == 0.9)), "lenet5": rows(lambda s: -0.0015 * (s == 0.5))})
    assert "| mlp | +0.00 | +0.00 | +0.00 | +1.00 | +0.00 | +0.00 | -9.00 |" in text
    assert "At or above magnitude at 11 of 12 points (above at 1); largest shortfall -0.15, largest gain +1.00" in text
    text = bench.summary({"mlp": rows(lambda s: 0.01)})
    assert "At or above magnitude at 6 of 6 points (above at 6); smallest gain +1.00, largest gain +1.00" in text
