"""Spot-grid features on hand-built candles whose answer can be worked out by hand."""

import numpy as np
import pytest

from engine.data import Candles
from engine.kernels import grid
from engine.kernels import spot_grid as spot_kernel
from engine.strategies.errors import ParamError
from engine.strategies.spot_grid import SpotGridConfig, run_spot_grid


def bars(*ohlc, tf=60_000):
    a = np.array(ohlc, dtype=float)
    n = len(a)
    return Candles(time=np.arange(n, dtype=np.int64) * tf, open=a[:, 0].copy(), high=a[:, 1].copy(),
                   low=a[:, 2].copy(), close=a[:, 3].copy(), volume=np.ones(n), timeframe_ms=tf, source="hand")


def flat(p):
    return (p, p, p, p)


def roles(r):
    return [spot_kernel.ROLE_NAMES[x] for x in r.trades["role"]]


# --- grid maths -----------------------------------------------------------------------------

def test_levels_quantities_and_profit_per_grid():
    a = grid.grid_levels(100, 200, 5)
    assert a.tolist() == [100, 125, 150, 175, 200]
    geo = grid.grid_levels(100, 400, 3, "geometric")
    assert np.allclose(geo, [100, 200, 400])
    lo, hi = grid.profit_range(a, 0.001)
    p = grid.profit_per_grid(a, 0.001)
    assert p[0] == hi and p[-1] == lo  # arithmetic: best at the bottom, worst at the top
    assert np.isclose(hi, 125 / 100 * 0.999 - 1.001)
    glo, ghi = grid.profit_range(grid.grid_levels(100, 300, 12, "geometric"), 0.001)
    assert np.isclose(glo, ghi)
    q = grid.level_quantities(a, 1000.0, 0.01)
    assert np.allclose(q, [2.0, 1.6, 1.33, 1.14, 1.0], rtol=0, atol=1e-12)
    assert np.allclose(grid.level_quantities(a, 1000.0, 0, grid.EQUAL_BASE), 1000 / 5 / 150)
    t = grid.grid_levels(100, 101, 4, tick=0.25)
    assert t.tolist() == [100.0, 100.25, 100.75, 101.0]
    with pytest.raises(ValueError, match="tick"):
        grid.grid_levels(100, 101, 40, tick=0.5)
    # ATR spacing: max(k x ATR, floor x price), the grid centred on the price: with ATR about 2
    # on bars around 1000, the floor (0.5% of 1000 = 5) wins
    c = bars(*[(1000, 1001, 999, 1000)] * 20)
    r = run_spot_grid(c, SpotGridConfig(spacing="atr", atr_period=5, atr_k=1.0, atr_floor=0.005, levels=5,
                                        lot=0.0, fee=0.0, capital=1000))
    first = np.sort(r.orders["price"][r.orders["placed"] == r.params.start_bar])
    assert np.allclose(first, [990, 995, 1000, 1005]) and np.allclose(np.diff(first), 5.0)


# --- fills, timing, lower-only ----------------------------------------------------------------

def test_lower_only_buys_below_and_takes_profit_one_spacing_up():
    c = bars(flat(100), (100, 100, 95, 95), (95, 98.2, 95, 97.5), (97.5, 99, 96, 98.5), flat(97.5))
    r = run_spot_grid(c, SpotGridConfig(mode="lower-only", lower=90, upper=100, levels=5, lot=0.0,
                                        fee=0.0, capital=1000, recenter=0, consumed=0))
    t = r.trades
    # levels 90 92 94 96 98 (anchor 100): bar 1 buys 98 and 96, bar 2 sells the 96 slot at 98,
    # bar 3 sells nothing (the 98 slot sells at 100) and buys 96 again
    assert [(int(b), int(s), float(p)) for b, s, p in zip(t["bar"], t["side"], t["price"], strict=True)] == [
        (1, 1, 98.0), (1, 1, 96.0), (2, -1, 98.0), (3, 1, 96.0)]
    assert r.orders_at(1)["price"].max() == 98.0  # no buy above the price
    assert np.isclose(t["pnl"][2], 200 / 96 * 2)  # quantity 1000/5/96, bought 96 sold 98


