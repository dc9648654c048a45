"""The input prior (class-conditional Gaussian of a task's inputs) and the hypernetwork's pruning on its samples."""
import copy
import json

import pytest
import torch
from torch import nn
from safetensors.torch import load_file, save_file

from weightcast.prune import BiasFreeMLP, Calibration, MaskHypernetwork, apply_masks, hypernet, prune
from weightcast.prune.calibration import UNRECORDED_CALIBRATION
from weightcast.prune.api import masks_and_weights
from weightcast.prune.fisher import prune_in_stages
from weightcast.prune.prior import InputPrior
from weightcast.weights_io import WeightFileError
from test_prune import task, trained  # noqa: F401 -- the shared fixtures


def lda_draws(n, seed=0):
    """Inputs (n, 1, 2, 3) of a known class-conditional Gaussian: 3 classes, shared covariance L L^T."""
    g = torch.Generator().manual_seed(seed)
    means = torch.tensor([[0.0] * 6, [2.0] * 6, [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0]])
    L = torch.tril(torch.rand(6, 6, generator=g)) + torch.eye(6)
    y = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), n, replacement=True, generator=g)
    x = means[y] + torch.randn(n, 6, generator=g) @ L.T
    return x.reshape(n, 1, 2, 3), y, means, L @ L.T


def test_the_prior_recovers_the_class_means_covariance_and_frequencies():
    x, y, means, cov = lda_draws(40_000)
    prior = InputPrior.fit(x, y)
    assert prior.shape == (1, 2, 3)
    assert torch.allclose(prior.means, means, atol=0.1)
    fitted = prior.scale_tril @ prior.scale_tril.T
    assert torch.allclose(fitted, cov, rtol=0.05, atol=0.1)
    assert torch.allclose(prior.class_probs, torch.tensor([0.5, 0.3, 0.2]), atol=0.01)
    assert prior.bounds.tolist() == [x.min().item(), x.max().item()]


def test_samples_are_labelled_bounded_and_reproducible():
    x, y, _, _ = lda_draws(5_000)
    prior = InputPrior.fit(x.clamp(-1.5, 3.0), y)
    xs, ys = prior.sample(3_000, seed=4)
    assert xs.shape == (3_000, 1, 2, 3) and xs.dtype == torch.float32 and ys.dtype == torch.int64
    assert xs.min() >= -1.5 and xs.max() <= 3.0
    assert torch.equal(xs, prior.sample(3_000, seed=4)[0]) and not torch.equal(xs, prior.sample(3_000, seed=5)[0])
    class_means = torch.stack([xs.flatten(1)[ys == c].mean(0) for c in range(3)])
    assert torch.allclose(class_means, prior.means, atol=0.25)   # clamping moves them a little


def test_fit_refuses_labels_it_cannot_use_and_takes_any_integer_labels():
    x, y, _, _ = lda_draws(100)
    with pytest.raises(ValueError, match=r"classes \[1\] have no example"):
        InputPrior.fit(x[y != 1], y[y != 1])
    for bad_y in (y.float(), y[:50], y[:, None], torch.zeros(100, dtype=torch.long)):
        with pytest.raises(ValueError, match="integer labels|at least two classes"):
            InputPrior.fit(x, bad_y)
    fitted = InputPrior.fit(x, y.to(torch.uint8))
    assert torch.equal(fitted.means, InputPrior.fit(x, y).means)
    constant = InputPrior.fit(torch.ones(20, 3), torch.arange(20) % 2)   # no variance: the ridge floor
    assert torch.isfinite(constant.scale_tril).all()


def test_a_prior_with_wrong_or_non_finite_tensors_is_refused():
    prior = InputPrior.fit(*lda_draws(500)[:2])
    fields = {f: getattr(prior, f) for f in ("means", "scale_tril", "class_probs", "bounds")}
    for name, bad in (("class_probs", prior.class_probs[:2]), ("bounds", prior.bounds[:1]),
                      ("scale_tril", prior.scale_tril * float("nan"))):
        with pytest.raises(ValueError, match="needs means|must be finite"):
            InputPrior(**{**fields, name: bad}, shape=prior.shape)


