"""Kernel limits have one source (csrc/limits.h): weightcast._C exposes them, Python reads them from there, the
Triton kernels from Python, and the public ops refuse what the kernels cannot take."""
import pytest
import torch

from weightcast import _extension, ops
from weightcast.ops import limits, wnn_forecast

NAMES = {"lincomb_max_window": "LINCOMB_MAX_WINDOW", "wnn_max_window": "WNN_MAX_WINDOW",
         "wnn_max_hidden": "WNN_MAX_HIDDEN", "wnn_num_kinds": "WNN_NUM_KINDS"}


@pytest.mark.skipif(not _extension.extension_loaded(), reason=_extension.extension_status())
def test_python_reads_the_limits_of_the_extension():
    import weightcast._C as C

    for c_name, py_name in NAMES.items():
        assert getattr(C, c_name) == getattr(limits, py_name), c_name
        assert limits._WITHOUT_C[c_name] == getattr(C, c_name), f"the stand-in for {c_name} is stale"


def test_python_triton_and_the_ops_agree():
    assert ops.lincomb_forecast_max_window == limits.LINCOMB_MAX_WINDOW
    assert (wnn_forecast.MAX_WINDOW, wnn_forecast.MAX_HIDDEN, wnn_forecast.NUM_KINDS) == \
        (limits.WNN_MAX_WINDOW, limits.WNN_MAX_HIDDEN, limits.WNN_NUM_KINDS)
    pytest.importorskip("triton")
    from weightcast.kernels import lincomb_forecast, wnn_forecast as triton_wnn

    assert lincomb_forecast.MAX_WINDOW == limits.LINCOMB_MAX_WINDOW
    assert (triton_wnn.MAX_WINDOW, triton_wnn.MAX_HIDDEN, triton_wnn.KINDS) == \
        (limits.WNN_MAX_WINDOW, limits.WNN_MAX_HIDDEN, limits.WNN_NUM_KINDS)


def test_the_window_limit_is_enforced_at_each_level():
    w = limits.LINCOMB_MAX_WINDOW
    history = torch.zeros(w + 1, 8)
    with pytest.raises(ValueError, match=f"1..{w}"):
        ops.lincomb_forecast([torch.zeros(8)], history, [0], torch.zeros(w + 1), None)
    with pytest.raises(ValueError, match=f"window must be <= {w}"):
        import weightcast as wc

        wc.ForecastSGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1, forecaster="linear", window=w + 1)
    if _extension.extension_loaded():
        with pytest.raises(RuntimeError, match=rf"\[1, {w}\]"):
            torch.ops.weightcast_C.lincomb_forecast([torch.zeros(8)], history, [0], torch.zeros(w + 1))


def test_the_nowcast_limits_agree_everywhere():
    from weightcast.forecasters import nowcast

    values = (limits.NOWCAST_MAX_WINDOW, limits.NOWCAST_MAX_HIDDEN, limits.NOWCAST_MAX_EMBED,
              limits.NOWCAST_MAX_HORIZONS, limits.NOWCAST_NUM_TYPES)
    assert values == limits._NOWCAST_WITHOUT_C, "the stand-in for the nowcast limits is stale"
    assert limits.NOWCAST_NUM_TYPES == len(nowcast.PARAM_TYPES)
    if _extension.extension_loaded():
        assert tuple(torch.ops.weightcast_C.nowcast_limits()) == values
    pytest.importorskip("triton")
    from weightcast.kernels import nowcast_forecast as triton_nowcast

    assert (triton_nowcast.MAX_WINDOW, triton_nowcast.MAX_HIDDEN, triton_nowcast.MAX_EMBED,
            triton_nowcast.MAX_HORIZONS, triton_nowcast.NUM_TYPES) == values
    assert (triton_nowcast.D_CLAMP, triton_nowcast.EPS) == (nowcast.D_CLAMP, nowcast.EPS)
