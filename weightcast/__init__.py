"""weightcast: cheaper training by treating weights as data.

The flagship is :class:`ForecastSGD`, a drop-in for ``torch.optim.SGD`` that periodically jumps the parameters
forward along their forecast trajectory; :class:`Forecast` adds the same jumps to any torch optimizer.
"""
from . import forecasters, ops, schedules
from ._version import __version__  # the release; build_info()["version"] carries the local tag (+cpu, +cu130)
from .optim import Forecast, ForecastSGD


def build_info() -> dict:
    """How this weightcast was built (backends, CUDA version and architectures, torch built against) and what
    loaded at run time; see :func:`weightcast._build.build_info`."""
    from ._build import build_info as _build_info

    return _build_info()

__all__ = ["Forecast", "ForecastSGD", "__version__", "build_info", "forecasters", "ops", "schedules"]