def test_no_round_trip_inside_one_bar_and_follow_ups_wait_a_bar():
    c = bars(flat(100), (100, 106, 94, 100), (100, 106, 94, 100))
    r = run_spot_grid(c, SpotGridConfig(lower=90, upper=110, levels=5, fee=0.0, lot=0.0, capital=1000))
    b1 = r.trades[r.trades["bar"] == 1]
    assert len(b1) == 3  # slot 105 (above the price) buys at the open, then 100 and 95; no sell
    assert np.all(b1["side"] == 1)
    b2 = r.trades[r.trades["bar"] == 2]
    assert set(b2["side"].tolist()) == {-1}  # the follow-up sells fill on bar 2


def test_fill_rule_through_needs_a_tick_beyond_the_level():
    c = bars(flat(100), (100, 100, 95, 96), (96, 96, 94.99, 96), (96, 96, 94.98, 96))
    cfg = dict(lower=95, upper=105, levels=3, fee=0.0, lot=0.0, capital=1000, tick=0.01)
    touch = run_spot_grid(c, SpotGridConfig(**cfg))
    through = run_spot_grid(c, SpotGridConfig(**cfg, fill_rule="through"))
    buy_bar = lambda r: int(r.trades["bar"][(r.trades["side"] > 0) & (r.trades["price"] == 95.0)][0])  # noqa: E731
    assert buy_bar(touch) == 1 and buy_bar(through) == 3


def test_queue_fills_never_at_a_touch_surely_beyond_the_depth_by_chance_between():
    """The queue model on hand-built bars: the level at 95 is touched (bar 1), gone through by
    half the depth (bar 2: it fills when the seeded draw, worked out by the oracle's own hash,
    is below 1/2), then by the whole depth (bar 3: it fills whatever the seed)."""
    from oracle import queue_draw

    c = bars(flat(100), (100, 100, 95, 96), (96, 96, 95 - 0.5 * 0.095, 96), (96, 96, 95 - 0.095, 96))
    cfg = dict(lower=95, upper=105, levels=3, fee=0.0, lot=0.0, capital=1000, fill_rule="queue", queue_depth=0.001)
    seen = set()
    for seed in range(12):
        r = run_spot_grid(c, SpotGridConfig(**cfg, fill_seed=seed))
        buys = r.trades["bar"][(r.trades["side"] > 0) & (r.trades["price"] == 95.0)]
        want = 2 if queue_draw(seed, int(c.time[2]), 95.0) < 0.5 else 3
        assert buys.tolist() == [want], seed
        seen.add(want)
    assert seen == {2, 3}  # some seeds fill half-way through, some wait for the whole depth


def test_tick_and_lot_rounding_and_min_notional():
    c = bars(flat(100), (100, 101, 93, 94), flat(94))
    r = run_spot_grid(c, SpotGridConfig(lower=91.3, upper=107.9, levels=6, fee=0.001, lot=0.001, tick=0.5,
                                        capital=1000, min_notional=170))
    o = r.orders
    assert np.allclose(o["price"] / 0.5, np.round(o["price"] / 0.5))
    assert np.allclose(o["qty"] / 0.001, np.round(o["qty"] / 0.001))
    # 1000/6 = 166.67 per level is below the 170 minimum: every order is refused and counted
    assert len(r.trades) == 0 and r.counters["refused_min_notional"] == 5


def test_an_order_the_account_cannot_pay_for_is_refused_and_counted():
    c = bars(flat(100), (100, 100, 50, 60), flat(60))
    # 19 slots of capital/20 each, plus 6% fee on each, need 1.007 x the capital
    r = run_spot_grid(c, SpotGridConfig(lower=55, upper=145, levels=20, fee=0.06, lot=0.0, capital=1000))
    assert r.counters["refused_balance"] == 1
    assert r.cash.min() >= 0 and r.position.min() >= 0


# --- trailing, recentering, dead zone --------------------------------------------------------

def test_trailing_up_shifts_the_grid_and_buys_inventory_again():
    c = bars(flat(100), (100, 108, 100, 108), (108, 111, 108, 111), (111.5, 112, 111, 111.5), flat(111.5))
    r = run_spot_grid(c, SpotGridConfig(lower=90, upper=110, levels=5, fee=0.0, lot=0.0, capital=1000, trailing="up"))
    # bar 1 buys 105 (above the price) and 100; bar 2 sells both and closes above the top (110):
    # the grid moves up two levels to 100..120, and its new top slot (115) buys at bar 3's open
    assert r.counters["trail_up"] == 1
    rebuy = r.trades[r.trades["role"] == spot_kernel.REBUY]
    assert len(rebuy) == 1 and rebuy["bar"][0] == 3 and rebuy["price"][0] == 111.5 and rebuy["level"][0] == 5
    live = r.orders_at(4)
    assert sorted(live["price"].tolist()) == [100.0, 105.0, 110.0, 120.0]


