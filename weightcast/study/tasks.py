"""The study's tasks: which data, model, goal and budget each comparison uses.

"held_out" tasks are kept out of every model zoo (see :data:`weightcast.zoo.spec.HELD_OUT`): their results are
the ones that count for learned forecasters. Learning-rate grids are per optimizer family and shared by every
method of that family.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .methods import Schedule
from .run import Goal

SGD_LRS = (0.01, 0.03, 0.1)
ADAMW_LRS = (1e-3, 3e-3, 1e-2)


@dataclass(frozen=True)
class StudyTask:
    """A comparison setting: ``arch`` on data ``task`` until ``goal``, at most ``budget`` steps."""

    task: str
    arch: str
    goal: Goal
    budget: int
    eval_every: int
    batch_size: int
    schedule: Schedule
    model_kwargs: dict = field(default_factory=dict)
    eval_limit: int | None = None
    held_out: bool = False
    needs_data_dir: bool = False


STUDY_TASKS = {
    "digits-mlp": StudyTask("digits", "mlp", Goal("acc", 0.97), budget=600, eval_every=10, batch_size=32,
                            schedule=Schedule(window=5, record_every=10, horizon=25),
                            model_kwargs={"widths": (64,)}),
    "mnist-lenet5": StudyTask("mnist", "lenet5", Goal("acc", 0.975), budget=1000, eval_every=50, batch_size=64,
                              schedule=Schedule(window=5, record_every=10, horizon=25), eval_limit=1000,
                              needs_data_dir=True),
    "chars-gpt": StudyTask("chars", "gpt", Goal("loss", 2.3), budget=800, eval_every=50, batch_size=32,
                           schedule=Schedule(window=5, record_every=10, horizon=25), eval_limit=32,
                           model_kwargs={"n_layer": 2, "n_embd": 64, "n_head": 4}),
    "mnist-lenet5-wide": StudyTask("mnist", "lenet5", Goal("acc", 0.975), budget=600, eval_every=50,
                                   batch_size=64, schedule=Schedule(window=5, record_every=10, horizon=25),
                                   model_kwargs={"width": 4}, eval_limit=1000, held_out=True,
                                   needs_data_dir=True),
}
