"""Model zoos: many short training runs, each with its parameter trajectory on disk.

* :func:`build_zoo` trains a list of :class:`RunSpec` into a directory (resumable); :func:`default_spec` and
  :func:`quick_spec` are the stock grids; :data:`HELD_OUT` lists what no zoo may contain.
* :class:`TrajectoryDataset` serves windows of the trajectories (by element, tensor or whole model), split by run.
* :func:`read_manifest` / :func:`load_trajectory` read a zoo directly, verifying each file (:class:`ZooFileError`
  names a broken one; :func:`verify_run` checks one run's file). Layout: see :mod:`weightcast.zoo.store`.
"""
from .build import OPTIMIZERS, RunResult, build_zoo, train_run
from .dataset import TrajectoryDataset, split_runs
from .spec import HELD_OUT, RunSpec, default_spec, is_held_out, quick_spec
from .store import ZooFileError, load_trajectory, read_manifest, verify_run

__all__ = ["HELD_OUT", "OPTIMIZERS", "RunResult", "RunSpec", "TrajectoryDataset", "ZooFileError", "build_zoo",
           "default_spec", "is_held_out", "load_trajectory", "quick_spec", "read_manifest", "split_runs", "train_run",
           "verify_run"]
