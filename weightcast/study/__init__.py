"""The time-to-accuracy study: does forecasting reach a target in fewer steps and less time than its base?

:func:`run_study` tunes and runs every method on a :class:`StudyTask`; :mod:`.report` turns the results into a
table, a CSV and a plot. ``weightcast demo`` runs it on the embedded digits task; benchmarks/time_to_accuracy.py
on every task.
"""
from .methods import Schedule, make_optimizer
from .report import markdown_table, plot, summarise, write_csv
from .run import Goal, RunResult, train_run
from .study import DEFAULT_METHODS, run_study
from .tasks import STUDY_TASKS, StudyTask

__all__ = ["DEFAULT_METHODS", "Goal", "RunResult", "STUDY_TASKS", "Schedule", "StudyTask", "make_optimizer",
           "markdown_table", "plot", "run_study", "summarise", "train_run", "write_csv"]
