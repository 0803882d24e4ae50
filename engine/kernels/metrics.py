"""Performance metrics over an equity curve (numba, one pass)."""

from __future__ import annotations

import numpy as np
from numba import njit

YEAR_MS = 365.0 * 24 * 3600 * 1000  # crypto trades every day of the year


@njit(cache=True, nogil=True)
def max_drawdown_nb(equity):
    """Largest fall from a running peak, as a positive fraction (0.25 = -25%), and the bar
    where it bottomed. Equivalent to ``(1 - eq / np.maximum.accumulate(eq)).max()``."""
    peak = -np.inf
    worst = 0.0
    at = 0
    for i in range(len(equity)):
        e = equity[i]
        if e > peak:
            peak = e
        if peak > 0.0:
            dd = 1.0 - e / peak
            if dd > worst:
                worst = dd
                at = i
    return worst, at


@njit(cache=True, nogil=True)
def return_moments_nb(equity):
    """Mean, standard deviation (ddof=0) and downside deviation of per-bar simple returns."""
    n = len(equity) - 1
    if n < 1:
        return 0.0, 0.0, 0.0
    s = 0.0
    for i in range(n):
        s += equity[i + 1] / equity[i] - 1.0
    mean = s / n
    ss = 0.0
    down = 0.0
    for i in range(n):
        r = equity[i + 1] / equity[i] - 1.0
        ss += (r - mean) * (r - mean)
        if r < 0.0:
            down += r * r
    return mean, np.sqrt(ss / n), np.sqrt(down / n)


def performance(equity: np.ndarray, timeframe_ms: int, *, first_bar: int = 0,
                time: np.ndarray | None = None) -> dict[str, float]:
    """Return, drawdown and the annualized ratios (Sharpe, Sortino, Calmar) of an equity curve:
    ``equity`` from bar ``first_bar`` of the data on (the drawdown's bottom is named by the
    data's bar, and by its time when ``time``, the data's bar times, is given)."""
    bars_per_year = YEAR_MS / timeframe_ms
    start, end = float(equity[0]), float(equity[-1])
    total = end / start - 1.0 if start > 0 else 0.0
    years = (len(equity) - 1) / bars_per_year
    if years > 0 and end > 0 and start > 0:
        with np.errstate(over="ignore"):  # a few minutes of data annualize to infinity
            cagr = float(np.expm1(np.log(end / start) / years))
    else:
        cagr = 0.0
    mdd, mdd_bar = max_drawdown_nb(equity)
    mean, std, down = return_moments_nb(equity)
    root = np.sqrt(bars_per_year)
    return {
        "total_return": total,
        "cagr": cagr,
        "max_drawdown": float(mdd),
        "max_drawdown_bar": first_bar + int(mdd_bar),
        **({"max_drawdown_time": int(time[first_bar + int(mdd_bar)])} if time is not None else {}),
        "sharpe": float(mean / std * root) if std > 0 else 0.0,
        "sortino": float(mean / down * root) if down > 0 else 0.0,
        "calmar": float(cagr / mdd) if mdd > 0 and np.isfinite(cagr) else 0.0,
    }