def test_a_prior_accepts_the_classifiers_of_its_task_only(task, trained):
    prior = InputPrior.fit(task.train_x, task.train_y)
    assert prior.accepts(trained)
    torch.manual_seed(0)
    assert not prior.accepts(BiasFreeMLP(task.input_shape, 10, (24, 12)))   # right shapes, not a digits classifier
    assert not prior.accepts(BiasFreeMLP((1, 28, 28), 10, (8,)))   # another input size
    assert not prior.accepts(BiasFreeMLP(task.input_shape, 7, (8,)))   # another number of classes


@pytest.fixture(scope="module")
def calibrated_net(task):
    net = MaskHypernetwork(token_size=16, hidden=8)
    hypernet.fit_priors(net, {"digits": task})
    net.calibrated["digits"] = [False, False, False, True, True, False]   # at 0.9 and 0.95
    net.calibration = Calibration(samples=1024, block_size=300, draws=1)
    return net


def test_where_calibrated_the_hypernetwork_is_woodfisher_on_the_priors_samples(trained, calibrated_net):
    x, y = calibrated_net.priors["digits"].sample(1024)
    expected = prune_in_stages(trained, 0.9, x, y, "woodfisher", block_size=300)   # as its calibration says
    model = copy.deepcopy(trained)
    masks = prune(model, 0.9, "hypernet", hypernet=calibrated_net)
    for key, (mask, weight) in expected.items():
        assert torch.equal(masks[key], mask)
        layer = dict(model.named_modules())[key.removesuffix(".weight")]
        assert torch.equal(layer.weight, (weight * mask).float())
    assert [calibrated_net.calibrates_at(s, "digits") for s in (0.85, 0.9, 0.92, 0.95, 0.97)] == \
        [False, True, True, True, False]


def test_of_several_draws_it_keeps_the_one_best_on_another_draw(trained, calibrated_net):
    prior = calibrated_net.priors["digits"]
    x_check, y_check = prior.sample(512, seed=3)
    losses, results = [], []
    for seed in range(3):
        result = prune_in_stages(trained, 0.95, *prior.sample(512, seed), "woodfisher")
        pruned = apply_masks(copy.deepcopy(trained), *masks_and_weights(result))
        with torch.no_grad():
            losses.append(float(nn.functional.cross_entropy(pruned(x_check), y_check)))
        results.append(result)
    best = results[min(range(3), key=losses.__getitem__)]
    masks, weights = calibrated_net.prune(trained, 0.95, calibration=Calibration(512, None, draws=3))
    assert all(torch.equal(masks[k], m) and torch.equal(weights[k], w) for k, (m, w) in best.items())


def test_bad_calibration_settings_are_refused_clearly(trained, calibrated_net):
    for name, bad in (("samples", 0), ("draws", 0), ("samples", 2.5), ("draws", True), ("block_size", 0),
                      ("block_size", "full"), ("stages", 0)):
        with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
            Calibration(**{name: bad})
    for bad in (0.0, -1e-3, float("nan"), float("inf"), "1e-3", True):
        with pytest.raises(ValueError, match="rel_damp must be a finite positive number"):
            Calibration(rel_damp=bad)
    with pytest.raises(TypeError, match="calibration must be a weightcast.prune.Calibration, got dict"):
        prune(copy.deepcopy(trained), 0.95, "hypernet", hypernet=calibrated_net, calibration={"samples": 512})


def test_a_double_model_is_pruned_on_double_samples(trained, calibrated_net):
    model = copy.deepcopy(trained).double()
    masks = prune(model, 0.9, "hypernet", hypernet=calibrated_net)
    expected = prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=calibrated_net)
    assert model.layers[0].weight.dtype == torch.float64
    agree = sum(int((masks[k] == expected[k]).sum()) for k in masks) / sum(m.numel() for m in masks.values())
    assert agree > 0.97   # the same draws; float64 gradients move only near-ties of the selection


