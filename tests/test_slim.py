"""weightcast.slim: slimmable conversion keeps the function, width switching is exact and repeatable, state_dicts
round-trip per width, the residual generator starts at the pretrained weights, bad widths are refused."""
import copy
import io

import pytest
import torch
from torch import nn

from weightcast.data import get_task
from weightcast.models import get
from weightcast.slim import export, get_width, make_slimmable, recalibrate_bn, set_width
from weightcast.slim.generator import WeightINR, materialize, train_generator
from weightcast.slim.groups import channel_groups, importance
from weightcast.slim.layers import SlimBatchNorm2d, width_tag
from weightcast.slim.train import sandwich_widths, slimmable_finetune

WIDTHS = (0.25, 0.5, 0.75, 1.0)
MODELS = {
    "mlp": (dict(in_shape=(1, 8, 8), widths=(20, 12)), (1, 8, 8)),
    "lenet5": (dict(in_shape=(1, 28, 28)), (1, 28, 28)),
    "lenet5-bn": (dict(in_shape=(1, 28, 28), batch_norm=True), (1, 28, 28)),
    "resnet18": (dict(in_shape=(1, 12, 12), width=0.125), (1, 12, 12)),
}


def _model(key, seed=0):
    torch.manual_seed(seed)
    kwargs, shape = MODELS[key]
    model = get(key.removesuffix("-bn"), **kwargs)
    with torch.no_grad():  # BN statistics and scales that are not the identity, so that permutations show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    return model.eval(), torch.randn(5, *shape)


@pytest.mark.parametrize("key", MODELS)
def test_conversion_keeps_the_function_at_full_width(key):
    model, x = _model(key)
    before = model(x)
    make_slimmable(model, WIDTHS)
    assert get_width(model) == 1.0
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


def test_gpt_mlp_blocks_are_slimmable():
    torch.manual_seed(0)
    gpt = get("gpt", vocab_size=30, block_size=16, n_layer=2, n_embd=32).eval()
    idx = torch.randint(0, 30, (2, 9))
    before = gpt(idx)
    make_slimmable(gpt, WIDTHS)
    torch.testing.assert_close(gpt(idx), before, rtol=1e-5, atol=1e-5)
    set_width(gpt, 0.25)
    assert gpt.blocks[0].mlp[0].active_out == 32 and gpt(idx).shape == before.shape
    assert sum(p.numel() for p in export(gpt, 0.25).parameters()) < sum(p.numel() for p in gpt.parameters())


@pytest.mark.parametrize("key", MODELS)
def test_width_switching_is_exact_and_repeatable(key):
    model, x = _model(key)
    make_slimmable(model, WIDTHS)
    first = {}
    for w in WIDTHS:
        set_width(model, w)
        first[w] = model(x)
    for w in reversed(WIDTHS):
        set_width(model, w)
        assert torch.equal(model(x), first[w])
        dense = export(model, w)
        assert not any(isinstance(m, SlimBatchNorm2d) for m in dense.modules())
        torch.testing.assert_close(dense(x), first[w], rtol=1e-6, atol=1e-6)
    assert not torch.allclose(first[0.25], first[1.0])


@pytest.mark.parametrize("width", WIDTHS)
def test_exported_sizes_match_the_models_own_width_argument(width):
    model, _ = _model("lenet5-bn")
    make_slimmable(model, WIDTHS)
    dense = export(model, width)
    same = get("lenet5", in_shape=(1, 28, 28), batch_norm=True, width=width)
    assert [p.shape for p in dense.parameters()] == [p.shape for p in same.parameters()]


def test_channels_are_in_descending_importance():
    model, _ = _model("resnet18")
    make_slimmable(model, WIDTHS)
    for group in channel_groups(model):  # the slim layers answer to the same paths
        scores = importance(model, group)
        assert torch.all(scores[:-1] >= scores[1:] - 1e-6), group.name


def _touch_bn_statistics(model, x):
    model.train()
    for w in WIDTHS:
        set_width(model, w)
        model(x + w)
    model.eval()


