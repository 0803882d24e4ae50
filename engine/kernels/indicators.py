"""Indicator kernels (numba). Seeding, smoothing and the order of float operations follow
TA-Lib (TRANGE, ATR, SMA, EMA, STDDEV, KAMA) so results agree with it to rounding; values
before the warm-up are NaN. Every kernel takes and returns contiguous float64 arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Regime states (NamedTuple-of-ints style, usable inside numba as plain ints).
NOISE, UPTREND, DOWNTREND, BREAKOUT_UP, BREAKOUT_DOWN = 0, 1, 2, 3, 4
REGIME_NAMES = ("NOISE", "UPTREND", "DOWNTREND", "BREAKOUT_UP", "BREAKOUT_DOWN")


@njit(cache=True, nogil=True)
def true_range_nb(high, low, close):
    """TA-Lib TRANGE: max(high - low, |high - prev close|, |low - prev close|); NaN at bar 0."""
    n = len(close)
    out = np.full(n, np.nan)
    for i in range(1, n):
        tr = high[i] - low[i]
        a = abs(high[i] - close[i - 1])
        b = abs(low[i] - close[i - 1])
        if a > tr:
            tr = a
        if b > tr:
            tr = b
        out[i] = tr
    return out


@njit(cache=True, nogil=True)
def atr_nb(high, low, close, period):
    """TA-Lib ATR: seed = mean of the first ``period`` true ranges (bars 1..period), then
    Wilder smoothing ``(prev * (period - 1) + tr) / period``. First value at bar ``period``."""
    n = len(close)
    out = np.full(n, np.nan)
    if period < 1 or n <= period:
        return out
    tr = true_range_nb(high, low, close)
    if period == 1:
        out[1:] = tr[1:]
        return out
    total = 0.0
    for i in range(1, period + 1):
        total += tr[i]
    prev = total / period
    out[period] = prev
    for i in range(period + 1, n):
        prev *= period - 1
        prev += tr[i]
        prev /= period
        out[i] = prev
    return out


@njit(cache=True, nogil=True)
def sma_nb(x, period):
    """TA-Lib SMA (running total). Numba equivalent to ``pd.Series(x).rolling(period).mean()``."""
    n = len(x)
    out = np.full(n, np.nan)
    if period < 1 or n < period:
        return out
    total = 0.0
    for i in range(period - 1):
        total += x[i]
    for i in range(period - 1, n):
        total += x[i]
        out[i] = total / period
        total -= x[i - period + 1]
    return out


@njit(cache=True, nogil=True)
def ema_nb(x, period):
    """TA-Lib EMA: seeded with the SMA of the first ``period`` values, k = 2 / (period + 1)."""
    n = len(x)
    out = np.full(n, np.nan)
    if period < 1 or n < period:
        return out
    k = 2.0 / (period + 1)
    total = 0.0
    for i in range(period):
        total += x[i]
    prev = total / period
    out[period - 1] = prev
    for i in range(period, n):
        prev = (x[i] - prev) * k + prev
        out[i] = prev
    return out


@njit(cache=True, nogil=True)
def stddev_nb(x, period, nbdev=1.0):
    """Population standard deviation over ``period`` bars, two-pass per window (mean first,
    then the mean squared deviation), 0 where the variance is below 1e-8 as in TA-Lib STDDEV.
    Numba equivalent to ``pd.Series(x).rolling(period).std(ddof=0)``, without the
    cancellation error of running sums of x and x^2 on prices far from zero."""
    n = len(x)
    out = np.full(n, np.nan)
    if period < 1 or n < period:
        return out
    for i in range(period - 1, n):
        total = 0.0
        for j in range(i - period + 1, i + 1):
            total += x[j]
        mean = total / period
        ss = 0.0
        for j in range(i - period + 1, i + 1):
            d = x[j] - mean
            ss += d * d
        var = ss / period
        out[i] = np.sqrt(var) * nbdev if var >= 0.00000001 else 0.0
    return out


@njit(cache=True, nogil=True)
def kama_er_nb(x, period):
    """TA-Lib KAMA (fast 2, slow 30) and its efficiency ratio ER = |x[t] - x[t-period]| /
    sum(|x[j] - x[j-1]|) over the window. Both start at bar ``period``."""
    n = len(x)
    kama = np.full(n, np.nan)
    er = np.full(n, np.nan)
    if period < 2 or n <= period:
        return kama, er
    const_max = 2.0 / (30.0 + 1.0)
    const_diff = 2.0 / (2.0 + 1.0) - const_max
    sum_roc = 0.0
    for i in range(period):
        sum_roc += abs(x[i] - x[i + 1])
    today = period
    prev = x[today - 1]
    trailing_value = x[0]
    trailing = 1
    roc = x[today] - trailing_value
    e = 1.0 if (sum_roc <= roc or (-0.00000001 < sum_roc < 0.00000001)) else abs(roc / sum_roc)
    sc = e * const_diff + const_max
    sc *= sc
    prev = (x[today] - prev) * sc + prev
    kama[today] = prev
    er[today] = e
    for today in range(period + 1, n):
        t2 = x[trailing]
        trailing += 1
        roc = x[today] - t2
        sum_roc -= abs(trailing_value - t2)
        sum_roc += abs(x[today] - x[today - 1])
        trailing_value = t2
        e = 1.0 if (sum_roc <= roc or (-0.00000001 < sum_roc < 0.00000001)) else abs(roc / sum_roc)
        sc = e * const_diff + const_max
        sc *= sc
        prev = (x[today] - prev) * sc + prev
        kama[today] = prev
        er[today] = e
    return kama, er


@njit(cache=True, nogil=True)
def zscore_nb(close, sma, atr):
    """(close - SMA) / ATR, NaN where either is missing or ATR is 0."""
    n = len(close)
    out = np.full(n, np.nan)
    for i in range(n):
        a = atr[i]
        if a > 0.0 and not np.isnan(sma[i]):
            out[i] = (close[i] - sma[i]) / a
    return out


@njit(cache=True, nogil=True)
def regime_nb(kama, er, atr, theta, er_threshold, lag):
    """Five-state regime from the KAMA slope normalized by ATR, s = (kama[t] - kama[t-lag]) / atr[t],
    and the efficiency ratio:

    |s| < theta -> NOISE; s >= theta -> UPTREND, or BREAKOUT_UP when ER >= er_threshold;
    s <= -theta -> DOWNTREND, or BREAKOUT_DOWN when ER >= er_threshold.
    Bars before the inputs warm up are NOISE (-1 is never used so the array stays int8-safe).
    """
    n = len(kama)
    out = np.zeros(n, dtype=np.int8)
    for i in range(lag, n):
        a = atr[i]
        k0 = kama[i - lag]
        if not (a > 0.0) or np.isnan(k0) or np.isnan(kama[i]) or np.isnan(er[i]):
            continue
        s = (kama[i] - k0) / a
        if s >= theta:
            out[i] = BREAKOUT_UP if er[i] >= er_threshold else UPTREND
        elif s <= -theta:
            out[i] = BREAKOUT_DOWN if er[i] >= er_threshold else DOWNTREND
    return out