def test_where_no_prior_is_calibrated_the_model_is_not_run(trained, calibrated_net):
    class TwoInputs(nn.Module):   # cannot run on a batch alone: the old scores path must not call it
        def __init__(self):
            super().__init__()
            self.inner = copy.deepcopy(trained)

        def forward(self, x, scale):
            return self.inner(x) * scale

    masks = prune(TwoInputs(), 0.8, "hypernet", hypernet=calibrated_net)   # not calibrated at 0.8
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.8 * sum(m.numel() for m in masks.values()))
    assert not calibrated_net.priors["digits"].accepts(TwoInputs())   # any failure to run: not its classifier


def test_elsewhere_or_per_layer_it_takes_its_scores(trained, calibrated_net):
    for s, scope in ((0.8, "global"), (0.9, "layer")):
        model = copy.deepcopy(trained)
        masks = prune(model, s, "hypernet", hypernet=calibrated_net, scope=scope)
        magnitude = prune(copy.deepcopy(trained), s, "magnitude", scope=scope)   # untrained net: magnitude
        assert all(torch.equal(masks[k], magnitude[k]) for k in masks)
        assert torch.equal(model.layers[0].weight_orig, trained.layers[0].weight)   # weights not updated


def test_a_model_no_prior_fits_takes_the_scores(calibrated_net):
    model = BiasFreeMLP((1, 28, 28), 10, (8,))   # MNIST-sized: the net has a digits prior only
    assert calibrated_net.prior_for(model) is None
    masks = prune(copy.deepcopy(model), 0.9, "hypernet", hypernet=calibrated_net)
    assert all(torch.equal(masks[k], m) for k, m in prune(copy.deepcopy(model), 0.9, "magnitude").items())


def test_an_unknown_ambiguous_or_unfitting_prior_is_refused(trained, calibrated_net):
    for scope in ("global", "layer"):
        with pytest.raises(ValueError, match=r"no input prior 'mnist'; it has \['digits'\]"):
            prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=calibrated_net, prior="mnist", scope=scope)
    for model, match in ((BiasFreeMLP((1, 28, 28), 10, (8,)), r"does not run on this prior's inputs \(1, 8, 8\)"),
                         (BiasFreeMLP((1, 8, 8), 7, (8,)), r"returns \(2, 7\) .* not one logit per class \(2, 10\)")):
        before = copy.deepcopy(model.state_dict())
        with pytest.raises(ValueError, match=match):
            prune(model, 0.9, "hypernet", hypernet=calibrated_net, prior="digits")
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # left as it was
    net = copy.deepcopy(calibrated_net)
    net.priors["digits-copy"] = net.priors["digits"]
    net.calibrated["digits-copy"] = net.calibrated["digits"]
    with pytest.raises(ValueError, match="several input priors"):
        prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=net)
    masks = prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=net, prior="digits")   # named: it runs
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.9 * sum(m.numel() for m in masks.values()))


