"""The infinity grid (engine/strategies/infinity_grid.py) against the pure-Python oracle of
Pionex's description (tests/oracle.py), on real BTC: the same equity at every bar and the
same fills, level by level, though the kernel keeps only a window of orders and holds the
levels above it as one reserve."""

import numpy as np
import pytest
from oracle import reference_infinity_grid

from engine.kernels import spot_grid as kernel
from engine.strategies.errors import ParamError
from engine.strategies.registry import SPECS, config_from, run_backtest

CAPITAL, FEE = 10_000.0, 0.001


def run(c, **settings):
    cfg = config_from("infinity-grid", {"capital": CAPITAL, "fee": FEE, "lot": 0.0, **settings})
    return run_backtest("infinity-grid", c, cfg)


@pytest.mark.parametrize("step,levels,lowest", [(0.01, 20, 0.5), (0.005, 30, 0.8), (0.02, 8, 0.3)])
def test_the_kernel_is_the_oracle_until_a_bar_runs_past_its_orders(btc5m, step, levels, lowest):
    """Bar for bar the oracle's equity and fills, until a bar runs past every order the window
    keeps resting (the crash of 19 May 2021: 7.7% in five minutes): the oracle fills levels
    where no order rested, as no exchange would; from there the kernel buys them at the next
    open. The levels above the window are the reserve, bought at bar 1's open in one order."""
    c = btc5m.slice(0, 40_000)  # Dec 2020 to May 2021: 19,700 to 64,000 and back to 37,000
    base = lowest * float(c.close[0])
    r = run(c, step=step, levels=levels, lower=base)
    fills, equity = reference_infinity_grid(c.open, c.high, c.low, c.close, base, step, CAPITAL, FEE)
    apart = np.flatnonzero(np.abs(r.equity - equity) > 1e-6 * CAPITAL)
    n = int(apart[0]) if len(apart) else len(c)
    if n < len(c):  # the oracle filled a level beyond every order resting in that bar
        resting = r.orders_at(n)
        buys, sells = resting["price"][resting["side"] > 0], resting["price"][resting["side"] < 0]
        beyond = [f for f in fills if f[0] == n and ((f[2] > 0 and f[3] < buys.min() * (1 - 1e-12))
                                                     or (f[2] < 0 and f[3] > sells.max() * (1 + 1e-12)))]
        assert beyond, f"bar {n}: apart from the oracle with an order resting at every level it filled"
    assert n > 35_000
    t = r.trades
    grid = (t["role"] != kernel.RESERVE_BUY) & (t["bar"] < n)
    got = sorted(zip(t["bar"][grid].tolist(), t["level"][grid].tolist(), t["side"][grid].tolist(),
                     t["price"][grid].tolist(), t["qty"][grid].tolist(), strict=True))
    first = set(t["level"][grid & (t["bar"] == 1)].tolist())  # the window's buys at bar 1's open
    reserved = [f for f in fills if f[0] == 1 and f[2] > 0 and f[1] not in first]
    want = sorted(f for f in fills if f[0] < n and f not in reserved)
    assert len(got) == len(want) > 300
    for a, b in zip(got, want, strict=True):
        assert a[:3] == b[:3] and a[3] == pytest.approx(b[3], rel=1e-12) and a[4] == pytest.approx(b[4], rel=1e-9)
    reserve = t[t["role"] == kernel.RESERVE_BUY]
    assert len(reserve) == 1 and reserve["bar"][0] == 1 and min(f[1] for f in reserved) == max(first) + 1
    assert reserve["qty"][0] == pytest.approx(sum(f[4] for f in reserved) + _tail(c, lowest, step), rel=1e-9)
    assert r.counters["trail_up"] > 10 and r.counters["trail_down"] > 3


def _tail(c, lowest, step):
    """The oracle's holding beyond every high (levels from ``top`` up)."""
    base = lowest * float(c.close[0])
    r = 1.0 + step
    below = 0
    while base * r ** (below + 1) <= c.close[0]:
        below += 1
    top = below + 1
    while base * r**top <= max(c.high) * r * r:
        top += 1
    q = CAPITAL / ((1.0 + FEE) * (below + 1 + r / step))
    return q * r / step / (base * r**top)


def test_it_keeps_its_value_in_the_coin_as_the_price_rises(btc5m):
    """Whatever the price did, the coins held are worth about V at each close (within one
    level's worth of the window's slots in flight)."""
    c = btc5m.slice(0, 40_000)
    r = run(c, step=0.01, levels=20, lower=0.5 * float(c.close[0]))
    q_quote = r.params.capital / ((1 + FEE) * (69 + 1 + 1.01 / 0.01))
    value = q_quote * 1.01 / 0.01
    held = r.position * c.close
    assert np.all(np.abs(held[10:] / value - 1) < 0.05)
    assert c.close[-1] > 2 * c.close[0] and r.metrics["total_return"] > 0


def test_settings_refused_by_name(btc5m):
    c = btc5m.slice(0, 2_000)
    with pytest.raises(ParamError, match="step"):
        run(c, step=0.0015)  # below the fees of a round trip (0.2%)
    with pytest.raises(ParamError, match="trailing"):
        config_from("infinity-grid", {"trailing": "up"})
    with pytest.raises(ParamError, match="lower"):
        run(c, lower=2 * float(c.close[0]))
    with pytest.raises(ParamError, match="infinity-grid"):
        config_from("spot-grid", {"mode": "infinity"}) and run_backtest(
            "spot-grid", c, config_from("spot-grid", {"mode": "infinity"}))
    assert SPECS["infinity-grid"].market == "spot"