def test_trailing_down_sells_the_excess_at_the_next_open():
    c = bars(flat(100), (100, 100, 86, 86), (85, 86, 84, 85), flat(85))
    r = run_spot_grid(c, SpotGridConfig(lower=90, upper=110, levels=5, fee=0.001, taker_fee=0.002,
                                        slippage=0.001, lot=0.0, capital=1000, trailing="down"))
    assert r.counters["trail_down"] == 1
    sell = r.trades[r.trades["role"] == spot_kernel.REBALANCE_SELL]
    assert len(sell) == 1 and sell["bar"][0] == 2
    assert np.isclose(sell["price"][0], 85 * 0.999)
    assert np.isclose(sell["fee"][0], sell["price"][0] * sell["qty"][0] * 0.002)
    # the grid moved one level down: a buy at 85, and the three kept slots sell at 95, 100, 105
    live = r.orders_at(2)
    book = sorted(zip(live["side"].tolist(), live["price"].tolist(), strict=True))
    assert book == [(-1, 95.0), (-1, 100.0), (-1, 105.0), (1, 85.0)]


def test_recenter_moves_the_grid_to_the_price():
    c = bars(flat(100), (100, 130, 100, 130), flat(130), flat(130))
    r = run_spot_grid(c, SpotGridConfig(lower=90, upper=110, levels=5, fee=0.0, lot=0.0, capital=1000, recenter=1))
    assert r.counters["recenters"] == 1
    live = r.orders_at(2)
    assert live["price"].min() == 120.0 and live["price"].max() == 140.0


def test_dead_zone_keeps_orders_away_from_the_price():
    c = bars(flat(100.5), flat(100.5), (100.5, 100.5, 98, 98), flat(98), flat(98))
    r = run_spot_grid(c, SpotGridConfig(lower=90, upper=110, levels=21, fee=0.0, lot=0.0, capital=1000,
                                        dead_zone=0.02))
    o1 = r.orders_at(1)
    assert np.all(np.abs(o1["price"] - 100.5) >= 0.02 * 100.5)
    assert r.counters["dead_zone_deferrals"] > 0
    # deferred orders are placed once the price has moved away from them
    assert any(np.isclose(o["price"], 101) and o["placed"] == 2 for o in r.orders)


# --- stops ----------------------------------------------------------------------------------

def test_stop_loss_sells_everything_at_the_trigger_and_stops_the_grid():
    c = bars(flat(100), (100, 100, 96, 97), (97, 97, 88, 89), (89, 120, 89, 120))
    r = run_spot_grid(c, SpotGridConfig(lower=90, upper=110, levels=5, fee=0.001, taker_fee=0.002,
                                        slippage=0.001, lot=0.0, capital=1000, stop_loss=91))
    stop = r.trades[r.trades["role"] == spot_kernel.STOP_LOSS]
    assert len(stop) == 1 and stop["bar"][0] == 2 and np.isclose(stop["price"][0], 91 * 0.999)
    assert r.position[2] == 0 and r.position[3] == 0
    assert r.trades["bar"].max() == 2 and r.counters["stop"] == 1 and r.counters["stop_bar"] == 2
    assert r.trades[r.trades["bar"] == 2]["price"].min() >= 91 * 0.999 - 1e-9  # no buy below the stop


def test_stop_loss_on_a_gap_fills_at_the_open_and_keep_coin_keeps_the_position():
    c = bars(flat(100), (100, 100, 96, 97), (85, 86, 84, 85), flat(85))
    r = run_spot_grid(c, SpotGridConfig(lower=90, upper=110, levels=5, fee=0.0, lot=0.0, capital=1000, stop_loss=91))
    assert np.isclose(r.trades[r.trades["role"] == spot_kernel.STOP_LOSS]["price"][0], 85.0)
    keep = run_spot_grid(c, SpotGridConfig(lower=90, upper=110, levels=5, fee=0.0, lot=0.0, capital=1000,
                                           stop_loss=91, stop_action="keep"))
    assert spot_kernel.STOP_LOSS not in keep.trades["role"] and keep.position[-1] > 0
    assert np.all(keep.orders["end"] <= 2)  # every order was cancelled at the stop


