"""The study's tasks: which data, model, goal and budget each comparison uses.

"held_out" tasks are kept out of every model zoo (see :data:`weightcast.zoo.spec.HELD_OUT`): their results are
the ones that count for learned forecasters. The other tasks' architectures have a close relative in the
long-trajectory zoo (:func:`weightcast.zoo.spec.long_spec`) but never the same run: the zoo's seeds, batch sizes
and budgets differ. Learning-rate grids are per optimizer family and shared by every
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
    task_kwargs: dict = field(default_factory=dict)


# NiNo's schedule (5 states 200 steps apart, a jump every 1000 steps, k from 40 down to 1 over 10k steps) scaled to
# the budgets of each task: on digits (1,500 steps) 5 states 10 steps apart, a jump every 50 steps, k from 32 down to
# 1; on MNIST and the chars GPT (3,000-6,000 steps) 5 states 100 steps apart, a jump every 500 steps, k from 32 down
# to 1 over the budget
LONG = Schedule(window=5, record_every=10, k_max=32)
LONGER = Schedule(window=5, record_every=100, k_max=32)

STUDY_TASKS = {
    "mnist-mlp-deep": StudyTask("mnist", "mlp", Goal("acc", 0.97), budget=6000, eval_every=100, batch_size=64,
                                schedule=LONGER, model_kwargs={"widths": (96, 48, 24)}, eval_limit=2000,
                                held_out=True, needs_data_dir=True),
    "digits-mlp-deep": StudyTask("digits", "mlp", Goal("acc", 0.97), budget=1500, eval_every=25, batch_size=32,
                                 schedule=LONG, model_kwargs={"widths": (48, 48, 48)}, held_out=True),
    "digits-mlp": StudyTask("digits", "mlp", Goal("acc", 0.98), budget=1500, eval_every=25, batch_size=32,
                            schedule=LONG, model_kwargs={"widths": (64,)}),
    "mnist-mlp": StudyTask("mnist", "mlp", Goal("acc", 0.97), budget=6000, eval_every=100, batch_size=64,
                           schedule=LONGER, model_kwargs={"widths": (64,)}, eval_limit=2000, needs_data_dir=True),
    "mnist-lenet5": StudyTask("mnist", "lenet5", Goal("acc", 0.985), budget=3000, eval_every=100, batch_size=64,
                              schedule=LONGER, eval_limit=2000, needs_data_dir=True),
    "chars-gpt": StudyTask("chars", "gpt", Goal("loss", 1.9), budget=3000, eval_every=100, batch_size=16,
                           schedule=LONGER, eval_limit=32, model_kwargs={"n_layer": 2, "n_embd": 32, "n_head": 2},
                           task_kwargs={"block_size": 32}),
}
