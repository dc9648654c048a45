"""Kernel limits: the sizes the native and Triton kernels are built for.

The one definition is ``csrc/limits.h``; ``weightcast._C`` exposes it (``lincomb_max_window``, ``wnn_max_window``,
``wnn_max_hidden``, ``wnn_num_kinds``) and this module reads it from there. Without ``_C`` (a pure-Python
install) the values below stand in; ``tests/test_limits.py`` checks that they, ``_C`` and the Triton kernels
(which import this module) agree. The ``NOWCAST_*`` limits come from the op ``weightcast_C::nowcast_limits``.
"""
from __future__ import annotations

from .. import _extension

_WITHOUT_C = {"lincomb_max_window": 32, "wnn_max_window": 16, "wnn_max_hidden": 32, "wnn_num_kinds": 3}


def _limit(name: str) -> int:
    if _extension.extension_loaded():
        import weightcast._C as C

        return int(getattr(C, name, _WITHOUT_C[name]))  # a _C older than limits.h lacks them
    return _WITHOUT_C[name]


LINCOMB_MAX_WINDOW = _limit("lincomb_max_window")  # history rows lincomb_forecast combines
WNN_MAX_WINDOW = _limit("wnn_max_window")  # snapshots wnn_forecast's kernels take
WNN_MAX_HIDDEN = _limit("wnn_max_hidden")  # hidden units wnn_forecast's kernels keep in registers
WNN_NUM_KINDS = _limit("wnn_num_kinds")  # parameter kinds (one first-layer bias each)


_NOWCAST_WITHOUT_C = (16, 64, 64, 64, 6)  # csrc/limits.h kNowcastMax{Window,Hidden,Embed,Horizons}, kNowcastNumTypes


def _nowcast_limits() -> tuple[int, ...]:
    if _extension.extension_loaded():
        import torch

        if hasattr(torch.ops.weightcast_C, "nowcast_limits"):  # a _C older than the nowcast kernels lacks it
            return tuple(int(v) for v in torch.ops.weightcast_C.nowcast_limits())
    return _NOWCAST_WITHOUT_C


# nowcast_forecast's kernels: states in the window, hidden units (kept in registers / stack tiles), type-embedding
# width, horizons k_max (output rows), parameter types (rows of the type embedding)
NOWCAST_MAX_WINDOW, NOWCAST_MAX_HIDDEN, NOWCAST_MAX_EMBED, NOWCAST_MAX_HORIZONS, NOWCAST_NUM_TYPES = _nowcast_limits()
