"""The performance figures (engine/kernels/metrics.py) against their textbook definitions
written with pandas, on random equity curves and on a curve worked by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from engine.kernels.metrics import YEAR_MS, performance

HOUR = 3_600_000


def _reference(equity: np.ndarray, timeframe_ms: int) -> dict:
    """Return over the curve; CAGR from it and the years the bars span; maximum drawdown from
    the running peak; Sharpe and Sortino of the simple per-bar returns (population deviation,
    downside deviation over all bars with the positive returns as zero), annualized by the
    square root of the bars in a year; Calmar = CAGR / maximum drawdown, undefined (0, as the
    ratios without a deviation) where there is no drawdown or the CAGR is too large to be a number
    (a few hours of +28% annualize to infinity)."""
    s = pd.Series(equity)
    r = s.pct_change().dropna()
    per_year = YEAR_MS / timeframe_ms
    years = (len(s) - 1) / per_year
    with np.errstate(over="ignore"):  # a few hours annualize to infinity, as in the engine
        # (end / start) ** (1 / years) - 1, written so that a curve a few ulps off flat does not
        # lose its digits to the subtraction (its Calmar divides by as small a drawdown)
        cagr = float(np.expm1(np.log(s.iloc[-1] / s.iloc[0]) / years))
    dd = 1 - s / s.cummax()
    down = math.sqrt((np.minimum(r, 0.0) ** 2).mean())
    std = r.std(ddof=0)
    return {
        "total_return": s.iloc[-1] / s.iloc[0] - 1,
        "cagr": cagr,
        "max_drawdown": dd.max(),
        "max_drawdown_bar": int(dd.idxmax()) if dd.max() > 0 else 0,
        "sharpe": r.mean() / std * math.sqrt(per_year) if std > 0 else 0.0,
        "sortino": r.mean() / down * math.sqrt(per_year) if down > 0 else 0.0,
        "calmar": cagr / dd.max() if dd.max() > 0 and math.isfinite(cagr) else 0.0,
    }


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.integers(3, 300), elements=st.floats(50.0, 150.0)))
def test_the_figures_are_their_definitions(equity):
    got = performance(equity, HOUR)
    want = _reference(equity, HOUR)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_a_curve_worked_by_hand():
    # 100 -> 110 -> 99 -> 121 on daily bars: -10% from the peak of 110 at bar 2
    eq = np.array([100.0, 110.0, 99.0, 121.0])
    got = performance(eq, 24 * HOUR, first_bar=10, time=np.arange(20) * 1000)
    assert got["total_return"] == pytest.approx(0.21)
    assert got["max_drawdown"] == pytest.approx(0.1) and got["max_drawdown_bar"] == 12
    assert got["max_drawdown_time"] == 12_000  # the data's bar, not the curve's
    returns = np.array([0.1, -0.1, 121 / 99 - 1])
    assert got["sharpe"] == pytest.approx(returns.mean() / returns.std() * math.sqrt(365))
    assert got["sortino"] == pytest.approx(returns.mean() / math.sqrt(0.01 / 3) * math.sqrt(365))
    assert got["cagr"] == pytest.approx(1.21 ** (365 / 3) - 1)


def test_an_infinite_cagr_has_no_calmar():
    # hypothesis found it: +28% in three hours is an infinite CAGR; a Calmar of inf (or nan) would
    # sort first in the optimizer's tables and print as "inf" in every report
    got = performance(np.array([50.0, 64.0, 50.0, 64.0]), HOUR)
    assert got["cagr"] == math.inf and got["max_drawdown"] == pytest.approx(14 / 64) and got["calmar"] == 0.0


def test_a_flat_or_rising_curve_has_no_drawdown_and_no_undefined_ratio():
    flat = performance(np.full(10, 100.0), HOUR)
    assert (flat["max_drawdown"], flat["sharpe"], flat["sortino"], flat["calmar"]) == (0.0, 0.0, 0.0, 0.0)
    rising = performance(np.linspace(100.0, 200.0, 50), HOUR)
    assert rising["max_drawdown"] == 0.0 and rising["sortino"] == 0.0 and rising["sharpe"] > 0