def test_priors_and_calibration_round_trip_and_older_files_load(calibrated_net, tmp_path):
    path = tmp_path / "h.safetensors"
    hypernet.save(calibrated_net, path, {"command": "test"})
    again = hypernet.load(path)
    assert again.calibrated == calibrated_net.calibrated
    assert again.calibration == calibrated_net.calibration   # the setting its gate was chosen with
    for field in ("means", "scale_tril", "class_probs", "bounds"):
        assert torch.equal(getattr(again.priors["digits"], field), getattr(calibrated_net.priors["digits"], field))
    assert again.priors["digits"].shape == calibrated_net.priors["digits"].shape
    tensors = load_file(str(path))
    config = '{"token_size": 16, "hidden": 8}'
    damaged = [({k: v for k, v in tensors.items() if k != "prior.digits.scale_tril"}, '{"digits": [1, 8, 8]}'),
               ({**tensors, "prior.digits.calibrated": torch.ones(2, dtype=torch.bool)}, '{"digits": [1, 8, 8]}'),
               ({**tensors, "prior.digits.bounds": torch.zeros(3)}, '{"digits": [1, 8, 8]}'),
               (tensors, "{}"), (tensors, "{not json")]
    for file_tensors, priors in damaged:
        save_file(file_tensors, str(path), metadata={"config": config, "priors": priors})
        with pytest.raises(WeightFileError, match="its input priors are damaged"):
            hypernet.load(path)
    older = {k: v for k, v in tensors.items() if not k.startswith("prior.")}
    save_file(older, str(path), metadata={"config": config})
    old = hypernet.load(path)
    assert old.priors == {} and old.calibrated == {}
    assert old.calibration == UNRECORDED_CALIBRATION == Calibration(1024, None, 3, stages=8, rel_damp=1e-3)
    fields = '"block_size": null, "draws": 1, "stages": 8, "rel_damp": 0.001'
    for setting, match in (('{"samples": 0, %s}' % fields, "samples must be a positive integer"),
                           ('{"samples": 512, "block_size": null}', "exactly the fields"),   # missing ones
                           ('{"samples": 512, "extra": 1, %s}' % fields, "exactly the fields"),
                           ("[512]", "exactly the fields"), ("{not json", "Expecting property name")):
        save_file(tensors, str(path), metadata={"config": config, "priors": '{"digits": [1, 8, 8]}',
                                                "calibration": setting})
        with pytest.raises(WeightFileError, match=f"its calibration setting is damaged .*{match}"):
            hypernet.load(path)
        bare = hypernet.load(path, priors=False)   # what `prune prior` reads before writing new priors and gate
        assert bare.priors == {} and bare.calibrated == {} and bare.calibration == Calibration()
        assert all(torch.equal(v, calibrated_net.state_dict()[k]) for k, v in bare.state_dict().items())


def test_the_gate_asks_for_a_gain_above_the_noise_and_no_loss_beyond_it():
    gate = hypernet.margin_gate
    assert hypernet.accuracy_error(0.5, 100) == 0.05 and hypernet.accuracy_error(1.0, 100) == 0.0
    assert gate([0.01, 0.002], [0.002, 0.002])            # mean gain above the mean error
    assert not gate([0.001, 0.001], [0.002, 0.002])       # a gain within the noise
    assert gate([0.02, -0.0004], [0.002, 0.002])          # a loss within one run's noise
    assert not gate([0.05, -0.003], [0.002, 0.002])       # a loss beyond it, however large the mean
    assert not gate([], [])                               # no validation runs
    row = {"prior_of_run": ["a", "b", "a"], "val_examples": [10_000, 360, 10_000],
           "val_acc_scores": [[0.9] * 6, [0.5] * 6, [0.9] * 6],
           "val_acc_calibrated": [[0.9, 0.91, 0.95, 0.9, 0.9, 0.9], [0.52, 0.6, 0.5, 0.5, 0.5, 0.5],
                                  [0.9, 0.91, 0.89, 0.9, 0.9, 0.9]]}
    assert hypernet.gate_flags(row, ["a", "b", "c"]) == {   # b's error on 360 examples is 2.6 points
        "a": [False, True, False, False, False, False], "b": [False, True] + [False] * 4, "c": [False] * 6}


def test_the_decision_names_what_prunes_a_model_at_each_sparsity(calibrated_net):
    net = copy.deepcopy(calibrated_net)   # WoodFisher on the digits prior at 0.9 and 0.95
    net.active.copy_(torch.tensor([True, True, False, False, False, False]))
    net.shrink.fill_(0.5)
    assert net.decision(0.9, "digits") == {"woodfisher_prior": "digits",
                                           "prior_sha256": net.decision(0.95, "digits")["prior_sha256"]}
    scores = net.decision(0.5, "digits")
    assert scores["strength"] == 0.5 and len(scores["network_sha256"]) == 16
    assert net.decision(0.9, "digits", scope="layer") == {"strength": 0.0, "scope": "layer"}   # prune(): scores
    other = Calibration(samples=512, block_size=300, draws=1)
    assert net.decision(0.9, "digits", calibration=other) != net.decision(0.9, "digits")
    assert net.decision(0.9, None) == net.decision(0.8, "digits") == {"strength": 0.0}   # magnitude's scores
    gated = copy.deepcopy(net)
    gated.active[0] = False   # the gate changed at 0.5 only
    assert gated.decision(0.5, "digits") == {"strength": 0.0}
    assert all(gated.decision(s, p) == net.decision(s, p) for s in hypernet.VAL_SPARSITIES[1:]
               for p in ("digits", None))
    with torch.no_grad():
        gated.head[-1].bias += 1.0   # another network: the sparsities its scores decide change
    assert gated.decision(0.7, None)["network_sha256"] != net.decision(0.7, None)["network_sha256"]
    assert gated.decision(0.9, "digits") == net.decision(0.9, "digits")   # WoodFisher on the prior decides there
    gated.calibration = Calibration(samples=512, block_size=300, draws=1)
    assert gated.decision(0.9, "digits") != net.decision(0.9, "digits")
    with pytest.raises(ValueError, match="no input prior 'mnist'"):
        net.decision(0.9, "mnist")


