"""Indicators against TA-Lib on real candles (relative error 1e-9 after warm-up)."""

import numpy as np
import pandas as pd
import pytest
import talib
from conftest import BTC_1H, BTC_5M, ETH_5M, real_candles

from engine.indicators import compute_indicators
from engine.kernels import indicators as kernels

FILES = [BTC_5M, ETH_5M, BTC_1H]


def assert_close(ours, ref, rtol=1e-9):
    ok = ~np.isnan(ref)
    assert np.array_equal(np.isnan(ours), ~ok), "warm-up (NaN) bars differ from TA-Lib"
    denom = np.maximum(np.abs(ref[ok]), 1e-12)
    worst = float(np.max(np.abs(ours[ok] - ref[ok]) / denom))
    assert worst <= rtol, f"max relative error {worst:.3g}"


@pytest.mark.parametrize("name", FILES)
def test_atr_tr_sma_ema_stddev_kama_match_talib(name):
    c = real_candles(name)
    h, l, cl = c.high, c.low, c.close
    assert_close(kernels.true_range_nb(h, l, cl), talib.TRANGE(h, l, cl))
    for n in (1, 2, 14, 28, 100):
        assert_close(kernels.atr_nb(h, l, cl, n), talib.ATR(h, l, cl, n))
    for n in (14, 28, 50, 100, 200):
        assert_close(kernels.ema_nb(cl, n), talib.EMA(cl, n))
    for n in (2, 20, 200):
        assert_close(kernels.sma_nb(cl, n), talib.SMA(cl, n))
    for n in (5, 20, 200):
        assert_close(kernels.stddev_nb(cl, n, 1.0), talib.STDDEV(cl, n, 1.0))
    assert_close(kernels.stddev_nb(cl, 20, 2.0), talib.STDDEV(cl, 20, 2.0))
    for n in (10, 30):
        kama, _ = kernels.kama_er_nb(cl, n)
        assert_close(kama, talib.KAMA(cl, n))


def test_efficiency_ratio_and_zscore_match_their_definitions(btc5m):
    cl = btc5m.close[:5000]
    _, er = kernels.kama_er_nb(cl, 10)
    s = pd.Series(cl)
    ref = (s - s.shift(10)).abs() / s.diff().abs().rolling(10).sum()
    ref = ref.where(~((s - s.shift(10)) >= s.diff().abs().rolling(10).sum()), 1.0)  # a straight rise is 1
    ok = ~np.isnan(er)
    assert np.allclose(er[ok], ref.to_numpy()[ok], rtol=1e-9, atol=1e-12)
    assert np.all((er[ok] >= 0) & (er[ok] <= 1))
    ind = compute_indicators(btc5m.slice(0, 5000))
    z = (cl - s.rolling(20).mean().to_numpy()) / talib.ATR(btc5m.high[:5000], btc5m.low[:5000], cl, 14)
    assert np.allclose(ind["zscore20"][30:], z[30:], rtol=1e-9)


@pytest.mark.parametrize("name", FILES)
def test_stddev_is_exact_where_talib_rounds(name):
    """TA-Lib's STDDEV comes from running sums of x and x^2, so on a window whose spread is
    tiny next to the price (a 2-bar window of BTC at 30,000 moving one cent) it carries
    cancellation error of about n * eps * mean(x^2) / std. Ours is two-pass: it is checked
    against exact rational arithmetic, and TA-Lib against it within 1e-9 or that bound."""
    from fractions import Fraction

    cl = real_candles(name).close
    eps = np.finfo(float).eps
    rng = np.random.default_rng(0)
    for n in (2, 5, 20):
        ours = kernels.stddev_nb(cl, n, 1.0)
        for i in rng.integers(n, len(cl), 200):
            w = [Fraction(v) for v in cl[i - n + 1:i + 1]]
            m = sum(w) / n
            exact = float(sum((v - m) ** 2 for v in w) / n) ** 0.5
            assert abs(ours[i] - exact) <= 1e-12 * max(exact, 1e-300) or (exact ** 2 < 1e-8 and ours[i] == 0)
        ta = talib.STDDEV(cl, n, 1.0)
        ok = (ta > 0) & (ours > 0)
        bound = np.maximum(1e-9 * ta[ok], n * eps * kernels.sma_nb(cl * cl, n)[ok] / (2 * ours[ok]))
        assert np.all(np.abs(ours[ok] - ta[ok]) <= bound)


def test_stddev_has_no_cancellation_error_on_large_prices():
    x = np.array([1e8 + 1, 1e8 + 2, 1e8 + 3, 1e8 + 5, 1e8 + 1.5])
    assert np.allclose(kernels.stddev_nb(x, 3, 1.0)[2:], [np.std(x[i - 2:i + 1]) for i in range(2, 5)], rtol=1e-12)


def test_regime_states_on_hand_built_series():
    flat = np.full(60, 100.0)
    up = 100.0 + np.arange(60) * 2.0  # a straight line: ER = 1
    choppy_up = 100.0 + np.arange(60) * 2.0 + np.where(np.arange(60) % 2, 9.0, -9.0)
    atr = np.full(60, 4.0)
    for series, state in ((flat, kernels.NOISE), (up, kernels.BREAKOUT_UP), (up[::-1].copy(), kernels.BREAKOUT_DOWN)):
        kama, er = kernels.kama_er_nb(series, 10)
        reg = kernels.regime_nb(kama, er, atr, 0.15, 0.5, 1)
        assert reg[-1] == state, (kernels.REGIME_NAMES[reg[-1]], kernels.REGIME_NAMES[state])
    kama, er = kernels.kama_er_nb(choppy_up, 10)
    assert er[-1] < 0.5
    reg = kernels.regime_nb(kama, er, np.full(60, 0.5), 0.15, 0.5, 1)
    assert reg[-1] == kernels.UPTREND
    reg = kernels.regime_nb(kama, er, np.full(60, 0.5), 0.15, 0.5, 1)
    kama_d, er_d = kernels.kama_er_nb(choppy_up[::-1].copy(), 10)
    assert kernels.regime_nb(kama_d, er_d, np.full(60, 0.5), 0.15, 0.5, 1)[-1] == kernels.DOWNTREND
    # warm-up bars are NOISE, never garbage
    assert np.all(reg[:10] == kernels.NOISE)


def test_regime_uses_only_past_bars(btc5m):
    ind = compute_indicators(btc5m.slice(0, 3000))
    ind_short = compute_indicators(btc5m.slice(0, 2000))
    for name, values in ind_short.items():
        assert np.array_equal(values, ind[name][:2000], equal_nan=True), name