def test_paper_trading_makes_the_backtests_trades(btc5m, tmp_path):
    """The runtime drives the same kernel: the reserve bought at market at the first open, the
    window moved as the price rises and falls, each fill the backtest's."""
    import asyncio

    from paper_run import drive, paper_trader

    from engine.runtime.config import SystemConfig
    from engine.store import read_jsonl

    n = 6_000
    c = btc5m.slice(0, n)
    params = {"step": 0.005, "levels": 12, "lower": 0.7 * float(c.close[0]), "fee": FEE, "lot": 0.0}
    bt = run(c, **params)
    cfg = SystemConfig(name="infinity", timeframe="5m", strategy="infinity-grid", params=params, capital=CAPITAL)
    trader, clock = paper_trader(btc5m.slice(0, n + 1), cfg, tmp_path)
    asyncio.run(drive(trader, clock, int(c.time[-1])))
    fills = [x for x in read_jsonl(trader.journal_path)[0] if x["type"] == "fill"]
    assert bt.counters["trail_up"] > 3 and bt.counters["trail_down"] > 3 and len(bt.trades) > 100
    candle = lambda f: trader.epoch + f["bar"] * c.timeframe_ms  # noqa: E731  (the data has gaps: by time)
    assert [(candle(f), f["side"], f["role"], f["level"]) for f in fills] == [
        (int(x["time"]), "buy" if x["side"] > 0 else "sell", kernel.ROLE_NAMES[x["role"]], int(x["level"]))
        for x in bt.trades]
    np.testing.assert_allclose([f["price"] for f in fills], bt.trades["price"], rtol=1e-12)
    np.testing.assert_allclose([f["qty"] for f in fills], bt.trades["qty"], rtol=1e-9)
    assert fills[0]["role"] == "RESERVE_BUY"
    books = trader.strategy.books(float(c.close[-1]))
    assert books["equity"] == pytest.approx(bt.equity[-1], rel=1e-9)
    assert trader.adapter.quote_total == pytest.approx(books["cash"], rel=1e-9)
    assert trader.adapter.base_total == pytest.approx(books["position"], rel=1e-9)


def test_live_on_the_fake_binance_books_equal_the_exchange(btc5m, tmp_path):
    """Live over ccxt: the reserve goes out as one market buy, the window's orders as limits;
    after 50 candles (the window moved both ways) the run ends with the invariants: each fill
    journaled once, no client order id sent twice, the books equal to the exchange."""
    import asyncio

    from fake_exchange import FakeBinance, assert_invariants, live_trader, trade_candles

    from engine.runtime.config import SystemConfig

    c = btc5m.slice(0, 800)
    fake = FakeBinance({"BTCUSDT": np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]}, c.timeframe_ms,
                       keys={"k": "s"}, balances={"USDT": CAPITAL}, cursor=60, slow_seconds=1.0)
    fake.start()
    cfg = SystemConfig(name="infinity live", timeframe="5m", mode="live", dry_run=False, capital=CAPITAL,
                       strategy="infinity-grid", params={"step": 0.0025, "levels": 10, "range_pct": 0.3})
    trader = live_trader(fake, cfg, tmp_path)
    try:
        asyncio.run(trade_candles(trader, fake, 50))
        assert_invariants(trader, fake)
    finally:
        fake.stop()
    ours = fake.our_orders(f"gd{trader.cfg.id}-")
    market = [o for o in ours if o["type"] == "MARKET"]
    assert len(market) == 1 and market[0]["side"] == "BUY" and market[0]["status"] == "FILLED"
    counters = trader.strategy.arrays["counters"]
    assert counters[kernel.C_TRAIL_UP] + counters[kernel.C_TRAIL_DOWN] >= 2 and counters[kernel.C_FILLS] > 20


def test_hand_worked_bars():
    """Lowest 64, 25% a level (64, 80, 100, 125, 156.25, 195.3125: exact in binary), 800 of
    capital, no fee, a window of 4 levels (3 slots). Laid at 100: two levels below and the
    price, Q = 800 / (3 + 1.25 / 0.25) = 100 a level, V = 500; slots at 80, 100, 125, the
    reserve V / 156.25 = 3.2 coins. Bar 1 (101): the reserve and the slot above the price
    (100 / 125 = 0.8) buy at the open. Bar 2 closes at 126, a level from the window's top: the
    window moves up a level, the 80 slot's buy cancelled, a slot at 156.25 taking 0.64 coins
    from the reserve (2.56 left: V / 195.3125). Bar 3 reaches 160: the 125 slot sells its 0.8
    at 156.25; the window stays."""
    from test_spot_grid import bars

    c = bars((100, 100, 100, 100), (101, 102, 101, 101), (101, 130, 101, 126), (126, 160, 120, 150))
    r = run(c, lower=64.0, step=0.25, levels=4, fee=0.0, capital=800.0)
    assert r.params.capital == 800.0
    t = [(int(x["bar"]), int(x["level"]), int(x["side"]), float(x["price"]), round(float(x["qty"]), 12),
          kernel.ROLE_NAMES[x["role"]]) for x in r.trades]
    assert t == [(1, -1, 1, 101.0, 3.2, "RESERVE_BUY"), (1, 3, 1, 101.0, 0.8, "GRID_BUY"),
                 (3, 3, -1, 156.25, 0.8, "GRID_SELL")]
    assert r.counters["trail_up"] == 1 and r.counters["trail_down"] == 0
    np.testing.assert_allclose(r.equity, [800.0, 800.0, 800 - 404 + 4.0 * 126, 521 + 3.2 * 150], rtol=1e-12)
    resting = r.orders[r.orders["status"] == kernel.ORDER_OPEN]
    assert sorted(resting["price"].tolist()) == [100.0, 125.0, 195.3125]  # buys at 100, 125; the new top sells
