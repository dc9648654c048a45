"""Registry of forecasters: ``weightcast.forecasters.get("linear", **kwargs)``."""
from __future__ import annotations

from typing import Callable

from .base import Forecaster
from .farcast import FarcastForecaster
from .io import ForecasterFileError
from .linear import LinearForecaster, least_squares_line_coefficients
from .nowcast import NowcastForecaster
from .nowcast_graph import NowcastGraphForecaster
from .wnn import WNNForecaster

_REGISTRY: dict[str, Callable[..., Forecaster]] = {"linear": LinearForecaster, "farcast": FarcastForecaster,
                                                   "wnn": WNNForecaster, "nowcast": NowcastForecaster,
                                                   "nowcast-graph": NowcastGraphForecaster}


def _latent(**kwargs) -> Forecaster:
    from .latent import LatentForecaster  # imports weightcast.wsl on first use only

    return LatentForecaster(**kwargs)


_REGISTRY["latent"] = _latent


def register(name: str, factory: Callable[..., Forecaster]) -> None:
    """Make ``get(name, **kwargs)`` return ``factory(**kwargs)``."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Names accepted by :func:`get` (and by ``ForecastSGD(forecaster=...)``)."""
    return sorted(_REGISTRY)


def get(name: str | Forecaster, **kwargs) -> Forecaster:
    """The forecaster registered as ``name`` built with ``kwargs``; a Forecaster instance is returned as is."""
    if isinstance(name, Forecaster):
        if kwargs:
            raise TypeError("keyword arguments are for building a forecaster by name, not for an instance")
        return name
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown forecaster {name!r}; choose one of {names()} or pass a Forecaster instance")
    return _REGISTRY[name](**kwargs)


__all__ = ["FarcastForecaster", "Forecaster", "ForecasterFileError", "LinearForecaster", "NowcastForecaster",
           "NowcastGraphForecaster", "WNNForecaster", "get", "least_squares_line_coefficients", "names", "register"]
