"""weightcast: cheaper training by treating weights as data.

The flagship is :class:`ForecastSGD`, a drop-in for ``torch.optim.SGD`` that periodically jumps the parameters
forward along their forecast trajectory; :class:`Forecast` adds the same jumps to any torch optimizer.

Every public name is imported on first use (``wc.ForecastSGD``, ``wc.zoo``, ``wc.data``, ...), so that
``import weightcast`` and ``weightcast --help`` stay fast and a subpackage costs only when it is used.
"""
import importlib

from ._version import __version__  # the release; build_info()["version"] carries the local tag (+cpu, +cu130)

# subpackages and modules reachable as attributes: wc.data, wc.zoo, ...
_SUBMODULES = ("data", "errors", "forecasters", "history", "models", "ops", "optim", "results",
               "schedules", "study", "timing", "weights_io", "wsl", "zoo")
# names re-exported from a submodule: name -> module
_EXPORTS = {"Forecast": "optim", "ForecastSGD": "optim", "ForecastEMA": "averaging"}


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
    elif name in _EXPORTS:
        module = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'weightcast' has no attribute {name!r}")
    globals()[name] = module
    return module


def __dir__():
    return sorted({*globals(), *_SUBMODULES, *_EXPORTS})


def build_info() -> dict:
    """How this weightcast was built (backends, CUDA version and architectures, torch built against) and what
    loaded at run time; see :func:`weightcast._build.build_info`."""
    from ._build import build_info as _build_info

    return _build_info()


__all__ = ["Forecast", "ForecastSGD", "__version__", "build_info", "forecasters", "ops", "schedules"]
