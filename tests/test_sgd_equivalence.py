"""ForecastSGD without jumps is torch.optim.SGD, bit for bit."""
import pytest
import torch

import weightcast as wc

from helpers import clone_params, odd_params, run

CONFIGS = [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, dampening=0.1, weight_decay=1e-2),
           dict(momentum=0.9, nesterov=True, weight_decay=1e-2), dict(momentum=0.9, maximize=True),
           dict(momentum=0.0, weight_decay=1e-2, maximize=True)]
PATHS = [dict(foreach=False), dict(foreach=True), dict(fused=True)]


@pytest.mark.parametrize("path", PATHS, ids=["for-loop", "foreach", "fused"])
@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("forecaster", [None, "linear"])
def test_matches_torch_sgd_for_20_steps(config, path, forecaster):
    reference = odd_params()
    ours = clone_params(reference)
    torch_opt = torch.optim.SGD(reference, lr=0.05, **config, **path)
    # with a forecaster but no jump inside the 20 steps, flattening must not change one bit
    opt = wc.ForecastSGD(ours, lr=0.05, **config, **path, forecaster=forecaster, jump_every=100)
    run(torch_opt, reference, 20)
    run(opt, ours, 20)
    for a, b in zip(reference, ours):
        assert torch.equal(a, b)
    if forecaster is None:
        assert _same_state(opt.state_dict(), torch_opt.state_dict())


def _same_state(a, b):
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        for key, value in a["state"][k].items():
            other = b["state"][k][key]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other
    return True


def test_is_an_sgd_with_the_same_signature():
    params = odd_params()
    opt = wc.ForecastSGD(params, lr=0.1)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults == torch.optim.SGD(clone_params(params), lr=0.1).defaults
    assert opt.num_jumps == 0 and opt.forecaster is None


def test_tensor_lr_and_per_group_lr():
    reference = odd_params()
    ours = clone_params(reference)
    groups = lambda ps: [{"params": ps[:2], "lr": torch.tensor(0.02)}, {"params": ps[2:], "lr": 0.2}]
    torch_opt = torch.optim.SGD(groups(reference), momentum=0.9)
    opt = wc.ForecastSGD(groups(ours), momentum=0.9, forecaster="linear", jump_every=100)
    run(torch_opt, reference, 20)
    run(opt, ours, 20)
    for a, b in zip(reference, ours):
        assert torch.equal(a, b)
