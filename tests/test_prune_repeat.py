"""prune() on a model already pruned (iterative pruning), and the options prune() refuses."""
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from weightcast.prune import MaskHypernetwork, apply_masks, prune, sparsity_of
from weightcast.prune.api import OPTIONS, masks_and_weights
from weightcast.prune.fisher import per_sample_grads, prune_in_stages
from weightcast.prune.obs import obs_prune

METHODS = ["random", "magnitude", "lamp", "hypernet", "obs", "woodfisher", "chita"]
FAST = {"hypernet": {"hypernet": MaskHypernetwork()}, "woodfisher": {"stages": 2}, "chita": {"stages": 2}}


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(1)
    return torch.randn(128, 20), torch.randint(0, 4, (128,))


def applied(model):
    return {f"{i}.weight": model[i].weight_mask.bool() for i in (0, 2)}


def removed(masks):
    return sum(int((~m).sum()) for m in masks.values())


def randomly_pruned(sparsity, scope="global"):
    model = mlp()
    first = prune(model, sparsity, "random", scope=scope, generator=torch.Generator().manual_seed(1))
    return model, first


@pytest.mark.parametrize("method", METHODS)
def test_pruning_a_pruned_model_reaches_the_total_sparsity(method, data):
    model, first = randomly_pruned(0.5)
    masks = prune(model, 0.8, method, data=data, **FAST.get(method, {}))
    n = sum(m.numel() for m in masks.values())
    assert removed(masks) == round(0.8 * n)                                   # the total, not 0.5 + 0.8 * 0.5
    assert all(not bool((masks[k] & ~first[k]).any()) for k in masks)         # pruned weights stay pruned
    assert all(torch.equal(masks[k], m) for k, m in applied(model).items())  # the masks returned are the model's
    assert sparsity_of(model) >= round(0.8 * n) / n
    assert torch.isfinite(model(data[0])).all()


@pytest.mark.parametrize("method", ["random", "magnitude", "lamp", "hypernet", "obs"])
def test_pruning_a_pruned_model_per_layer(method, data):
    model, first = randomly_pruned(0.3, scope="layer")
    masks = prune(model, 0.6, method, data=data, scope="layer", **FAST.get(method, {}))
    for name, mask in masks.items():
        assert int((~mask).sum()) == round(0.6 * mask.numel()), name
        assert not bool((mask & ~first[name]).any()), name


@pytest.mark.parametrize("method", METHODS)
def test_a_sparsity_below_the_models_is_refused(method, data):
    model, _ = randomly_pruned(0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"already has 192 of its 384 weights pruned.*"
                                         r"a sparsity of at least 0.5 \(192 of 384\)"):
        prune(model, 0.4, method, data=data, **FAST.get(method, {}))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_repeating_a_sparsity_keeps_the_masks(data):
    model, first = randomly_pruned(0.5)
    assert all(torch.equal(first[k], m) for k, m in prune(model, 0.5, "magnitude").items())


def test_magnitude_ranks_the_remaining_weights_only():
    model = mlp()
    w = {f"{i}.weight": model[i].weight.detach().clone() for i in (0, 2)}
    before = {"0.weight": w["0.weight"].abs() < w["0.weight"].abs().flatten().kthvalue(250).values,
              "2.weight": torch.ones_like(w["2.weight"], dtype=torch.bool)}
    torch_prune.custom_from_mask(model[0], "weight", before["0.weight"])   # its 71 largest weights pruned first
    masks = prune(model, 0.75, "magnitude")
    assert removed(masks) == 288 and all(not bool((masks[k] & ~before[k]).any()) for k in masks)
    kept = torch.cat([w[k][masks[k]].abs() for k in w])
    newly_removed = torch.cat([w[k][before[k] & ~masks[k]].abs() for k in w])
    assert float(kept.min()) >= float(newly_removed.max())