@pytest.mark.parametrize("key", ["lenet5-bn", "resnet18"])
def test_state_dict_round_trips_every_width(key):
    model, x = _model(key)
    make_slimmable(model, WIDTHS)
    _touch_bn_statistics(model, x)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    fresh, _ = _model(key, seed=1)
    make_slimmable(fresh, WIDTHS, order=False)   # the README's way: the saved channels are in order already
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer))
    for w in WIDTHS:
        set_width(model, w)
        set_width(fresh, w)
        assert torch.equal(fresh(x), model(x))
    assert any(k.endswith(f"running_mean_{width_tag(0.25)}") for k in model.state_dict())


@pytest.mark.parametrize("key", ["mlp", "lenet5-bn"])
def test_a_pretrained_state_dict_goes_into_the_dense_model_before_make_slimmable(key):
    pretrained, x = _model(key)
    reference = make_slimmable(copy.deepcopy(pretrained), WIDTHS)
    model, _ = _model(key, seed=1)
    model.load_state_dict(pretrained.state_dict())   # the README's way
    make_slimmable(model, WIDTHS)
    for w in WIDTHS:
        set_width(model, w)
        set_width(reference, w)
        assert torch.equal(model(x), reference(x)), w


def test_a_dense_state_dict_is_refused_by_a_slimmable_bn_model_strict_or_not():
    pretrained, _ = _model("lenet5-bn")
    late, _ = _model("lenet5-bn", seed=1)
    make_slimmable(late, WIDTHS)
    before = {k: v.clone() for k, v in late.state_dict().items()}
    for strict in (True, False):
        with pytest.raises(RuntimeError, match=r"features.1.running_mean is there but not "
                                               r"features.1.running_mean_0250 .* goes into the dense model before "
                                               "make_slimmable"):
            late.load_state_dict(pretrained.state_dict(), strict=strict)
        with pytest.raises(RuntimeError, match=r"running_mean is there but not"):   # into a part of it
            late.features.load_state_dict(pretrained.features.state_dict(), strict=strict)
    assert all(torch.equal(a, b) for a, b in zip(late.state_dict().values(), before.values()))   # nothing copied