@pytest.mark.filterwarnings("ignore:pruning by hypernet")   # a random hypernetwork may empty a layer
def test_equal_decisions_prune_alike(trained, calibrated_net):
    net = copy.deepcopy(calibrated_net)   # WoodFisher on the digits prior at 0.9 and 0.95
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    net.active.copy_(torch.tensor([True, True, True, False, False, False]))
    net.shrink.copy_(torch.tensor([0.5, 0.25, 1.0, 1.0, 1.0, 1.0]))
    gated = copy.deepcopy(net)
    gated.active[0] = False   # the gate changed at 0.5: between 0.5 and 0.7 too
    assert gated.decision(0.6, "digits") == {"strength": 0.0} != net.decision(0.6, "digits")
    for s in (0.6, 0.7, 0.75, 0.9):
        ours, theirs = net.prune(copy.deepcopy(trained), s), gated.prune(copy.deepcopy(trained), s)
        same = all(torch.equal(ours[0][k], m) for k, m in theirs[0].items())
        assert same == (net.decision(s, "digits") == gated.decision(s, "digits")), s
        if theirs[1] is not None:
            assert all(torch.equal(ours[1][k], w) for k, w in theirs[1].items())
    assert all(torch.equal(gated.prune(copy.deepcopy(trained), 0.6)[0][k], m)
               for k, m in prune(copy.deepcopy(trained), 0.6, "magnitude").items())


def test_the_learned_change_is_gated_on_the_scores_alone(trained, task, calibrated_net):
    net = copy.deepcopy(calibrated_net)   # WoodFisher on the digits prior at 0.9 and 0.95: set aside, then kept
    row = hypernet.choose_strength(net, [(trained, task)], (0.5,), log=lambda *_: None)
    assert net.calibrated == calibrated_net.calibrated
    magnitude = [prune(copy.deepcopy(trained), s, "magnitude") for s in hypernet.VAL_SPARSITIES]
    accuracies = []
    for masks in magnitude:
        pruned = copy.deepcopy(trained)
        apply_masks(pruned, masks)
        accuracies.append(task.evaluate(pruned)["acc"])
    assert row["val_acc_magnitude"] == [accuracies]
    assert net.active.tolist() == row["active"] and net.shrink.tolist() == row["shrink"]


def test_calibration_is_chosen_where_it_beats_the_scores_beyond_the_noise(trained, task, capsys):
    net = MaskHypernetwork(token_size=16, hidden=8)
    hypernet.fit_priors(net, {"digits": task})
    x, y, _, _ = lda_draws(1000)
    net.priors["other"] = InputPrior.fit(x, y)   # a task without validation runs
    row = hypernet.choose_calibration(net, [(trained, task)], log=lambda *_: None, progress=True)
    before, after = row["val_acc_scores"][0], row["val_acc_calibrated"][0]
    assert row["prior_of_run"] == ["digits"] and row["val_examples"] == [len(task.eval_tensors("val", None)[1])]
    errors = [hypernet.accuracy_error(b, row["val_examples"][0]) for b in before]
    assert row["calibrated"]["digits"] == net.calibrated["digits"] == [
        a - b > e for a, b, e in zip(after, before, errors)]
    assert any(net.calibrated["digits"])   # WoodFisher on the prior beats magnitude somewhere on this digits MLP
    assert net.calibrated["other"] == [False] * len(hypernet.VAL_SPARSITIES)
    shown = capsys.readouterr().err   # weightcast prune prior printed nothing for half an hour (review)
    assert "scores" in shown and "WoodFisher on the priors" in shown and f"{len(hypernet.VAL_SPARSITIES)}/" in shown