def test_take_profit_sells_at_the_trigger():
    c = bars(flat(100), (100, 104, 99, 103), (103, 125, 103, 124), flat(124))
    r = run_spot_grid(c, SpotGridConfig(lower=90, upper=130, levels=5, fee=0.0, lot=0.0, capital=1000,
                                        take_profit=120))
    # levels 90..130: bar 1 buys 100, 110 and 120; on bar 2 the slots at 100 and 110 sell at 110
    # and 120 on the way up, then the take-profit at 120 sells what the 120 slot holds
    t = r.trades[r.trades["bar"] == 2]
    assert [spot_kernel.ROLE_NAMES[x] for x in t["role"]] == ["GRID_SELL", "GRID_SELL", "TAKE_PROFIT"]
    assert np.isclose(t["price"][-1], 120.0) and np.isclose(t["qty"][-1], 1000 / 5 / 120)
    assert r.counters["stop"] == 2 and r.position[-1] == 0


# --- real data: every mode runs, books balance ------------------------------------------------

@pytest.mark.parametrize("cfg", [
    dict(mode="range", spacing="geometric", levels=40, trailing="both"),
    dict(mode="range", spacing="atr", levels=30, atr_k=1.5, recenter=2),
    dict(mode="lower-only", spacing="arithmetic", levels=25, range_pct=0.15),
    dict(mode="lower-only", spacing="atr", levels=20, atr_period=28, atr_k=2.0),
    dict(mode="range", spacing="arithmetic", levels=50, dead_zone=0.002, stop_loss=9000, take_profit=70000,
         tick=0.01, lot=0.00001, min_notional=5),
])
def test_every_mode_on_real_candles_keeps_the_books(btc5m, cfg):
    r = run_spot_grid(btc5m, SpotGridConfig(capital=10_000, fee=0.001, **cfg))
    assert r.counters["fills"] > 20
    assert r.cash.min() >= -1e-6 and r.position.min() >= -1e-9
    m = r.metrics
    # equity = capital + realized + floating (fees are inside both)
    assert abs(m["final_equity"] - (10_000 + m["realized_pnl"] + m["floating_pnl"])) < 1e-6
    assert np.allclose(r.equity, r.cash + r.position * btc5m.close)


def test_a_run_whose_logs_fill_up_goes_on_where_it_stopped(btc5m):
    cfg = SpotGridConfig(levels=60, spacing="geometric", trailing="both", capital=10_000)
    whole = run_spot_grid(btc5m, cfg)
    small = run_spot_grid(btc5m, cfg, log_capacity=8)  # doubles many times, resuming each time
    assert len(whole.trades) > 2000
    assert np.array_equal(whole.trades, small.trades) and np.array_equal(whole.orders, small.orders)
    assert np.array_equal(whole.equity, small.equity) and whole.counters == small.counters


def test_params_are_checked_with_the_argument_named():
    c = bars(flat(100), flat(100))
    for bad, name in [(dict(levels=1), "--levels"), (dict(lower=120, upper=110), "--upper"),
                      (dict(fee=0.2), "--fee"), (dict(mode="sideways"), "--mode"),
                      (dict(stop_loss=150), "--stop-loss"), (dict(take_profit=50), "--take-profit"),
                      (dict(capital=-5), "--capital"), (dict(dead_zone=0.7), "--dead-zone")]:
        with pytest.raises(ParamError, match=name):
            run_spot_grid(c, SpotGridConfig(**bad))


def test_the_deepest_drawdown_is_named_by_the_files_bar_and_its_time(btc5m):
    """An ATR grid trades from the bar its ATR is ready: the drawdown's bottom is still named by
    the file's bar (and its time), not counted from the first bar traded."""
    c = btc5m.slice(0, 3000)
    r = run_spot_grid(c, SpotGridConfig(spacing="atr", atr_period=100, levels=20, capital=10_000.0))
    start = r.params.start_bar
    assert start >= 100
    eq = r.equity[start:]
    bottom = start + int(np.argmax(1.0 - eq / np.maximum.accumulate(eq)))
    assert r.metrics["max_drawdown_bar"] == bottom and r.metrics["max_drawdown_time"] == int(c.time[bottom])
