"""Adaptive long/short perpetual grid: each mechanism on hand-built bars, with the indicators
set by hand so the answer can be worked out on paper; then invariants and real data."""

import numpy as np
import pytest
from conftest import FUNDING, shared_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data import Candles, load_candles, load_funding
from engine.kernels import adaptive_grid as perp_kernel
from engine.kernels import indicators
from engine.kernels.adaptive_grid.relay import _choose_prune as choose_prune
from engine.kernels.perp import funding_on_bars, liquidation_price_nb, load_tiers
from engine.strategies.adaptive_grid import AdaptiveGridConfig, run_adaptive_grid

TF = 15 * 60_000
TIERS = load_tiers()
NO_GATE = np.zeros(0, dtype=np.bool_)  # no risk gate: every opening its margin allows
QUIET = dict(stop_m=1e9, prune_sigma=1e9, prune_age_ms=1e18, prune_gap=1e9, prune_offset=0, z_halt=-1e9,
             z_resume=1e9, var_max_dd=1e9, slippage=0.0, maker_fee=0.0, taker_fee=0.0, tick=0.1, lot=0.001,
             min_notional=0.0, trail_reserve=0.0)


def bars(*ohlc, start=0):
    a = np.array(ohlc, dtype=float)
    n = len(a)
    return Candles(time=start + np.arange(n, dtype=np.int64) * TF, open=a[:, 0].copy(), high=a[:, 1].copy(),
                   low=a[:, 2].copy(), close=a[:, 3].copy(), volume=np.ones(n), timeframe_ms=TF, source="hand",
                   symbol="BTC/USDT")  # (priced as BTC: margined by its tiers)


def flat(p):
    return (p, p, p, p)


def run(c, *, atr=1.0, regime=indicators.NOISE, z=0.0, sigma=0.0, kama=None, std=0.0, er=0.0, funding=None, **kw):
    """The kernel on hand-set indicators (constants or per-bar arrays)."""
    n = len(c)

    def arr(v, dtype=float):
        return np.full(n, v, dtype=dtype) if np.isscalar(v) else np.asarray(v, dtype=dtype)

    kw.setdefault("spread_const", perp_kernel.spread_const(kw.get("gamma", 1.0), kw.get("kappa", 1000.0)))
    p = perp_kernel.AdaptiveGridParams(**{**QUIET, **kw})
    L, G, F, I = perp_kernel.new_state(p)
    trades = np.empty(10_000, dtype=perp_kernel.TRADE_DTYPE)
    eq, lq, sq = np.empty(n), np.empty(n), np.empty(n)
    counters = np.zeros(perp_kernel.N_COUNTERS, dtype=np.int64)
    money = np.zeros(perp_kernel.N_MONEY)
    if funding is None:
        fr, fc = np.zeros(n), np.zeros(n, dtype=np.int64)
    else:
        fr, fc = funding
    out = perp_kernel.adaptive_grid_nb(c.time, c.open, c.high, c.low, c.close, arr(atr),
                                       arr(c.close if kama is None else kama),
                              arr(er), arr(std), arr(sigma), arr(z), arr(regime, np.int64), fr, fc, TIERS,
                              NO_GATE, p, L, G, F, I, trades, eq, lq, sq, counters, money, 0)
    assert out == n
    return dict(trades=trades[:I[perp_kernel.I_NTR]], equity=eq, long=lq, short=sq, p=p,
                counters=dict(zip(perp_kernel.COUNTER_NAMES, counters.tolist(), strict=True)), money=money, F=F)


def labels(r):
    return [perp_kernel.LABELS[x] for x in r["trades"]["label"]]


# Hand arithmetic shared by the cases: close 100, ATR 1 -> spacing max(1, 0.5% x 100) = 1;
# sigma 0 -> no skew, half spread (2 / gamma) ln(1 + gamma / kappa) / 2 = ln(1.001) = 0.0009995;
# first buy 100 x (1 - 0.0009995) = 99.90 at the tick, first sell 100.10.


def test_liquidation_at_the_expected_price_and_bar():
    c = bars(flat(100), (100, 100, 99.9, 99.95), (99.95, 100, 90.3, 99.95), (99.95, 100, 90.2, 99.95))
    r = run(c, leverage=10.0, levels=1, no_short=1)
    t = r["trades"]
    # 30 BTC (3% x 10,000 x 10x / 100) bought at 99.9 with 299.7 margin; isolated, tier 1 (0.4%, 0):
    # liquidation (30 x 99.9 - 299.7) / (30 x 0.996) = 90.2711
    liq = (30 * 99.9 - 299.7) / (30 * 0.996)
    assert np.isclose(liquidation_price_nb(TIERS, 1, 30.0, 99.9, 299.7), liq)
    assert labels(r) == ["BUY_OPEN_LONG", "LIQUIDATION"]
    assert t["bar"].tolist() == [1, 3]  # bar 2's low of 90.3 stays above it
    assert np.isclose(t["price"][1], liq) and np.isclose(t["pnl"][1], -299.7)
    assert np.isclose(r["equity"][3], 10_000 - 299.7)
    assert r["counters"]["liquidations"] == 1


