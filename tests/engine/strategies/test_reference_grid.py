"""The correctness anchor (GRID_SEMANTICS.md): the reference arithmetic grid gives the same
fills and equity in the pure-Python oracle, backtesting.py and the numba kernel."""

import numpy as np
import pytest
from oracle import backtesting_reference_grid, reference_grid

from engine.data import Candles
from engine.kernels import spot_grid as spot_kernel
from engine.strategies.spot_grid import SpotGridConfig, run_spot_grid

CAPITAL, FEE, LOT = 100_000.0, 0.001, 1e-8


def kernel_run(c, levels, lower=None, upper=None, **fills):
    o0 = float(c.open[0])
    cfg = SpotGridConfig(lower=lower or 0.8 * o0, upper=upper or 1.2 * o0, levels=levels,
                         capital=CAPITAL, fee=FEE, lot=LOT, **fills)
    return run_spot_grid(c, cfg)


def fills_of(result):
    t = result.trades
    return sorted(zip(t["bar"].tolist(), t["level"].tolist(), t["side"].tolist(), t["price"].tolist(),
                      t["qty"].tolist(), strict=True))


def oracle_run(c, levels):
    o0 = float(c.open[0])
    fills, equity = reference_grid(c.open, c.high, c.low, c.close, 0.8 * o0, 1.2 * o0, levels, CAPITAL, FEE, LOT)
    return sorted(fills), equity


def random_candles_with_gaps(n, seed, vol=0.8):
    rng = np.random.default_rng(seed)
    dt = 1 / (365 * 24 * 12)
    steps = rng.standard_normal((n, 3)) * vol * np.sqrt(dt / 3)
    path = 20_000 * np.exp(np.cumsum(steps.ravel())).reshape(n, 3)
    close = path[:, -1]
    open_ = np.r_[20_000.0, close[:-1]]
    # an exchange outage: the price jumps across the gap
    open_[n // 2] *= 1.03
    high = np.maximum(path.max(axis=1), open_)
    low = np.minimum(path.min(axis=1), open_)
    t = 1_600_000_000_000 + np.arange(n, dtype=np.int64) * 300_000
    keep = np.ones(n, bool)
    keep[rng.choice(n, n // 50, replace=False)] = False
    keep[n // 2 - 30:n // 2] = False
    keep[0] = True
    return Candles(time=t[keep], open=open_[keep], high=high[keep], low=low[keep], close=close[keep],
                   volume=np.ones(keep.sum()), timeframe_ms=300_000, source=f"random-{seed}")


@pytest.mark.parametrize("levels", [20, 50])
def test_kernel_equals_oracle_on_real_btc_and_eth(btc5m, eth5m, levels):
    for c in (btc5m, eth5m):
        r = kernel_run(c, levels)
        fills, equity = oracle_run(c, levels)
        assert len(fills) > 50
        assert fills_of(r) == fills
        assert abs(r.equity[-1] - equity[-1]) < 1e-6
        assert np.max(np.abs(r.equity - equity)) < 1e-6


def test_kernel_equals_oracle_with_200_levels(btc1h):
    c = btc1h.slice(0, 20_000)
    r = kernel_run(c, 200)
    fills, equity = oracle_run(c, 200)
    assert len(fills) > 1000
    assert fills_of(r) == fills
    assert np.max(np.abs(r.equity - equity)) < 1e-6


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kernel_equals_oracle_on_random_data_with_gaps(seed):
    c = random_candles_with_gaps(30_000, seed)
    for levels in (7, 40, 120):
        r = kernel_run(c, levels)
        fills, equity = oracle_run(c, levels)
        assert fills_of(r) == fills
        assert np.max(np.abs(r.equity - equity)) < 1e-6


def test_kernel_equals_oracle_when_prices_touch_levels_exactly():
    """Round prices on a grid of round levels: many bars reach a level exactly (low == level)."""
    c = round_level_candles()
    lower, upper, levels = 18_000.0, 22_000.0, 81  # levels every 50
    assert np.isin(c.low, np.linspace(lower, upper, levels)).sum() > 100
    r = kernel_run(c, levels, lower, upper)
    fills, equity = reference_grid(c.open, c.high, c.low, c.close, lower, upper, levels, CAPITAL, FEE, LOT)
    assert len(fills) > 100
    assert fills_of(r) == sorted(fills)
    assert np.max(np.abs(r.equity - equity)) < 1e-6


def round_level_candles():
    """Prices in steps of 10 on a grid of levels every 50: many bars reach a level exactly."""
    c = random_candles_with_gaps(20_000, 5, vol=0.6)
    for name in ("open", "high", "low", "close"):
        setattr(c, name, np.round(getattr(c, name) / 10) * 10)
    c.high = np.maximum(c.high, np.maximum(c.open, c.close))
    c.low = np.minimum(c.low, np.minimum(c.open, c.close))
    return c


@pytest.mark.parametrize("rule,tick,depth,seed", [("through", 5.0, 0.001, 0), ("through", 10.0, 0.001, 0),
                                                  ("queue", 0.0, 0.001, 0), ("queue", 0.0, 0.003, 7)])
def test_kernel_equals_oracle_under_each_fill_model(btc5m, rule, tick, depth, seed):
    """Through and queue fills, trade for trade, on real BTC (levels rounded to the tick, so
    the oracle's linspace is the kernel's grid) and on prices that land on levels exactly."""
    cases = [(btc5m.slice(0, 40_000), 25_000.0, 45_000.0, 41), (round_level_candles(), 18_000.0, 22_000.0, 81)]
    for c, lower, upper, levels in cases:
        fill = dict(fill_rule=rule, tick=tick, queue_depth=depth, fill_seed=seed)
        r = kernel_run(c, levels, lower, upper, **fill)
        fills, equity = reference_grid(c.open, c.high, c.low, c.close, lower, upper, levels, CAPITAL, FEE, LOT,
                                       rule=rule, t=c.time, tick=tick, depth=depth, seed=seed)
        touch = kernel_run(c, levels, lower, upper, tick=tick)
        assert 100 < len(fills) < touch.counters["fills"]  # the model fills less than touch
        assert fills_of(r) == sorted(fills)
        assert np.max(np.abs(r.equity - equity)) < 1e-6


@pytest.mark.parametrize("case", ["btc5m", "eth5m", "random"])
def test_backtesting_py_agrees_with_the_kernel(case, btc5m, eth5m):
    c = {"btc5m": btc5m, "eth5m": eth5m}.get(case) or random_candles_with_gaps(12_000, 9)
    c = c.slice(0, 12_000)
    for levels in (20, 45):
        r = kernel_run(c, levels)
        o0 = float(c.open[0])
        equity, n_fills = backtesting_reference_grid(c.open, c.high, c.low, c.close, 0.8 * o0, 1.2 * o0,
                                                     levels, CAPITAL, FEE, LOT)
        assert n_fills == r.counters["fills"] > 10
        assert abs(equity - r.equity[-1]) < 1e-6


def test_reference_grid_starting_rules(btc5m):
    """Orders go in at the close of bar 0; slots above the price buy at bar 1's open."""
    c = btc5m.slice(0, 500)
    r = kernel_run(c, 20)
    first = r.trades[r.trades["bar"] == 1]
    above = r.levels[:-1] > c.close[0]
    assert len(first) >= above.sum() > 0
    assert np.all(first["price"] <= c.open[1])  # a buy above the open fills at the open
    o = r.orders_at(1)
    assert len(o) == len(r.levels) - 1 and np.all(o["placed"] == 0)
    assert np.all(r.trades["role"][r.trades["side"] > 0] == spot_kernel.GRID_BUY)
