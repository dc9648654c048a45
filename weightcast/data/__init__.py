"""Datasets held in memory as tensors; nothing is downloaded at run time.

* :func:`get_task` ("digits", "mnist", "chars"): the uniform task interface used by the zoo and the studies.
* :func:`load_mnist`, :func:`load_digits`, :func:`load_chars`: the raw data behind the tasks.
"""
from .chars import Corpus, load_chars
from .digits import load_digits
from .mnist import find_mnist_dir, load_mnist, read_idx
from .splits import Splits
from .tasks import TASKS, CharTask, ClassificationTask, Task, get_task

__all__ = ["TASKS", "CharTask", "ClassificationTask", "Corpus", "Splits", "Task", "find_mnist_dir", "get_task",
           "load_chars", "load_digits", "load_mnist", "read_idx"]