@pytest.mark.parametrize("case", ["stop beyond", "grid buy beyond", "grid buy that would move it past the low"])
def test_the_liquidation_comes_first_on_the_bars_path(case):
    """The exchange liquidates as the price reaches the liquidation price: a stop or a grid buy
    beyond it never fills (the side's orders are cancelled), and a grid buy beyond it cannot
    move the average and the liquidation price past the bar's low. One lot of 3% x 10,000 at
    99.9: at 10x 30 BTC, liquidation 90.2711 (the test above); at 50x 150 BTC with 299.7
    margin, liquidation (150 x 99.9 - 299.7) / (150 x 0.996) = 98.2952. (Before: the stop
    filled at 89.9 for a loss of 300 > the margin, no liquidation; the buy at 94.9 filled and
    both margins were lost; the buy at 96.9 moved the liquidation to 96.82, under the low of
    96.85, and the liquidation was missed.)"""
    lev, atr, levels, low, kw = {
        "stop beyond": (10.0, 1.0, 1, 89.0, {"stop_m": 10.0}),  # its stop at 99.9 - 10 x ATR = 89.9
        "grid buy beyond": (50.0, 5.0, 3, 94.0, {}),  # levels 99.9, 94.9, 89.9
        "grid buy that would move it past the low": (50.0, 3.0, 3, 96.85, {})}[case]  # levels 99.9, 96.9...
    c = bars(flat(100), (100, 100, 99.9, 99.95), (99.95, 100, low, 99.0))
    r = run(c, leverage=lev, levels=levels, no_short=1, atr=atr, **kw)
    t = r["trades"]
    qty = 3e-2 * 10_000 * lev / 100
    liq = (qty * 99.9 - 299.7) / (qty * 0.996)
    assert labels(r) == ["BUY_OPEN_LONG", "LIQUIDATION"]
    assert t["bar"].tolist() == [1, 2] and np.isclose(t["price"][1], liq) and np.isclose(t["pnl"][1], -299.7)
    assert np.isclose(r["equity"][2], 10_000 - 299.7) and r["counters"]["liquidations"] == 1


def test_after_a_partial_close_the_liquidation_is_the_exchanges_and_the_books_hold_its_wallet():
    """Binance keeps a side at its average entry: a close realizes against it, and the
    liquidation price follows from it and the isolated margin. Two lots of 30 BTC bought at
    99.9 and 98.9 (10x: margins 299.7 and 296.7, average 99.4); the 98.9 lot's take-profit at
    99.9 realizes +30 in the books (per lot) but +15 on the exchange (against 99.4), releasing
    half the margin (298.2); its level buys again at 98.9: 60 BTC at the exchange's average
    (99.4 x 30 + 98.9 x 30) / 60 = 99.15 with 594.9 margin, liquidated at
    (60 x 99.15 - 594.9) / (60 x 0.996) = 89.5934 (the lots' cost, 99.4, would say 89.8444).
    The wallet is 10,000 - 299.7 - 296.7 + 298.2 + 15 - 296.7 = 9,420.10, and so are the books
    (before: 9,435.10, the books' +30 kept after the margin was lost; on ETH at 20x over 2021
    the books ended at -79.92 while the exchange's wallet held 333.60 more)."""
    c = bars(flat(100), (100, 100, 98.85, 99.0), (99.0, 99.95, 99.0, 99.9), (99.9, 99.9, 80.0, 85.0))
    r = run(c, leverage=10.0, levels=2, no_short=1)
    t = r["trades"]
    assert labels(r) == ["BUY_OPEN_LONG", "BUY_OPEN_LONG", "SELL_CLOSE_LONG", "BUY_OPEN_LONG", "LIQUIDATION"]
    assert t["price"][:4].tolist() == [99.9, 98.9, 99.9, 98.9] and np.allclose(t["qty"], 30.0 * np.r_[1, 1, 1, 1, 2])
    liq = (60 * 99.15 - 594.9) / (60 * 0.996)
    assert np.isclose(liquidation_price_nb(TIERS, 1, 60.0, 99.15, 594.9), liq)
    assert t["bar"][4] == 3 and np.isclose(t["price"][4], liq, rtol=1e-12)
    wallet = 10_000 - 299.7 - 296.7 + 298.2 + 15 - 296.7
    assert np.isclose(r["equity"][3], wallet, rtol=1e-12) and np.isclose(r["F"][perp_kernel.F_XD], 0.0)
    assert np.isclose(t["pnl"].sum(), wallet - 10_000, rtol=1e-12)  # the trades account for every cent
    assert np.isclose(t["pnl"][4], -594.9 - 15)  # the margin, and the exchange's 15 less on the close


