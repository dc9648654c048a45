"""Pruning the models users bring: dead inputs, tied weights, padding modes, attention, bad calibration data."""
import copy

import pytest
import torch
from torch import nn

from weightcast.prune import load_pruned, make_permanent, prune, sparsity_of
from weightcast.prune.layers import layer_inputs, prunable_layers

from helpers import TiedHead


def relu_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()


def test_obs_at_sparsity_zero_leaves_the_model_unchanged_even_with_dead_inputs():
    """One calibration sample leaves most hidden units dead (always zero); their weights cost nothing to remove,
    but where the mask keeps them they keep their values."""
    model, x = relu_mlp(), torch.randn(256, 8)
    before = model(x)
    masks = prune(model, 0.0, "obs", data=torch.randn(1, 8))
    assert all(bool(m.all()) for m in masks.values())
    torch.testing.assert_close(model(x), before)


def test_obs_weights_agree_with_its_masks_when_dead_inputs_are_kept():
    model = relu_mlp()
    masks = prune(model, 0.05, "obs", data=torch.randn(1, 8))
    for name, layer in prunable_layers(model).items():
        removed = ~masks[f"{name}.weight"]
        assert bool((layer.weight[removed] == 0).all())
        assert int((layer.weight == 0).sum()) == int(removed.sum()), name   # no kept weight was zeroed


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize("method", ["random", "magnitude", "obs", "woodfisher"])
def test_tied_weights_are_refused_before_the_model_is_touched(method):
    model = Tied()
    state = copy.deepcopy(model.state_dict())
    x = torch.randn(32, 8)
    with pytest.raises(ValueError, match=r"layer 'a'.s weight is shared by \['a.weight', 'b.weight'\]"):
        prune(model, 0.5, method, data=(x, torch.randint(0, 8, (32,))))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())


def test_a_weight_tied_to_a_module_that_is_not_pruned_is_refused():
    """An embedding and a language-model head sharing one tensor: pruning the head would zero the embedding."""
    model = TiedHead()
    embedding = model.tok.weight.detach().clone()
    for method in ("magnitude", "obs"):
        with pytest.raises(ValueError, match=r"layer 'head'.s weight is shared by \['tok.weight', 'head.weight'\]"):
            prune(model, 0.5, method, data=torch.randint(0, 20, (64, 3)))
    assert torch.equal(model.tok.weight, embedding)


def test_a_layer_used_twice_is_one_layer_with_one_mask():
    layer = nn.Linear(8, 8)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    masks = prune(model, 0.5, "magnitude")
    assert list(masks) == ["0.weight"] and int((~masks["0.weight"]).sum()) == 32
    make_permanent(model)
    assert int((layer.weight == 0).sum()) == 32


@pytest.mark.parametrize("mode", ["reflect", "circular", "replicate"])
@pytest.mark.parametrize("conv", [nn.Conv1d, nn.Conv2d])
def test_obs_reads_a_convs_inputs_with_its_own_padding_mode(conv, mode):
    """The patches OBS sees reproduce the layer's output whatever its padding_mode."""
    torch.manual_seed(0)
    layer = conv(3, 5, 3, padding=1, padding_mode=mode, bias=False).eval()
    x = torch.randn(4, 3, 9) if conv is nn.Conv1d else torch.randn(4, 3, 7, 6)
    patches = layer_inputs(layer, x)[""]
    out = layer(x).double()
    expected = out.movedim(1, -1).reshape(-1, 5)
    torch.testing.assert_close(patches @ layer.weight.double().flatten(1).T, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer,why", [(nn.Conv1d(3, 4, 3, padding="same"), "padding='same'"),
                                       (nn.Conv2d(4, 4, 3, groups=2), "groups=2")])
def test_obs_refuses_conv_layers_it_cannot_read_naming_them(layer, why):
    model = nn.Sequential(layer)
    x = torch.randn(2, layer.in_channels, 8) if isinstance(layer, nn.Conv1d) else torch.randn(2, 4, 8, 8)
    with pytest.raises(ValueError, match=rf"layer '0'.*{why}.*data-free method"):
        prune(model, 0.5, "obs", data=x)


def test_attention_projections_are_not_pruned_and_the_rest_fine_tunes():
    """nn.MultiheadAttention reads out_proj's weight itself, past torch.nn.utils.prune's hook: it is left out,
    the feed-forward layers are pruned, and training through the masked model works."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True))
    assert set(prunable_layers(model)) == {"0.linear1", "0.linear2"}
    x = torch.randn(16, 5, 8)
    masks = prune(model, 0.5, "obs", data=x)
    assert sum(int((~m).sum()) for m in masks.values()) == 128   # half of linear1's and linear2's 256 weights
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    assert sum(int((layer.weight == 0).sum()) for layer in (model[0].linear1, model[0].linear2)) >= 128


def test_a_checkpoint_with_a_mask_on_an_attention_projection_still_loads_and_folds():
    """Masks that an earlier version put on nn.MultiheadAttention's out_proj (now left out of pruning)."""
    torch.manual_seed(0)
    old = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True))
    torch.nn.utils.prune.custom_from_mask(old[0].self_attn.out_proj, "weight", torch.rand(8, 8) > 0.5)
    fresh = load_pruned(nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)), old.state_dict())
    assert torch.equal(fresh[0].self_attn.out_proj.weight_mask, old[0].self_attn.out_proj.weight_mask)
    make_permanent(fresh)
    assert not any(k.endswith(("weight_mask", "weight_orig")) for k in fresh.state_dict())
    with pytest.raises(KeyError, match="a mask for 'weight' of 'nothing'"):
        load_pruned(nn.Sequential(nn.Linear(2, 2)), {"nothing.weight_mask": torch.ones(2, 2)})


