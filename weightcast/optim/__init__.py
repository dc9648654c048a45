"""Optimizers: :class:`ForecastSGD` (SGD with forecast jumps) and :class:`Forecast` (jumps for any optimizer)."""
from .sgd import ForecastSGD
from .wrapper import Forecast

__all__ = ["Forecast", "ForecastSGD"]
