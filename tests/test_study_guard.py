"""The study's jump guards: "+guard" watches the loss on a fixed training batch, "+guard-err" the loss and the
error rate; both on digits (per example) and on the character task (per token)."""
import pytest
import torch

from weightcast import data, models
from weightcast.study import STUDY_TASKS
from weightcast.study.run import _eval_guard, guard_of, train_run


def test_guard_suffixes():
    assert guard_of("forecast-sgd:linear") is None
    assert guard_of("forecast-sgd:linear+guard") is False
    assert guard_of("forecast-sgd:linear+guard-err") is True


@pytest.mark.parametrize("task_name,arch,kwargs", [("digits", "mlp", {"widths": (16,)}),
                                                   ("chars", "gpt", {"n_layer": 1, "n_embd": 16, "n_head": 2})])
def test_guard_criteria_are_the_loss_and_the_error_rate(task_name, arch, kwargs):
    task = data.get_task(task_name)
    torch.manual_seed(0)
    model = models.get(arch, **task.model_kwargs(), **kwargs)
    x, y = next(task.batches(8, generator=0))
    loss = _eval_guard(task, model, x, y, with_error=False)
    both = _eval_guard(task, model, x, y, with_error=True)
    assert isinstance(loss, float) and both[0] == loss
    with torch.no_grad():
        expected = (model(x).argmax(-1) != y).float().mean()
    assert both[1] == pytest.approx(float(expected)) and 0.0 <= both[1] <= 1.0
    assert model.training  # put back in training mode


def test_study_run_with_the_error_guard():
    study = STUDY_TASKS["digits-mlp"]
    task = data.get_task(study.task)

    def make():
        return models.get(study.arch, **task.model_kwargs(), **study.model_kwargs)

    result = train_run(task, make, "forecast-sgd:linear+guard-err", 0.1, 1, study.goal, 150, study.eval_every,
                       study.batch_size, study.schedule)
    assert not result.diverged and len(result.curve) == 150 // study.eval_every
    assert 1 <= len(result.jumps) <= 3  # jumps at 50, 100, 150: some pass the guard