def test_recalibration_touches_only_the_chosen_width():
    model, x = _model("lenet5-bn")
    make_slimmable(model, WIDTHS)
    bn = model.features[1]
    full = bn.running_mean.clone()
    quarter = getattr(bn, f"running_mean_{width_tag(0.25)}").clone()
    recalibrate_bn(model, iter([x, x]), steps=2, widths=[0.5])
    set_width(model, 0.5)
    conv = model.features[0]
    expected = conv(x).mean((0, 2, 3))
    torch.testing.assert_close(bn.stats()[0], expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(bn.running_mean, full)
    assert torch.equal(getattr(bn, f"running_mean_{width_tag(0.25)}"), quarter)


@pytest.mark.parametrize("widths, match", [((0.5,), "include 1.0"), ((0.0, 1.0), r"\(0, 1\]"),
                                           ((1.5, 1.0), r"\(0, 1\]"), ((), r"\(0, 1\]"), (("a", 1.0), "numbers")])
def test_bad_widths_are_refused_at_conversion(widths, match):
    model, _ = _model("mlp")
    with pytest.raises(ValueError, match=match):
        make_slimmable(model, widths)


def test_bad_widths_and_models_are_refused():
    model, _ = _model("mlp")
    with pytest.raises(TypeError, match="make_slimmable"):
        set_width(model, 0.5)
    make_slimmable(model, WIDTHS)
    with pytest.raises(ValueError, match=r"not one of this model's widths \[0.25, 0.5, 0.75, 1.0\]"):
        set_width(model, 0.3)
    with pytest.raises(TypeError, match="width must be a float"):
        set_width(model, "wide")
    with pytest.raises(TypeError, match=r"width must be a float.*str '0.5'"):
        set_width(model, "0.5")
    with pytest.raises(ValueError, match="not one of"):
        export(model, 2.0)
    with pytest.raises(RuntimeError, match="already slimmable"):
        make_slimmable(model, WIDTHS)
    with pytest.raises(TypeError, match="knows the channel structure"):
        make_slimmable(nn.Sequential(nn.Linear(3, 4)), WIDTHS)


def test_sandwich_widths():
    import random

    rng = random.Random(0)
    for _ in range(20):
        picked = sandwich_widths(WIDTHS, 1, rng)
        assert picked[0] == 1.0 and picked[-1] == 0.25 and len(picked) == 3 and picked[1] in (0.5, 0.75)
    assert sandwich_widths(WIDTHS, 2, rng) == [1.0, 0.75, 0.5, 0.25]
    assert sandwich_widths((1.0,), 2, rng) == [1.0]


@pytest.mark.parametrize("key", ["lenet5-bn", "resnet18"])
def test_residual_generator_starts_at_the_pretrained_weights(key):
    model, x = _model(key)
    before = model(x)
    make_slimmable(model, WIDTHS)
    generator = WeightINR(model, "residual")
    for w in WIDTHS:
        set_width(model, w)
        sliced = model(x)
        generator.generate(model)
        for _, layer in model.named_modules():
            if getattr(layer, "generated", None) is not None:
                assert torch.equal(layer.generated, layer.sliced_weight())
        assert torch.equal(model(x), sliced)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)  # the pretrained network at width 1.0
    set_width(model, 1.0)
    generator.generate(model)
    dense = materialize(model, generator, 1.0)
    torch.testing.assert_close(dense(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["residual", "full"])
def test_materialize_writes_what_the_generator_makes(mode):
    model, x = _model("lenet5-bn")
    make_slimmable(model, WIDTHS)
    generator = WeightINR(model, mode)
    with torch.no_grad():
        for p in generator.parameters():
            p.normal_(0, 0.3)
    set_width(model, 0.5)
    generator.generate(model)
    expected = model(x)
    set_width(model, 1.0)
    dense = materialize(model, generator, 0.5)
    torch.testing.assert_close(dense(x), expected, rtol=1e-4, atol=1e-4)
    assert get_width(model) == 1.0


def test_generator_training_moves_only_the_generator():
    task = get_task("digits")
    torch.manual_seed(0)
    model = make_slimmable(get("lenet5", batch_norm=True, **task.model_kwargs()), WIDTHS)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    generator = WeightINR(model, "residual")
    log = train_generator(model, generator, task.batches(32, 0), steps=2, lr=1e-2, recalibration_batches=1)
    assert log.steps == 2 and log.flops > 0 and log.passes == {1.0: 2, 0.75: 2, 0.5: 2, 0.25: 2}
    assert all(torch.equal(v, weights[k]) for k, v in model.named_parameters())
    assert generator.head.weight.abs().sum() > 0
    with pytest.raises(ValueError, match="mode"):
        WeightINR(model, "delta")


def test_slimmable_finetune_runs_the_sandwich_and_recalibrates():
    task = get_task("digits")
    torch.manual_seed(0)
    model = make_slimmable(get("lenet5", batch_norm=True, **task.model_kwargs()), WIDTHS)
    before = model.features[0].weight.clone()
    log = slimmable_finetune(model, task.batches(32, 0), steps=3, num_random=1, recalibration_batches=2)
    assert log.steps == 3 and sum(log.passes.values()) == 9 and log.passes[1.0] == log.passes[0.25] == 3
    assert log.flops > 0 and get_width(model) == 1.0 and not model.training
    assert not torch.equal(model.features[0].weight, before)
    bn = model.features[1]
    assert int(getattr(bn, f"num_batches_tracked_{width_tag(0.5)}")) == 2  # update_bn's plain average


def test_cli_finetune_writes_a_slimmable_state_dict(tmp_path, capsys):
    import json

    from safetensors.torch import load_file, save_file

    from weightcast.cli import main

    task = get_task("digits")
    model = get("lenet5", batch_norm=True, **task.model_kwargs())
    save_file(model.state_dict(), str(tmp_path / "pre.safetensors"))
    assert main(["slim", "finetune", "--model", "lenet5", "--model-kwargs", '{"batch_norm": true}', "--task",
                 "digits", "--weights", str(tmp_path / "pre.safetensors"), "--out", str(tmp_path / "slim.safetensors"),
                 "--steps", "2", "--widths", "0.5", "1.0"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["widths"]) == {"0.5", "1.0"} and report["steps"] == 2
    restored = make_slimmable(get("lenet5", batch_norm=True, **task.model_kwargs()), (0.5, 1.0), order=False)
    restored.load_state_dict(load_file(str(tmp_path / "slim.safetensors")))
