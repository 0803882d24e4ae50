"""Invariants of the spot-grid backtest on random candles and random settings (hypothesis)."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data import Candles
from engine.kernels import spot_grid as spot_kernel
from engine.strategies.errors import ParamError
from engine.strategies.spot_grid import SpotGridConfig, run_spot_grid


@st.composite
def candles(draw, min_bars=30, max_bars=400):
    n = draw(st.integers(min_bars, max_bars))
    seed = draw(st.integers(0, 2**32 - 1))
    vol = draw(st.sampled_from([0.002, 0.01, 0.03]))
    rng = np.random.default_rng(seed)
    steps = rng.standard_normal((n, 3)) * vol
    if draw(st.booleans()):  # a crash or a rally in the middle
        steps[n // 2, 0] += draw(st.sampled_from([-0.25, 0.25]))
    path = 100.0 * np.exp(np.cumsum(steps.ravel())).reshape(n, 3)
    close = np.round(path[:, -1], 2)
    open_ = np.r_[100.0, close[:-1]]
    if draw(st.booleans()):  # prices that land on round levels exactly
        close = np.round(close)
        open_ = np.round(open_)
    high = np.maximum(np.round(path.max(axis=1), 2), np.maximum(open_, close))
    low = np.minimum(np.round(path.min(axis=1), 2), np.minimum(open_, close))
    t = np.arange(n, dtype=np.int64) * 60_000
    return Candles(time=t, open=open_, high=high, low=low, close=close, volume=np.ones(n),
                   timeframe_ms=60_000, source="hypothesis", symbol="BTC/USDT")


@st.composite
def configs(draw):
    mode = draw(st.sampled_from(["range", "lower-only"]))
    spacing = draw(st.sampled_from(["arithmetic", "geometric", "atr"]))
    cfg = dict(
        mode=mode, spacing=spacing, levels=draw(st.integers(2, 30)),
        range_pct=draw(st.sampled_from([0.02, 0.1, 0.3])),
        capital=draw(st.sampled_from([100.0, 10_000.0])),
        fee=draw(st.sampled_from([0.0, 0.001, 0.0075])),
        taker_fee=draw(st.sampled_from([None, 0.002])),
        slippage=draw(st.sampled_from([0.0, 0.001])),
        lot=draw(st.sampled_from([0.0, 1e-8, 0.01])),
        tick=draw(st.sampled_from([0.0, 0.01])),
        min_notional=draw(st.sampled_from([0.0, 5.0])),
        qty_mode=draw(st.sampled_from(["quote", "base"])),
        atr_period=draw(st.sampled_from([3, 14])),
        atr_k=draw(st.sampled_from([0.5, 1.0, 3.0])),
        trailing=draw(st.sampled_from(["none", "up", "down", "both"])),
        recenter=draw(st.sampled_from([None, 0.0, 1.0, 3.0])),
        consumed=draw(st.sampled_from([None, 0.0, 0.5])),
        dead_zone=draw(st.sampled_from([0.0, 0.0, 0.003])),
        fill_rule=draw(st.sampled_from(["touch", "through", "queue"])),
        stop_action=draw(st.sampled_from(["sell", "keep"])),
    )
    if draw(st.booleans()):
        cfg["stop_loss"] = draw(st.sampled_from([60.0, 85.0, 95.0]))
    if draw(st.booleans()):
        cfg["take_profit"] = draw(st.sampled_from([105.0, 115.0, 140.0]))
    return SpotGridConfig(**cfg)


def run(c, cfg):
    """The result, or None for settings the validator refuses (e.g. a stop above the price)."""
    if cfg.spacing == "atr" and cfg.atr_period >= len(c) - 2:
        return None
    try:
        return run_spot_grid(c, cfg)
    except ParamError:
        return None


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(candles(), configs())
def test_cash_and_position_change_only_by_fills_fees_and_price(c, cfg):
    r = run(c, cfg)
    if r is None:
        return
    t = r.trades
    n = len(c)
    d_cash = np.zeros(n)
    d_pos = np.zeros(n)
    np.add.at(d_cash, t["bar"], -t["side"] * t["price"] * t["qty"] - t["fee"])
    np.add.at(d_pos, t["bar"], t["side"] * t["qty"])
    scale = cfg.capital
    assert np.allclose(r.cash, cfg.capital + np.cumsum(d_cash), rtol=0, atol=1e-9 * scale)
    assert np.allclose(r.position, np.cumsum(d_pos), rtol=0, atol=1e-9)
    # equity moves by the position's price change plus each fill's mark-to-close minus its fee
    eq = r.equity
    pos = r.position
    move = np.zeros(n)
    move[1:] = pos[:-1] * np.diff(c.close)
    np.add.at(move, t["bar"], t["side"] * t["qty"] * (c.close[t["bar"]] - t["price"]) - t["fee"])
    assert np.allclose(np.diff(eq), move[1:], rtol=0, atol=1e-9 * scale)
    m = r.metrics
    assert abs(m["final_equity"] - (cfg.capital + m["realized_pnl"] + m["floating_pnl"])) < 1e-8 * scale
    # no balance ever goes negative
    assert r.cash.min() >= -1e-9 * scale
    assert r.position.min() >= -1e-12
    assert np.all(t["fee"] >= 0) and np.all(t["qty"] > 0)


@SETTINGS
@given(candles(), configs())
def test_every_fill_comes_from_a_resting_order_of_an_earlier_close(c, cfg):
    r = run(c, cfg)
    if r is None:
        return
    o = r.orders
    resting = {(int(x["end"]), int(x["level"]),
                int(x["side"])): x for x in o if x["status"] == spot_kernel.ORDER_FILLED}
    for tr in r.trades:
        if tr["role"] in (spot_kernel.GRID_BUY, spot_kernel.GRID_SELL, spot_kernel.REBUY):
            order = resting.pop((int(tr["bar"]), int(tr["level"]), int(tr["side"])))
            assert order["placed"] < tr["bar"]  # decided at an earlier close: no look-ahead
            assert tr["qty"] == order["qty"]
            if tr["side"] > 0:
                assert tr["price"] == min(c.open[tr["bar"]], order["price"])
            else:
                assert tr["price"] == max(c.open[tr["bar"]], order["price"])
            assert any(x["level"] == tr["level"] and x["side"] == tr["side"] for x in r.orders_at(int(tr["bar"])))
    assert not resting  # every filled order has its trade


@SETTINGS
@given(candles(), configs())
def test_every_grid_sell_closes_an_earlier_buy_of_its_slot(c, cfg):
    cfg.trailing, cfg.recenter, cfg.consumed = "none", 0.0, 0.0  # a fixed grid: slots never move
    r = run(c, cfg)
    if r is None:
        return
    open_buys: dict[int, list[int]] = {}
    for tr in r.trades:
        level = int(tr["level"])
        if tr["role"] in (spot_kernel.GRID_BUY, spot_kernel.REBUY):
            assert not open_buys.get(level), "a slot bought twice without selling"
            open_buys.setdefault(level, []).append(int(tr["bar"]))
        elif tr["role"] == spot_kernel.GRID_SELL:
            assert open_buys.get(level), f"sell at level {level} without a buy"
            assert open_buys[level].pop() < tr["bar"]  # never inside one bar


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candles(min_bars=60), configs(), st.floats(0.2, 0.9))
def test_prefix_invariance_no_look_ahead(c, cfg, frac):
    full = run(c, cfg)
    k = int(len(c) * frac)
    part_c = c.slice(0, k)
    if full is None or (cfg.spacing == "atr" and cfg.atr_period >= k - 2):
        return
    part = run_spot_grid(part_c, cfg)
    ft = full.trades[full.trades["bar"] < k]
    assert np.array_equal(ft, part.trades)
    for name in ("equity", "cash", "position", "cost"):
        assert np.array_equal(getattr(full, name)[:k], getattr(part, name)), name


def test_prefix_invariance_on_real_candles_with_every_feature(btc5m):
    cfg = SpotGridConfig(spacing="atr", levels=40, atr_k=1.2, trailing="both", recenter=4, dead_zone=0.001,
                         stop_loss=10_000, fee=0.001, tick=0.01, lot=1e-5, min_notional=5)
    full = run_spot_grid(btc5m, cfg)
    assert full.counters["trail_up"] > 0 and full.counters["fills"] > 1000
    for k in (5_000, 33_333, 60_001):
        part = run_spot_grid(btc5m.slice(0, k), cfg)
        assert np.array_equal(full.trades[full.trades["bar"] < k], part.trades)
        assert np.array_equal(full.equity[:k], part.equity)