def test_a_layer_the_forward_never_calls_is_named_for_obs():
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.spare = nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match=r"\['spare'\] were not called on the calibration batch"):
        prune(Unused(), 0.5, "obs", data=torch.randn(8, 4))


def test_labels_that_do_not_match_the_inputs_are_refused():
    with pytest.raises(ValueError, match="has 32 inputs but 10 labels"):
        prune(relu_mlp(), 0.5, "woodfisher", data=(torch.randn(32, 8), torch.randint(0, 4, (10,))))


@pytest.mark.parametrize("method", ["obs", "woodfisher", "chita"])
def test_a_model_that_converts_its_inputs_prunes_on_data_of_another_dtype(method):
    """The calibration data only has to run through the model: its layers see what its forward makes of it."""
    class Casting(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = relu_mlp()

        def forward(self, x):
            return self.net(x.float())

    model = Casting()
    prune(model, 0.5, method, data=(torch.randn(16, 8, dtype=torch.float64), torch.randint(0, 4, (16,))))
    assert abs(sparsity_of(model) - 0.5) < 0.05


@pytest.mark.parametrize("options,message", [({"stages": 2.5}, "stages must be a positive integer, got 2.5"),
                                             ({"stages": 0}, "stages must be a positive integer, got 0"),
                                             ({"block_size": 0}, "block_size must be a positive integer or None")])
@pytest.mark.parametrize("method", ["woodfisher", "chita"])
def test_bad_stage_options_are_refused_clearly(options, message, method):
    data = (torch.randn(16, 8), torch.randint(0, 4, (16,)))
    model = relu_mlp()
    with pytest.raises(ValueError, match=message):
        prune(model, 0.5, method, data=data, **options)
    assert not hasattr(model[0], "weight_mask")


def test_a_checkpoint_of_another_shape_is_refused_before_the_model_is_touched():
    """It raised torch's "default_mask shape ... must match" with the first layer's mask already applied."""
    small = nn.Sequential(nn.Linear(8, 20), nn.ReLU(), nn.Linear(20, 4))
    prune(small, 0.8, "magnitude")
    other = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 4))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(RuntimeError, match=r"0.weight_mask: \(20, 8\) in the state_dict, \(10, 8\) in the model"):
        load_pruned(other, small.state_dict())
    assert not torch.nn.utils.prune.is_pruned(other)
    assert other.state_dict().keys() == before.keys() and all(torch.equal(v, before[k])
                                                               for k, v in other.state_dict().items())


def test_masks_on_any_tensor_load_and_fold():
    """A bias pruned with torch: make_permanent left bias_orig/bias_mask, load_pruned failed on them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    prune(model, 0.5, "magnitude")
    torch.nn.utils.prune.l1_unstructured(model[0], "bias", amount=2)
    x = torch.randn(4, 6)
    fresh = load_pruned(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), model.state_dict())
    torch.testing.assert_close(fresh(x), model(x))
    assert int((fresh[0].bias == 0).sum()) == 2
    make_permanent(fresh)
    assert not torch.nn.utils.prune.is_pruned(fresh)
    assert not any(k.endswith(("_orig", "_mask")) for k in fresh.state_dict())
    torch.testing.assert_close(fresh(x), model(x))


def test_load_pruned_takes_what_load_state_dict_takes_and_undoes_its_masks_when_loading_fails():
    """A pre-check that copied load_state_dict's strict check by hand refused what modules adapt while loading
    (BatchNorm without num_batches_tracked, as older torch wrote it; the project's low-rank layers resizing
    their factors); the masked weights were stale (fresh weights times the mask) until the first forward."""
    def make():
        return nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))

    torch.manual_seed(0)
    model = make()
    prune(model, 0.5, "magnitude")
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    fresh = load_pruned(make(), state)
    assert torch.equal(fresh[0].weight, state["0.weight_orig"] * state["0.weight_mask"])
    x = torch.randn(4, 6)
    torch.testing.assert_close(fresh.eval()(x), model.eval()(x))
    bad = dict(state, **{"2.bias": torch.zeros(4)})   # masks fit, another tensor does not
    target = make()
    with pytest.raises(RuntimeError, match="size mismatch for 2.bias"):
        load_pruned(target, bad)
    assert not torch.nn.utils.prune.is_pruned(target) and isinstance(target[0].weight, nn.Parameter)
    assert "0.weight" in target.state_dict() and "0.weight_mask" not in target.state_dict()
