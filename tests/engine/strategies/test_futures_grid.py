"""The futures grid (engine/strategies/futures_grid.py): against the pure-Python oracle with the
exchange's own books (tests/oracle_futures.py) on real BTC with real funding, bar for bar, and
on hand-worked bars: the starting position, a take-profit, funding, the liquidation price, the
stops and the estimate shown before start."""

import numpy as np
import pytest
from conftest import FUNDING, shared_file
from oracle_futures import liquidation_price, reference_futures_grid, tier_table

from engine.data import Candles, FundingRates, load_funding
from engine.kernels import adaptive_grid as ag
from engine.kernels.perp import funding_on_bars
from engine.strategies.errors import ParamError
from engine.strategies.futures_grid import estimated_liquidation, grid_lines
from engine.strategies.registry import config_from, run_backtest

TF = 5 * 60_000
H8 = 8 * 3_600_000
HAND = dict(lower=90.0, upper=110.0, levels=3, capital=10_000.0, leverage=2.0, maker_fee=0.0002, taker_fee=0.0005,
            slippage=0.0, lot=0.001, tick=0.1, min_notional=5.0, funding_rate=0.0)


@pytest.fixture(scope="module")
def funding():
    return load_funding(shared_file(FUNDING))


def bars(*ohlc, start=H8 + TF):  # (no settlement in the bars unless a test puts one there)
    a = np.array(ohlc, dtype=float)
    n = len(a)
    return Candles(time=start + np.arange(n, dtype=np.int64) * TF, open=a[:, 0].copy(), high=a[:, 1].copy(),
                   low=a[:, 2].copy(), close=a[:, 3].copy(), volume=np.ones(n), timeframe_ms=TF, source="hand",
                   symbol="BTC/USDT")


def run(c, funding=None, **settings):
    cfg = config_from("futures-grid", {**HAND, **settings})
    return run_backtest("futures-grid", c, cfg, funding)


def trades(r):
    t = r.trades
    return [(int(x["bar"]), ag.LABELS[x["label"]], round(float(x["price"]), 9), round(float(x["qty"]), 9))
            for x in t]


def oracle(c, cfg, funding, start=0):
    rate, count, _ = funding_on_bars(c.time, funding.time, funding.rate, cfg.funding_rate)
    return reference_futures_grid(
        c.open, c.high, c.low, c.close, c.time, grid_lines(cfg, float(c.close[start])), cfg.direction,
        capital=cfg.capital, leverage=cfg.leverage, maker=cfg.maker_fee, taker=cfg.taker_fee, slippage=cfg.slippage,
        lot=cfg.lot, min_notional=cfg.min_notional, tiers=tier_table(), funding=np.where(count > 0, rate, 0.0),
        start=start, stop_top=cfg.stop_top, stop_bottom=cfg.stop_bottom, stop_loss=cfg.stop_loss_pct,
        take_profit=cfg.take_profit_pct)


def _by_bar_and_label(rows):
    """Quantity and value per (bar, label): the kernel books a close of several lots as one
    trade per lot, the exchange one per order."""
    out = {}
    for bar, label, price, qty in rows:
        q, v = out.get((bar, label), (0.0, 0.0))
        out[(bar, label)] = (q + qty, v + qty * price)
    return out