def test_prune_gate_chooses_both_gates_again_and_keeps_the_rest(trained, task, calibrated_net, tmp_path,
                                                                 monkeypatch):
    from weightcast.cli import main
    from weightcast.prune import zoo

    source = tmp_path / "h.safetensors"
    hypernet.save(calibrated_net, source, {"input_priors": {"command": "prior", "calibrated": "old", "seconds": 1.0},
                                           "validation": "the trained network's", "train_log": []})
    monkeypatch.setattr(zoo, "validation_ids", lambda: ["digits-run"])
    monkeypatch.setattr(zoo, "load_models", lambda root, specs: [({"id": "digits-run", "spec": {"task": "digits"}},
                                                                  trained)])
    out = tmp_path / "gated.safetensors"
    assert main(["prune", "gate", "--hypernet", str(source), "--zoo", str(tmp_path), "--shrinks", "0.5",
                 "--out", str(out)]) == 0
    card, net = json.loads(out.with_suffix(".json").read_text()), hypernet.load(out)
    gate = card["gate"]
    assert gate["validation_runs"] == ["digits-run"] and gate["command"].startswith("weightcast prune gate")
    assert set(gate["learned_change"]["val_acc_by_shrink"]) == {"1.0", "0.5"}
    assert net.active.tolist() == gate["learned_change"]["active"] and net.shrink.tolist() == gate[
        "learned_change"]["shrink"]
    assert net.calibrated == gate["woodfisher_on_priors"]["calibrated"]
    assert card["input_priors"] == {"command": "prior", "seconds": 1.0} and "validation" not in card
    assert all(torch.equal(v, calibrated_net.state_dict()[k]) for k, v in net.state_dict().items()
               if k not in ("active", "shrink"))
    old, new = calibrated_net.priors["digits"].tensors(""), net.priors["digits"].tensors("")
    assert net.calibration == calibrated_net.calibration and all(torch.equal(new[k], v) for k, v in old.items())


def test_apply_false_is_refused_before_woodfisher_runs(trained, calibrated_net, monkeypatch):
    """The refusal came after the WoodFisher runs it would throw away (38-47 s on the MNIST MLP at 0.9)."""
    from weightcast.prune import fisher

    monkeypatch.setattr(fisher, "prune_in_stages", lambda *a, **k: pytest.fail("WoodFisher ran before the refusal"))
    with pytest.raises(ValueError, match="apply=False would lose"):
        prune(copy.deepcopy(trained), 0.9, "hypernet", hypernet=calibrated_net, apply=False)


def test_apply_false_is_refused_only_where_the_hypernetwork_compensates(trained, calibrated_net):
    """A calibrated hypernetwork returns compensated weights, which apply=False would lose: refused (model
    untouched) unless update_weights=False. Where it takes its scores (no prior, scope="layer", or a sparsity it
    does not calibrate at) there are no weights to lose, and apply=False returns the masks (review)."""
    model = copy.deepcopy(trained)
    with pytest.raises(ValueError, match="apply=False would lose"):
        prune(model, 0.9, "hypernet", hypernet=calibrated_net, apply=False)
    assert model.state_dict().keys() == trained.state_dict().keys() and all(
        torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))
    for net, scope in ((MaskHypernetwork(), "global"), (calibrated_net, "layer")):
        masks = prune(model, 0.9, "hypernet", hypernet=net, scope=scope, apply=False)
        sizes = [m.numel() for m in masks.values()]
        expected = round(0.9 * sum(sizes)) if scope == "global" else sum(round(0.9 * n) for n in sizes)
        assert sum(int((~m).sum()) for m in masks.values()) == expected
        assert model.state_dict().keys() == trained.state_dict().keys()   # no masks applied