def test_per_sample_grads_of_a_masked_model_are_the_masked_models():
    model, _ = randomly_pruned(0.5)
    x, y = torch.randn(3, 20), torch.tensor([0, 3, 1])
    G = per_sample_grads(model, x, y)
    for i in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        torch.testing.assert_close(G[i], torch.cat([model[j].weight_orig.grad.flatten() for j in (0, 2)]))


def test_stages_on_a_masked_model_start_from_its_sparsity(data):
    model, first = randomly_pruned(0.5)
    result = prune_in_stages(model, 0.8, *data, "woodfisher", stages=2)
    assert removed({k: m for k, (m, _) in result.items()}) == round(0.8 * 384)
    assert all(bool((w[~m] == 0).all()) and not bool((m & ~first[k]).any()) for k, (m, w) in result.items())


def test_obs_on_a_masked_model_compensates_with_the_pruned_weights_at_zero(data):
    model, first = randomly_pruned(0.5)
    result = obs_prune(model, 0.7, data[0])
    for name, (mask, weight) in result.items():
        assert not bool((mask & ~first[name]).any()) and bool((weight[~mask] == 0).all()), name
    assert removed({k: m for k, (m, _) in result.items()}) == round(0.7 * 384)


# -- options that do not apply


@pytest.mark.parametrize("method,options", [("magnitude", {"stages": 4}), ("magnitude", {"allocaton": "uniform"}),
                                            ("obs", {"allocaton": "uniform"}), ("random", {"hypernet": None}),
                                            ("lamp", {"generator": torch.Generator()}),
                                            ("woodfisher", {"max_iter": 3}), ("chita", {"allocation": "uniform"})])
def test_options_the_method_does_not_take_are_refused(method, options, data):
    model = mlp()
    own = OPTIONS[method]
    says = rf"its own options are \[{', '.join(repr(o) for o in own)}\]" if own else "it has no options of its own"
    with pytest.raises(TypeError, match=rf"method '{method}' does not take \['{next(iter(options))}'\]: {says}, "
                                        "besides prune's scope, apply and update_weights"):
        prune(model, 0.5, method, data=data, **options)
    assert not hasattr(model[0], "weight_mask")


@pytest.mark.parametrize("method", ["woodfisher", "chita"])
def test_global_only_methods_refuse_layer_scope(method, data):
    with pytest.raises(ValueError, match="has no scope='layer'"):
        prune(mlp(), 0.5, method, data=data, scope="layer", stages=1)


def test_obs_layer_scope_is_uniform_allocation(data):
    a = prune(mlp(), 0.5, "obs", data=data, scope="layer")
    b = prune(mlp(), 0.5, "obs", data=data, allocation="uniform")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(int((~m).sum()) == m.numel() // 2 for m in a.values())
    with pytest.raises(ValueError, match="scope='layer' is obs's allocation='uniform'"):
        prune(mlp(), 0.5, "obs", data=data, scope="layer", allocation="global")


# -- apply=False with compensated weights


@pytest.mark.parametrize("method", ["obs", "woodfisher", "chita"])
def test_apply_false_refuses_to_lose_the_compensated_weights(method, data):
    model = mlp()
    with pytest.raises(ValueError, match="apply=False would lose.*update_weights=False"):
        prune(model, 0.6, method, data=data, apply=False, **FAST.get(method, {}))
    assert not hasattr(model[0], "weight_mask")


def test_apply_false_without_update_is_plain_masking(data):
    masked = mlp()
    masks = prune(masked, 0.6, "obs", data=data, apply=False, update_weights=False)
    assert not hasattr(masked[0], "weight_mask")
    apply_masks(masked, masks)
    plain = mlp()
    prune(plain, 0.6, "obs", data=data, update_weights=False)
    torch.testing.assert_close(masked(data[0]), plain(data[0]))
    compensated = mlp()   # the documented way to the (mask, weight) pairs
    apply_masks(compensated, *masks_and_weights(obs_prune(compensated, 0.6, data[0])))
    reference = mlp()
    prune(reference, 0.6, "obs", data=data)
    torch.testing.assert_close(compensated(data[0]), reference(data[0]))