CASES = {  # (settings, how it ends): each on 30,000 5m bars of BTC from 2020 with its funding
    "neutral 3x": ({"direction": "neutral", "leverage": 3.0, "range_pct": 0.15}, "LIQUIDATION"),
    "long 5x": ({"direction": "long", "leverage": 5.0, "range_pct": 0.2}, ""),
    "short 5x": ({"direction": "short", "leverage": 5.0, "range_pct": 0.2}, "LIQUIDATION"),
    "neutral 10x geometric": ({"direction": "neutral", "leverage": 10.0, "levels": 41, "spacing": "geometric"},
                              "LIQUIDATION"),
    "short, take-profit": ({"direction": "short", "take_profit_pct": 0.02}, "TAKE_PROFIT"),
    "long, stop-loss": ({"direction": "long", "leverage": 4.0, "stop_loss_pct": 0.05, "range_pct": 0.05},
                        "STOP_LOSS"),
    "neutral, stop top and bottom": ({"stop_top": 21_900.0, "stop_bottom": 17_700.0}, "STOP_BOTTOM"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_kernel_is_the_oracle_bar_for_bar(btc5m, funding, case):
    settings, how = CASES[case]
    c = btc5m.slice(0, 30_000)
    cfg = config_from("futures-grid", {"levels": 21, "range_pct": 0.1, "slippage": 0.0003, **settings})
    r = run_backtest("futures-grid", c, cfg, funding)
    want, equity, ended = oracle(c, cfg, funding)
    assert r.metrics["ended"] == ended == how
    np.testing.assert_allclose(r.equity, equity, rtol=0, atol=1e-6)
    got = _by_bar_and_label([(b, lb, p, q) for b, lb, p, q in trades(r)])
    exp = _by_bar_and_label([(b, lb, p, q) for b, lb, p, q, _ in want])
    assert got.keys() == exp.keys() and len(got) > 5
    for k in got:
        assert got[k] == pytest.approx(exp[k], rel=1e-12), k
    assert r.money["fees"] == pytest.approx(sum(x[4] for x in want), rel=1e-9)
    assert r.counters["funding_events"] > 0 and r.money["funding"] != 0


def test_a_neutral_grid_starts_flat_and_a_take_profit_makes_one_grid():
    """Lines 90, 100, 110 laid at 100 (the line nearest the price holds no order): the slot
    90-100 is long, buying 9,900 / 90 = 110 at 90 (2x: 10,000 x 2 x 0.99 over two slots), and
    the slot 100-110 short, selling 9,900 / 110 = 90 at 110. The buy fills as the price falls
    to 89 (fee 110 x 90 x 0.02% = 1.98, margin 4,950); the sell one level up, at 100, makes
    110 x 10 = 1,100 less 2.20 of fee; the level rests again at that close and buys again."""
    c = bars((100, 100, 100, 100), (100, 100, 89, 95), (95, 101, 95, 100), (100, 100, 89.5, 90))
    r = run(c)
    assert r.equity[0] == 10_000 and r.long_qty[0] == r.short_qty[0] == 0
    assert trades(r) == [(1, "BUY_OPEN_LONG", 90.0, 110.0), (2, "SELL_CLOSE_LONG", 100.0, 110.0),
                         (3, "BUY_OPEN_LONG", 90.0, 110.0)]
    assert r.equity[1] == pytest.approx(10_000 - 1.98 + 110 * (95 - 90))
    assert r.equity[2] == pytest.approx(10_000 - 1.98 + 1_100 - 2.2)
    # (the grid profit is the take-profit's PnL less its own fee; the opening's is in the fees)
    assert r.money["grid_profit"] == pytest.approx(1_100 - 2.2) and r.counters["round_trips"] == 1
    assert r.trades["fee"][:2].tolist() == pytest.approx([1.98, 2.2])


@pytest.mark.parametrize("direction", ["long", "short"])
def test_a_long_or_short_grid_opens_its_starting_position_at_market_at_the_next_open(direction):
    """Laid at 100, a long grid buys the slot above the nearest line (100-110: 9,900 / 100 = 99
    at the next open of 101, slipped 0.1%, taker fee) and rests its buy at 90; a short grid
    sells the slot below (90-100) at that open and rests its sell at 110. The lot's
    take-profit is the slot's other line: 110 for the long, 90 for the short."""
    c = bars((100, 100, 100, 100), (101, 101, 101, 101), (101, 111, 89, 100))
    r = run(c, direction=direction, slippage=0.001)
    fill = 101 * (1.001 if direction == "long" else 0.999)
    first = trades(r)[0]
    assert first == (1, "BUY_OPEN_LONG" if direction == "long" else "SELL_OPEN_SHORT", round(fill, 9), 99.0)
    assert r.trades["fee"][0] == pytest.approx(99 * fill * 0.0005)
    # bar 2 (closes at its open's level or below, so open -> high -> low): the long takes profit
    # at 110 and buys at 90; the short sells at 110 and takes profit at 90
    want = [(2, "SELL_CLOSE_LONG", 110.0, 99.0), (2, "BUY_OPEN_LONG", 90.0, 110.0)] if direction == "long" else \
        [(2, "SELL_OPEN_SHORT", 110.0, 90.0), (2, "BUY_CLOSE_SHORT", 90.0, 99.0)]
    assert trades(r)[1:] == want


def test_funding_is_paid_on_what_each_side_holds_at_the_settlement():
    """A long of 110 held into the 16:00 settlement at an open of 95 pays 0.01% of 110 x 95 =
    1.045, from its isolated margin (its liquidation price rises with it)."""
    t0 = 2 * H8 - 2 * TF  # the third bar opens at the settlement
    c = bars((100, 100, 100, 100), (100, 100, 89, 95), (95, 96, 94, 95), (95, 96, 94, 95), start=t0)
    rates = FundingRates(np.array([2 * H8], dtype=np.int64), np.array([0.0001]), "hand")
    r = run(c, rates)
    assert r.money["funding"] == pytest.approx(-110 * 95 * 0.0001)
    assert r.equity[2] == pytest.approx(10_000 - 1.98 + 110 * (95 - 90) - 1.045)


def test_a_side_is_liquidated_where_the_exchange_would_and_the_grid_ends():
    """The long of 110 at 90 holds 4,950 of isolated margin: Binance's isolated liquidation price
    (110 x 90 - 4,950) / (110 x (1 - 0.4%)) = 45.18 (tier 1); a bar to 45 liquidates it there,
    the margin is lost, and the grid ends: nothing rests, the short side opens nothing more."""
    liq = (110 * 90 - 4_950) / (110 * 0.996)
    assert liquidation_price(tier_table(), True, 110.0, 90.0, 4_950.0) == pytest.approx(liq)
    c = bars((100, 100, 100, 100), (100, 100, 89, 95), (95, 96, 45.5, 46), (46, 46, 45, 45.2), (100, 120, 80, 100))
    r = run(c)
    assert trades(r)[-1] == (3, "LIQUIDATION", round(liq, 9), 110.0)
    assert r.metrics["ended"] == "LIQUIDATION" and r.metrics["ended_bar"] == 3
    assert r.equity[3] == pytest.approx(10_000 - 1.98 - 4_950) and r.equity[4] == r.equity[3]
    assert r.short_qty.max() == 0 and len(trades(r)) == 2  # (bar 4 reaches both sides' levels: nothing rests)


def test_the_estimated_liquidation_is_where_a_side_holding_every_slot_is_liquidated():
    """A long grid of lines 90, 100, 110 laid at 100 at 2x holds 99 bought at 100 and 110 at 90
    once the price is at the bottom: 209 at (9,900 + 9,900) / 209 with 9,900 of margin,
    liquidated at (19,800 - 9,900) / (209 x 0.996) = 47.56. The backtest of a fall through the
    range liquidates it there."""
    cfg = config_from("futures-grid", {**HAND, "direction": "long"})
    long, short = estimated_liquidation(cfg, "BTC/USDT:USDT", 100.0)
    assert short is None and long == pytest.approx((19_800 - 9_900) / (209 * 0.996))
    c = bars((100, 100, 100, 100), (100, 100, 100, 100), (100, 100, 89, 90), (90, 90, 40, 41))
    r = run(c, direction="long")
    assert trades(r)[-1][1:3] == ("LIQUIDATION", round(long, 9))
    lo, hi = estimated_liquidation(config_from("futures-grid", {**HAND, "leverage": 10.0}), "BTC/USDT:USDT", 100.0)
    assert 80 < lo < 90 and 110 < hi < 121  # neutral, 10x: each side within about a tenth of its entries


def test_stop_top_closes_everything_at_the_next_open_at_market():
    c = bars((100, 100, 100, 100), (100, 100, 89, 95), (95, 105, 95, 104), (103, 104, 102, 103))
    r = run(c, stop_top=105.0, slippage=0.001)
    assert r.metrics["ended"] == "STOP_TOP" and r.metrics["ended_bar"] == 2
    assert trades(r)[1:] == [(2, "SELL_CLOSE_LONG", 100.0, 110.0)]  # flat at the close: nothing to close
    c = bars((100, 100, 100, 100), (100, 100, 89, 95), (95, 99, 95, 98), (98, 99, 88, 95), (94, 95, 90, 94))
    r = run(c, stop_bottom=88.0, slippage=0.001)
    assert r.metrics["ended"] == "STOP_BOTTOM" and trades(r)[-1] == (4, "STOP_LONG", round(94 * 0.999, 9), 110.0)
    assert r.equity[4] == pytest.approx(10_000 - 1.98 + 110 * (94 * 0.999 - 90) - 110 * 94 * 0.999 * 0.0005)


def test_settings_are_refused_by_name():
    c = bars((100, 100, 100, 100), (100, 100, 100, 100))
    for settings, name in (({"direction": "both"}, "direction"), ({"lower": 120.0, "upper": 130.0}, "lower"),
                           ({"stop_top": 99.0}, "stop_top"), ({"leverage": 0.0}, "leverage"),
                           ({"levels": 2}, "levels"), ({"lower": 0.0}, "upper")):
        with pytest.raises(ParamError) as e:
            run(c, **settings)
        assert e.value.name == name