def test_liquidation_price_walks_up_the_tiers():
    # 100 BTC at 50,000 with 500,000 margin: 5M notional is tier 4 (1%, 12,000); the price found
    # there, 45,333, keeps the notional (4.5M) in tier 4
    assert np.isclose(liquidation_price_nb(TIERS, 1, 100.0, 50_000.0, 500_000.0), (5e6 - 5e5 - 12_000) / (100 * 0.99))
    assert np.isclose(liquidation_price_nb(TIERS, -1, 1.0, 50_000.0, 5_000.0), 55_000 / 1.004)
    assert liquidation_price_nb(TIERS, 1, 1.0, 50_000.0, 50_000.0) == 0.0  # 1x long: never
    m = load_tiers()
    assert np.allclose(m[1:4, 2], [300, 1_500, 12_000])


def test_funding_is_paid_at_the_three_settlements_only():
    day = 86_400_000
    t = np.arange(0, day + 1, TF, dtype=np.int64)  # 00:00 .. next 00:00
    rate_time = np.array([0, 8, 16, 24], dtype=np.int64) * 3_600_000
    rate = np.array([0.0001, 0.0002, -0.0003, 0.0004])
    per_bar, count, _ = funding_on_bars(t, rate_time, rate, 0.0)
    paid_at = (t[count > 0] // 3_600_000).tolist()
    assert paid_at == [8, 16, 24] and per_bar[count > 0].tolist() == [0.0002, -0.0003, 0.0004]
    # a gap over 16:00 pays that settlement at the first bar after it; a missing rate uses the default
    gap_t = np.r_[t[:60], t[70:]]
    per_bar, count, _ = funding_on_bars(gap_t, rate_time[:3], rate[:3], 0.00007)
    assert (gap_t[count > 0] // TF).tolist() == [32, 70, 96] and per_bar[count > 0][-1] == 0.00007
    # in the kernel: a long of 30 BTC pays rate x 30 x the open price at each settlement
    n = 4 * 32 + 1
    c = bars(flat(100), (100, 100, 99.9, 99.95), *[flat(99.95)] * (n - 2))
    fr, fc, _ = funding_on_bars(c.time, rate_time, rate, 0.0)
    r = run(c, leverage=10.0, levels=1, no_short=1, funding=(fr, fc))
    assert r["counters"]["funding_events"] == 4  # 08:00, 16:00, 00:00 and 08:00 of the next day
    paid = 30 * 99.95 * (0.0002 - 0.0003 + 0.0004 + 0.0)  # the second 08:00 has no rate: default 0
    assert np.isclose(r["money"][perp_kernel.M_FUNDING], -paid)


def test_each_rate_is_paid_at_its_slot_and_a_settlement_without_one_is_counted():
    """Binance stamps ``fundingTime`` a few ms after the slot (1606809600003): each rate is paid
    at its slot all the same. A settlement missing inside the file, or beyond its ends, is paid
    at the default and counted. A file 4h apart settles every 4h. (Before: a stamp off the
    slot by 3 ms took the default, silently.)"""
    h = 3_600_000
    t = np.arange(0, 2 * 86_400_000 + 1, TF, dtype=np.int64)  # two days of 15m bars
    rate_time = np.array([0, 8 * h + 3, 16 * h + 1, 32 * h + 7, 40 * h], dtype=np.int64)  # 24h missing
    rate = np.array([0.0001, 0.0002, -0.0003, 0.0004, 0.0005])
    per_bar, count, defaulted = funding_on_bars(t, rate_time, rate, 0.00007)
    paid = count > 0
    assert (t[paid] // h).tolist() == [8, 16, 24, 32, 40, 48]
    assert per_bar[paid].tolist() == [0.0002, -0.0003, 0.00007, 0.0004, 0.0005, 0.00007]
    assert (t[defaulted > 0] // h).tolist() == [24, 48]  # the gap, and the settlement after the file
    every_4h = np.arange(0, 49, 4, dtype=np.int64) * h + 5
    per_bar, count, defaulted = funding_on_bars(t, every_4h, np.full(len(every_4h), 0.0001), 0.0)
    assert (t[count > 0] // h).tolist() == list(range(4, 49, 4)) and defaulted.sum() == 0


def test_the_real_funding_file_pays_every_settlement_at_its_rate():
    """BTCUSDT funding 2020-2023 (../shared/data): about half its stamps are a few ms after the
    slot. Over the 5m candles of Dec 2020 - Jul 2021 every settlement has its rate."""
    f = load_funding(shared_file(FUNDING))
    assert np.count_nonzero(f.time % (8 * 3_600_000)) > len(f) // 3  # the late stamps are there
    c = load_candles(shared_file("BTCUSDT-5m-binance-2020-2021.csv"))
    per_bar, count, defaulted = funding_on_bars(c.time, f.time, f.rate, 0.0001)
    slots = (f.time + 30_000) // 60_000 * 60_000
    inside = (slots > c.time[0]) & (slots <= c.time[-1])
    assert count.sum() == inside.sum() == 686 and defaulted.sum() == 0
    assert np.isclose(per_bar.sum(), f.rate[inside].sum(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("regime,long_ok,short_ok", [
    (indicators.NOISE, True, True), (indicators.UPTREND, True, False), (indicators.DOWNTREND, False, True),
    (indicators.BREAKOUT_UP, True, False), (indicators.BREAKOUT_DOWN, False, True),
])
def test_each_regime_runs_its_grids(regime, long_ok, short_ok):
    c = bars(flat(100), (100, 100.2, 99.8, 100), flat(100))
    r = run(c, levels=2, regime=regime)
    got = set(labels(r))
    assert ("BUY_OPEN_LONG" in got) == long_ok
    assert ("SELL_OPEN_SHORT" in got) == short_ok
    if short_ok:
        assert "SELL_OPEN_SHORT" not in labels(run(c, levels=2, regime=regime, no_short=1))


def test_circuit_breaker_halts_and_resumes():
    dip = (99.95, 100, 99.5, 99.95)
    c = bars(flat(100), flat(100), (100, 100, 99.5, 99.95), dip, flat(99.95), dip)
    z = [0, -3.5, -2.0, -2.0, -0.5, -0.5]
    r = run(c, levels=1, no_short=1, z=z, z_halt=-3.0, z_resume=-1.0)
    # halted at the close of bar 1: bars 2 and 3 reach the buy level but nothing opens; z above
    # -1 at the close of bar 4 resumes with a new grid, which buys on bar 5
    assert labels(r) == ["CIRCUIT_BREAKER_HALT", "BUY_OPEN_LONG"]
    assert r["trades"]["bar"].tolist() == [1, 5]
    assert r["counters"]["circuit_breaker_halts"] == 1


def test_two_stage_stop():
    # levels 99.9 and 98.9; both buy on bar 1 (avg entry 99.4); ATR 1, m = 2: stage 1 at 97.4
    # closes half of each lot, stage 2 at 96.4 the rest
    c = bars(flat(100), (100, 100, 98.5, 99.0), (99.0, 99.0, 97.0, 97.5), (97.5, 97.5, 96.0, 96.5))
    r = run(c, levels=2, no_short=1, stop_m=2.0, slippage=0.001)
    t = r["trades"]
    stops = t[t["label"] == perp_kernel.STOP_LONG]
    stage1, stage2 = stops[stops["bar"] == 2], stops[stops["bar"] == 3]
    assert labels(r)[:2] == ["BUY_OPEN_LONG", "BUY_OPEN_LONG"] and np.allclose(t["qty"][:2], 3.0)
    assert len(stage1) == 2 and np.allclose(stage1["price"], 97.4 * 0.999) and np.allclose(stage1["qty"], 1.5)
    # the close of bar 2 drifted more than a spacing: a new grid buys at 97.4 on bar 3 before the
    # price falls to stage 2 (96.4, set from the remaining average entry 99.4), which closes the
    # rest of the lots held at that close, as the stop order placed then holds; the lots bought
    # during bar 3 stay, their stops are laid at its close
    assert len(stage2) == 2 and np.allclose(stage2["price"], 96.4 * 0.999) and np.allclose(stage2["qty"], 1.5)
    new = t[(t["bar"] == 3) & (t["label"] == perp_kernel.BUY_OPEN_LONG)]
    assert len(new) > 0 and np.isclose(stage2["long_qty"][-1], new["qty"].sum())
    assert r["counters"]["stops_long"] == 2
    avg_new = (new["price"] * new["qty"]).sum() / new["qty"].sum()  # their stop, laid at the close of bar 3
    assert abs(r["F"][perp_kernel.F_TRIG1_L] - (avg_new - 2.0)) <= r["p"].tick / 2 + 1e-9
    # one lot only: the first stage closes it all
    one = run(bars(flat(100), (100, 100, 99.5, 99.8), (99.8, 99.8, 97.0, 97.5)), levels=1, no_short=1, stop_m=2.0)
    assert labels(one) == ["BUY_OPEN_LONG", "STOP_LONG"] and np.isclose(one["trades"]["qty"][1], 3.0)


def test_take_profit_one_spacing_away_and_no_round_trip_in_one_bar():
    c = bars(flat(100), (100, 101, 99.8, 100.5), (100.5, 101, 100.4, 100.9), flat(100.9))
    r = run(c, levels=1, no_short=1)
    assert labels(r) == ["BUY_OPEN_LONG", "SELL_CLOSE_LONG"]
    t = r["trades"]
    assert t["bar"].tolist() == [1, 2]  # bar 1 reached 101 but the take-profit waits a bar
    assert np.isclose(t["price"][1], 100.9) and np.isclose(t["pnl"][1], 3.0 * 1.0)


def test_prune_priority():
    """Each prune on its own, then all together: the highest priority wins."""
    L = np.zeros((2, 4, perp_kernel.N_L))
    F = np.zeros(perp_kernel.N_F)
    I = np.zeros(perp_kernel.N_I, dtype=np.int64)
    money = np.zeros(perp_kernel.N_MONEY)
    F[perp_kernel.F_SPACING] = 1.0
    p = perp_kernel.AdaptiveGridParams(prune_age_ms=100.0, prune_gap=3.0, prune_funding=0.5, prune_offset=1,
                              offset_min_spacings=2.0, max_lots=4)

    def lot(s, m, qty, entry, opened, funding):
        L[s, m] = (qty, entry, opened, funding, 0, 0, 0, 1, qty)

    def choose(close, kama=100.0, std=1.0, t=50.0):
        I[perp_kernel.I_NLOT_L] = int((L[0, :, perp_kernel.L_ACTIVE] > 0).sum())
        I[perp_kernel.I_NLOT_S] = int((L[1, :, perp_kernel.L_ACTIVE] > 0).sum())
        F[perp_kernel.F_QTY_L] = L[0, :, perp_kernel.L_QTY].sum()
        F[perp_kernel.F_QTY_S] = L[1, :, perp_kernel.L_QTY].sum()
        choose_prune(close, kama, std, t, p, L, F, I, money)
        if I[perp_kernel.I_PRUNE_LOT] < 0:
            return None
        label = perp_kernel.LABELS[I[perp_kernel.I_PRUNE_LABEL]]
        return int(I[perp_kernel.I_PRUNE_SIDE]), int(I[perp_kernel.I_PRUNE_LOT]), label

    lot(0, 0, 1.0, 100.0, 0.0, 0.0)
    lot(0, 1, 1.0, 101.0, 10.0, 0.0)
    lot(1, 0, 1.0, 99.0, 20.0, 5.0)
    assert choose(99.5) is None  # nothing applies
    assert choose(96.0) == (0, 1, "PRUNE_DEVIANCE")  # 4 sigma below KAMA: the worst long (101)
    assert choose(97.5, t=150.0) == (0, 0, "PRUNE_OLDEST")  # held over 100 ms: the oldest
    assert choose(97.5) == (0, 1, "PRUNE_GAP")  # 101 is 3.5 spacings above 97.5
    money[perp_kernel.M_GRID_PROFIT] = 8.0
    assert choose(99.5) == (1, 0, "PRUNE_FUNDING")  # funding 5 > 50% of 8: the costliest lot
    money[perp_kernel.M_GRID_PROFIT] = 20.0  # funding 5 < 10; profit covers the worst underwater lot
    assert choose(98.9) == (0, 1, "PRUNE_OFFSET")  # 101 - 98.9 = 2.1 spacings, loss 2.1 <= 20
    money[perp_kernel.M_OFFSET_USED] = 19.0
    assert choose(98.9) is None  # only 1.0 of profit left to offset a 2.1 loss


def test_a_prune_closes_at_the_next_open_with_its_label():
    c = bars(flat(100), (100, 100, 99.8, 99.9), (99.9, 99.9, 96.0, 96.0), (95.0, 95.5, 95.0, 95.2))
    r = run(c, levels=1, no_short=1, prune_sigma=3.0, std=1.0, kama=100.0, slippage=0.001, taker_fee=0.0002)
    t = r["trades"]
    # bar 2 closes 4 sigma below KAMA: the lot is pruned at bar 3's open (then the grid, laid
    # again at the close of bar 2, buys on bar 3)
    assert labels(r)[:2] == ["BUY_OPEN_LONG", "PRUNE_DEVIANCE"]
    assert t["bar"][1] == 3 and np.isclose(t["price"][1], 95.0 * 0.999)
    assert np.isclose(t["fee"][1], t["price"][1] * 3.0 * 0.0002)


def test_trailing_up_moves_the_anchor_by_half_the_gap():
    # the grid's top is 100 + 2.5 spacings = 102.5; a close at 112 moves the anchor to 106 (top
    # 108.5), which the next close of 108 stays under; a close above it would move it again
    c = bars(flat(100), (100, 112, 100, 112), flat(108))
    r = run(c, levels=3, no_short=1, regime=indicators.BREAKOUT_UP, er=0.9, er_threshold=0.5)
    assert r["counters"]["trailing_shifts"] == 1
    assert np.isclose(r["F"][perp_kernel.F_CENTER], 106.0)
    again = run(bars(flat(100), (100, 112, 100, 112), flat(112)), levels=3, no_short=1, regime=indicators.BREAKOUT_UP,
                er=0.9, er_threshold=0.5)
    assert again["counters"]["trailing_shifts"] == 2 and np.isclose(again["F"][perp_kernel.F_CENTER], 109.0)
    # a trend without efficiency re-centres on drift instead
    drift = run(bars(flat(100), (100, 112, 100, 112), flat(108)), levels=3, no_short=1, regime=indicators.UPTREND,
                er=0.1)
    assert drift["counters"]["trailing_shifts"] == 0 and np.isclose(drift["F"][perp_kernel.F_CENTER], 108.0)


def test_var_gate_blocks_new_opening_orders():
    c = bars(flat(100), (100, 100, 99.8, 99.9), (99.9, 100, 98.5, 99.0), flat(99))
    # after the first buy, 1.65 x sigma x notional exceeds 1% of equity: opening stops
    r = run(c, levels=3, no_short=1, sigma=0.01, var_z=1.65, var_max_dd=0.0001)
    assert r["counters"]["var_blocks"] >= 1
    assert labels(r).count("BUY_OPEN_LONG") == 1


# ---------------------------------------------------------------------------------------------
# invariants


@st.composite
def random_bars(draw):
    n = draw(st.integers(150, 500))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    vol = draw(st.sampled_from([0.002, 0.006, 0.02]))
    path = 100 * np.exp(np.cumsum(rng.standard_normal((n, 4)).ravel() * vol)).reshape(n, 4)
    close = path[:, -1]
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(path.max(axis=1), open_)
    low = np.minimum(path.min(axis=1), open_)
    t = np.arange(n, dtype=np.int64) * TF
    return Candles(time=t, open=open_, high=high, low=low, close=close, volume=np.ones(n), timeframe_ms=TF, source="r",
                   symbol="BTC/USDT")


@st.composite
def configs(draw):
    return AdaptiveGridConfig(
        leverage=draw(st.sampled_from([1.0, 2.0, 3.0])), levels=draw(st.integers(1, 12)),
        order_frac=draw(st.sampled_from([0.01, 0.03, 0.06])), atr_k=draw(st.sampled_from([0.5, 1.0, 2.0])),
        sigma_window=draw(st.sampled_from([10, 48])), stop_m=draw(st.sampled_from([1.0, 3.5])),
        prune_age_hours=draw(st.sampled_from([2.0, 24.0])), prune_gap=draw(st.sampled_from([2.0, 3.0])),
        prune_offset=draw(st.booleans()), no_short=draw(st.booleans()), gamma=draw(st.sampled_from([0.5, 1.0, 5.0])),
        z_halt=draw(st.sampled_from([-3.0, -1.5])), var_max_dd=draw(st.sampled_from([0.02, 0.25])),
        slippage=draw(st.sampled_from([0.0, 0.001])), maker_fee=draw(st.sampled_from([-0.00005, 0.0002])),
        funding_rate=draw(st.sampled_from([0.0, 0.0001, -0.0003])), max_lots=draw(st.sampled_from([3, 40])),
        tick=0.01, lot=0.0001, min_notional=1.0,
    )


SET = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@SET
@given(random_bars(), configs())
def test_equity_moves_only_by_price_fills_fees_and_funding(c, cfg):
    r = run_adaptive_grid(c, cfg)
    t = r.trades
    if r.counters["liquidations"]:
        return  # a liquidation loses the margin, not the mark-to-market
    s = r.start_bar
    net = r.long_qty - r.short_qty
    close = c.close
    fills = t[t["label"] != perp_kernel.CIRCUIT_BREAKER_HALT]
    move = np.zeros(len(c))
    move[s + 1:] = net[s:-1] * np.diff(close[s:])
    np.add.at(move, fills["bar"], fills["side"] * fills["qty"] * (close[fills["bar"]] - fills["price"]) - fills["fee"])
    fr, _, _ = funding_on_bars(c.time, np.zeros(0, np.int64), np.zeros(0), cfg.funding_rate)
    move[s + 1:] -= fr[s + 1:] * c.open[s + 1:] * net[s:-1]
    assert np.allclose(np.diff(r.equity[s:]), move[s + 1:], rtol=0, atol=1e-7 * cfg.capital)
    assert np.all(r.long_qty >= -1e-12) and np.all(r.short_qty >= -1e-12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_bars(), configs(), st.floats(0.5, 0.95))
def test_prefix_invariance_no_look_ahead(c, cfg, frac):
    k = int(len(c) * frac)
    full = run_adaptive_grid(c, cfg)
    if k <= full.start_bar + 2:
        return
    part = run_adaptive_grid(c.slice(0, k), cfg)
    assert np.array_equal(full.trades[full.trades["bar"] < k], part.trades)
    assert np.array_equal(full.equity[:k], part.equity)


def test_isolated_margin_never_loses_more_than_the_account_on_real_eth_at_20x(eth5m):
    """ETH 5m Dec 2020 - Jul 2021 at 20x: the grid is liquidated again and again, each time
    losing a side's isolated margin, never more: equity stays above zero (before: -79.92 at
    the end, the books short of 333.60 the exchange's wallet held from closes realized against
    the average entry)."""
    r = run_adaptive_grid(eth5m, AdaptiveGridConfig(leverage=20.0))
    assert r.counters["liquidations"] > 10
    assert r.equity.min() > 0
    assert np.isclose(r.trades["pnl"].sum(), r.money["realized"])  # each liquidation's loss is in its trade


@pytest.mark.parametrize("name", ["BTCUSDT-5m-binance-2020-2021.csv", "BTCUSDT-1h-binance-2017-2022.csv"])
def test_real_btc_at_1x_finishes_without_liquidation(name):
    from conftest import real_candles

    c = real_candles(name)
    r = run_adaptive_grid(c, AdaptiveGridConfig(leverage=1.0), load_funding(shared_file(FUNDING)))
    assert r.counters["liquidations"] == 0
    assert r.counters["longs_opened"] > 1000 and r.counters["shorts_opened"] > 1000
    assert r.counters["funding_events"] > 600
    m = r.metrics
    assert np.isfinite(m["final_equity"]) and m["final_equity"] > 0


# ---------------------------------------------------------------------------------------------
# bar by bar: what the runtime does with closed candles


def closes(c, cfg):
    """The kernel fed one closed candle at a time, its state kept outside, as paper trading
    does: yields (bar, params, state L, G, F, I, trade log, equity) after each close."""
    from engine.strategies.adaptive_grid import build_params, prepare

    a = prepare(c, cfg)
    p = build_params(cfg, a["start"])
    L, G, F, I = perp_kernel.new_state(p)
    n = len(c)
    trades = np.empty(20_000, dtype=perp_kernel.TRADE_DTYPE)
    eq, lq, sq = np.empty(n), np.empty(n), np.empty(n)
    counters = np.zeros(perp_kernel.N_COUNTERS, dtype=np.int64)
    money = np.zeros(perp_kernel.N_MONEY)
    bar = 0
    for i in range(n):  # only data up to bar i exists when bar i closes
        k = i + 1
        bar = perp_kernel.adaptive_grid_nb(c.time[:k], c.open[:k], c.high[:k], c.low[:k], c.close[:k], a["atr"][:k],
                                  a["kama"][:k], a["er"][:k], a["std"][:k], a["sigma"][:k], a["z"][:k],
                                  a["regime"][:k], a["funding"][:k], a["funding_count"][:k], TIERS, NO_GATE, p, L,
                                  G, F, I, trades, eq[:k], lq[:k], sq[:k], counters, money, bar)
        assert bar == k
        yield i, p, (L, G, F, I), trades, eq


def test_bar_by_bar_gives_the_same_run_as_the_backtest(btc5m):
    """Feeding the kernel one closed candle at a time gives exactly the backtest's trades and equity."""
    c = btc5m.slice(0, 3000)
    cfg = AdaptiveGridConfig()
    whole = run_adaptive_grid(c, cfg)
    *_, (_, _, (_, _, _, I), trades, eq) = closes(c, cfg)  # the state after the last close
    assert np.array_equal(trades[:I[perp_kernel.I_NTR]], whole.trades)
    assert np.array_equal(eq, whole.equity)


def test_order_log_and_marks_equal_what_the_state_wanted_at_each_close(btc5m):
    """The replay's order log, kept by the backtest, against an independent reading: the state
    run bar by bar and asked after each close what it wants resting (``desired_orders_nb``, what
    the runtime sends). Orders resting during bar k + 1 are those wanted at the close of k; the
    marks are the state's entries, liquidation prices and stop triggers at that close."""
    c = btc5m.slice(0, 2500)
    cfg = AdaptiveGridConfig(leverage=5.0, stop_m=2.5)
    logged = run_adaptive_grid(c, cfg, orders=True, log_capacity=16)  # the logs grow from almost nothing
    assert np.array_equal(logged.equity, run_adaptive_grid(c, cfg).equity)  # keeping them changes nothing
    want = np.empty(500, dtype=perp_kernel.ORDER_DTYPE)
    checked, stops = 0, 0
    for i, p, (L, G, F, I), _, _ in closes(c.slice(0, len(c) - 1), cfg):
        if i < logged.start_bar:
            continue
        m = perp_kernel.desired_orders_nb(p, L, G, F, I, want)
        w = want[:m]
        resting = w[(w["kind"] == perp_kernel.OPEN_ORDER) | (w["kind"] == perp_kernel.TAKE_PROFIT_ORDER)]
        got = logged.orders_at(i + 1)
        key = lambda o: sorted(zip(o["side"].tolist(), o["kind"].tolist(), o["book"].tolist(),  # noqa: E731
                                   o["price"].round(6).tolist(), o["qty"].round(9).tolist(), strict=True))
        assert key(got) == key(resting), f"bar {i + 1}"
        checked += len(got)
        mk = logged.marks[i]
        for s, q, cost in ((0, F[perp_kernel.F_QTY_L], F[perp_kernel.F_COST_L]), (1, F[perp_kernel.F_QTY_S],
                                                                                F[perp_kernel.F_COST_S])):
            assert (np.isnan(mk[s]) if q == 0 else mk[s] == pytest.approx(cost / q)), f"bar {i}"
            stop = w[(w["kind"] == perp_kernel.STOP_ORDER) & (w["book"] == s)]
            assert (np.isnan(mk[4 + s]) if len(stop) == 0 else mk[4 + s] == stop["price"][0]), f"bar {i}"
            stops += len(stop)
    assert checked > 10_000 and stops > 100


def test_desired_orders_and_fills_from_outside():
    c = bars(flat(100), (100, 100, 98.5, 99.0))
    r = run(c, levels=2, no_short=1, stop_m=2.0)
    # after bar 1 both levels are lots: the runtime should rest two take-profits and a stop
    p = r["p"]
    L, G, F, I = perp_kernel.new_state(p)
    n = len(c)
    trades = np.empty(1000, dtype=perp_kernel.TRADE_DTYPE)  # room for a bar's worst case
    counters = np.zeros(perp_kernel.N_COUNTERS, dtype=np.int64)
    money = np.zeros(perp_kernel.N_MONEY)
    z = np.zeros(n)
    perp_kernel.adaptive_grid_nb(c.time, c.open, c.high, c.low, c.close, np.ones(n), c.close.copy(), z, z, z, z,
                        np.zeros(n, np.int64), z, np.zeros(n, np.int64), TIERS, NO_GATE, p, L, G, F, I, trades,
                        np.empty(n), np.empty(n), np.empty(n), counters, money, 0)
    out = np.empty(50, dtype=perp_kernel.ORDER_DTYPE)
    k = perp_kernel.desired_orders_nb(p, L, G, F, I, out)
    kinds = sorted((int(o["kind"]), round(float(o["price"]), 4)) for o in out[:k])
    ep = (99.9 + 98.9) / 2
    assert (perp_kernel.TAKE_PROFIT_ORDER, 100.9) in kinds and (perp_kernel.TAKE_PROFIT_ORDER, 99.9) in kinds
    # both stop stages rest, stage 1 for half of each lot, stage 2 for the rest
    stops = sorted((int(o["ref"]), round(float(o["price"]), 4), float(o["qty"])) for o in out[:k]
                   if o["kind"] == perp_kernel.STOP_ORDER)
    assert stops == [(1, round(ep - 2.0, 4), 3.0), (2, round(ep - 3.0, 4), 3.0)]
    # a take-profit fill reported from outside closes the lot and re-arms nothing (the grid
    # was laid again at the close of bar 1)
    before = F[perp_kernel.F_QTY_L]
    tp_price = float(L[0, 0, perp_kernel.L_TP_PRICE])
    assert perp_kernel.on_take_profit_fill_nb(0, 0, 2, int(c.time[-1]) + TF, tp_price, p, L, G, F, I, trades,
                                              counters, money, TIERS)
    assert np.isclose(F[perp_kernel.F_QTY_L], before - 3.0) and I[perp_kernel.I_NLOT_L] == 1


@pytest.mark.parametrize("rule", ["through", "queue"])
def test_each_limit_fill_keeps_the_fill_model(btc5m, rule):
    """Under the through and queue models every grid opening and take-profit that filled at its
    own price (not at a gapped open) kept the rule: the bar went more than a tick beyond it, or
    the seeded draw (the oracle's own hash) is below how far it went beyond, over the depth; and
    the grid fills less than at a touch."""
    from oracle import queue_draw

    c = btc5m.slice(0, 20_000)
    f = load_funding(shared_file(FUNDING))
    settings_ = dict(leverage=3.0, fill_rule=rule, queue_depth=0.002, fill_seed=9)
    r = run_adaptive_grid(c, AdaptiveGridConfig(**settings_), f)
    touch = run_adaptive_grid(c, AdaptiveGridConfig(leverage=3.0), f)
    t = r.trades
    limits = {perp_kernel.BUY_OPEN_LONG: True, perp_kernel.BUY_CLOSE_SHORT: True,
              perp_kernel.SELL_CLOSE_LONG: False, perp_kernel.SELL_OPEN_SHORT: False}
    checked = 0
    for x in t:
        if int(x["label"]) not in limits or x["price"] == c.open[x["bar"]]:
            continue
        buy, i, p = limits[int(x["label"])], int(x["bar"]), float(x["price"])
        beyond = p - c.low[i] if buy else c.high[i] - p
        if rule == "through":
            assert beyond > 0.1 - 1e-9, (i, p, beyond)  # (the tick)
        else:
            assert beyond > 0 and queue_draw(9, int(c.time[i]), p) < beyond / (0.002 * p), (i, p)
        checked += 1
    assert checked > 200 and len(t) < len(touch.trades)
