"""Hedged lower-only grid: the perpetual short hedge, bag reduction, reserve and banking."""

import numpy as np
import pytest
from conftest import FUNDING, real_candles, shared_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.data import Candles, load_funding
from engine.kernels import spot_grid as spot_kernel
from engine.kernels.perp import funding_on_bars, liquidation_price_nb, load_tiers
from engine.strategies.hedged_grid import HedgedGridConfig
from engine.strategies.spot_grid import build_params, run_spot_grid

TF = 15 * 60_000
TIERS = load_tiers()
# Half the capital is the reserve the hedge's margin comes from; the grid's 1,000 buys 200 a level.
PLAIN = dict(mode="lower-only", spacing="arithmetic", lower=90.0, upper=100.0, levels=5, capital=2000.0, fee=0.0,
             taker_fee=0.0, hedge_fee=0.0, slippage=0.0, lot=0.001, recenter=0.0, consumed=0.0, reserve_ratio=0.5,
             fee_reserve=0.0, bank_frac=0.0, hedge_ratio=0.5, hedge_tp=1.0, hedge_leverage=1.0)


def bars(*ohlc):
    a = np.array(ohlc, dtype=float)
    n = len(a)
    return Candles(time=np.arange(n, dtype=np.int64) * TF, open=a[:, 0].copy(), high=a[:, 1].copy(),
                   low=a[:, 2].copy(), close=a[:, 3].copy(), volume=np.ones(n), timeframe_ms=TF, source="hand",
                   symbol="BTC/USDT")  # (priced as BTC: margined by its tiers)


def flat(p):
    return (p, p, p, p)


def run(c, ema=95.0, atr=1.0, funding=0.0, **kw):
    """The kernel with hand-set EMA, ATR and funding (constants)."""
    n = len(c)
    p = build_params(HedgedGridConfig(**{**PLAIN, **kw}), float(c.close[0]))
    S, SI, F, I, H = spot_kernel.new_state(p, float(c.close[0]))
    trades = np.empty(1000, dtype=spot_kernel.TRADE_DTYPE)
    orders = np.empty(1000, dtype=spot_kernel.ORDER_DTYPE)
    eq = np.empty(n)
    counters = np.zeros(spot_kernel.N_COUNTERS, dtype=np.int64)
    money = np.zeros(spot_kernel.N_MONEY)
    out = spot_kernel.spot_grid_nb(c.time, c.open, c.high, c.low, c.close, np.full(n, atr), np.full(n, ema),
                                   np.full(n, funding), TIERS, p, S, SI, F, I, H, trades, orders, eq, counters, money,
                                   0)
    assert out == n
    t = trades[:spot_kernel.record_counts(I)[0]]
    position = np.zeros(n)  # at each close: what the bar's last trade left (a trade records it)
    for x in t:
        position[x["bar"]:] = x["position"]
    return dict(trades=t, equity=eq, position=position, money=money, H=H,
                counters=dict(zip(spot_kernel.COUNTER_NAMES, counters.tolist(), strict=True)))


def roles(r):
    return [spot_kernel.ROLE_NAMES[x] for x in r["trades"]["role"]]


INVENTORY = sum(np.floor(200 / L / 0.001) * 0.001 for L in (90, 92, 94, 96, 98))  # all five levels bought


def test_hedge_opens_below_the_lowest_level_and_closes_on_reversal():
    # bar 1 buys every level (98 .. 90) and closes below 90: the short (half the inventory)
    # opens at bar 2's open; bar 3 closes above EMA 95 + 1 x ATR: it closes at bar 4's open
    c = bars(flat(100), (100, 100, 89, 89.5), (89, 89.5, 88.5, 89.2), (89.2, 97, 89.2, 97), flat(97))
    r = run(c)
    t = r["trades"]
    hedge = t[np.isin(t["role"], [spot_kernel.HEDGE_OPEN_SHORT, spot_kernel.HEDGE_CLOSE_SHORT])]
    q = np.floor(0.5 * INVENTORY / 0.001) * 0.001
    assert [spot_kernel.ROLE_NAMES[x] for x in hedge["role"]] == ["HEDGE_OPEN_SHORT", "HEDGE_CLOSE_SHORT"]
    assert hedge["bar"].tolist() == [2, 4] and hedge["price"].tolist() == [89.0, 97.0]
    assert np.allclose(hedge["qty"], q)
    assert np.isclose(hedge["pnl"][1], (89 - 97) * q)
    assert r["counters"]["hedge_opens"] == 1 and r["counters"]["hedge_closes"] == 1
    assert np.isclose(r["money"][spot_kernel.M_HEDGE_PNL], (89 - 97) * q)


def test_hedge_profit_sells_down_the_worst_lots():
    # a full hedge (ratio 1) opened at 89 closes at its 4% target when bar 3 closes at 85; its
    # profit 4 x 10.64 = 42.6 pays for selling the lot bought at 98 (loss 200 - 85 x 2.04 = 26.5)
    # but not also the one bought at 96 (another 22.9)
    c = bars(flat(100), (100, 100, 89, 89.5), (89, 89.5, 88.5, 89.2), (89.2, 89.2, 85, 85), flat(85), flat(85))
    r = run(c, hedge_ratio=1.0, hedge_tp=0.04)
    t = r["trades"]
    q = np.floor(INVENTORY / 0.001) * 0.001
    close = t[t["role"] == spot_kernel.HEDGE_CLOSE_SHORT]
    assert close["bar"][0] == 4 and np.isclose(close["pnl"][0], 4 * q)
    bag = t[t["role"] == spot_kernel.BAG_REDUCE]
    assert len(bag) == 1 and bag["level"][0] == 4 and bag["bar"][0] == 4 and bag["price"][0] == 85.0
    q98 = np.floor(200 / 98 / 0.001) * 0.001
    assert np.isclose(bag["qty"][0], q98)
    assert np.isclose(r["money"][spot_kernel.M_OFFSET_BY_HEDGE], (98 - 85) * q98)  # cost minus what it sold for
    assert r["counters"]["bag_reductions"] == 1
    # the lot sold down buys again at its level on a later bar: its slot is flat with a buy
    assert r["position"][4] < r["position"][3]


def test_hedge_liquidation_loses_its_margin():
    c = bars(flat(100), (100, 100, 89, 89.5), (89, 89.5, 88.5, 89.2), (89.2, 98, 88.8, 89.0), flat(89))
    r = run(c, hedge_leverage=10.0, ema=200.0)
    q = np.floor(0.5 * INVENTORY / 0.001) * 0.001
    margin = 89 * q / 10
    liq = liquidation_price_nb(TIERS, -1, q, 89.0, margin)
    assert np.isclose(liq, (q * 89 + margin) / (q * 1.004))
    t = r["trades"]
    lq = t[t["role"] == spot_kernel.HEDGE_LIQUIDATION]
    assert len(lq) == 1 and lq["bar"][0] == 3 and np.isclose(lq["price"][0], liq) and np.isclose(lq["pnl"][0], -margin)
    assert r["counters"]["hedge_liquidations"] == 1


def test_funding_on_the_short_and_scaling_on_further_breaks():
    # a short receives positive funding; each further spacing down adds a step of the inventory
    c = bars(flat(100), (100, 100, 89, 89.5), (89, 89.5, 87, 87.2), (87.2, 87.2, 85, 85.1), flat(85.1))
    r = run(c, hedge_step=0.25, funding=0.001)
    t = r["trades"]
    opens = t[t["role"] == spot_kernel.HEDGE_OPEN_SHORT]
    # opened after bar 1 (89.5 < 90); bar 2 closes at 87.2 < 89.5 - 2 and bar 3 at 85.1 < 87.2 - 2:
    # each adds a quarter of the inventory, up to all of it
    assert opens["bar"].tolist() == [2, 3, 4]
    q1 = np.floor(0.5 * INVENTORY / 0.001) * 0.001
    q2 = np.floor((0.75 * INVENTORY - q1) / 0.001) * 0.001
    q3 = np.floor((1.0 * INVENTORY - q1 - q2) / 0.001) * 0.001
    assert np.allclose(opens["qty"], [q1, q2, q3])
    assert r["counters"]["hedge_scales"] == 2
    # funding is paid at each open on the short held into it, before that open's add
    assert np.isclose(r["money"][spot_kernel.M_HEDGE_FUNDING], 0.001 * (q1 * 87.2 + (q1 + q2) * 85.1))


def test_reserve_and_profit_banking():
    c = bars(flat(100), (100, 100, 97, 97.5), (97.5, 100.5, 97.5, 100), flat(100))
    r = run(c, reserve_ratio=0.05, fee_reserve=0.01, bank_frac=0.1, bank_cap=0.01, hedge_ratio=0.0)
    t = r["trades"]
    buy = t[t["role"] == spot_kernel.GRID_BUY]
    assert np.isclose(buy["qty"][0], np.floor(2000 * 0.94 / 5 / 98 / 0.001) * 0.001)  # 6% kept aside
    sell = t[t["role"] == spot_kernel.GRID_SELL]
    assert len(sell) == 1
    assert np.isclose(r["money"][spot_kernel.M_BANKED], min(0.1 * sell["pnl"][0], 20.0))


@st.composite
def random_bars(draw):
    n = draw(st.integers(60, 300))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    drift = draw(st.sampled_from([-0.004, 0.0, 0.002]))
    path = 100 * np.exp(np.cumsum(rng.standard_normal((n, 3)).ravel() * 0.008 + drift / 3)).reshape(n, 3)
    close = np.round(path[:, -1], 2)
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(np.round(path.max(axis=1), 2), np.maximum(open_, close))
    low = np.minimum(np.round(path.min(axis=1), 2), np.minimum(open_, close))
    return Candles(time=np.arange(n, dtype=np.int64) * TF, open=open_, high=high, low=low, close=close,
                   volume=np.ones(n), timeframe_ms=TF, source="random", symbol="BTC/USDT")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_bars(), st.sampled_from([0.5, 1.0]), st.sampled_from([0.0002, 0.003]), st.sampled_from([0.0, 0.001]),
       st.sampled_from([0.0, 0.0001, -0.0005]), st.sampled_from(["arithmetic", "atr"]))
def test_equity_identity_with_the_hedge(c, ratio, fee, slip, rate, spacing):
    cfg = HedgedGridConfig(levels=8, capital=1000.0, fee=fee, taker_fee=fee, slippage=slip, hedge_ratio=ratio,
                           funding_rate=rate, spacing=spacing, atr_period=5, ema_period=10, lot=0.0001, range_pct=0.1)
    r = run_spot_grid(c, cfg)
    if r.counters["hedge_liquidations"]:
        return
    t = r.trades
    hedge_roles = [spot_kernel.HEDGE_OPEN_SHORT, spot_kernel.HEDGE_CLOSE_SHORT]
    is_hedge = np.isin(t["role"], hedge_roles)
    hq = np.zeros(len(c))
    np.add.at(hq, t["bar"][is_hedge], -t["side"][is_hedge] * t["qty"][is_hedge])
    hq = np.cumsum(hq)
    net = r.position - hq
    s = r.params.start_bar
    move = np.zeros(len(c))
    move[s + 1:] = net[s:-1] * np.diff(c.close[s:])
    np.add.at(move, t["bar"], t["side"] * t["qty"] * (c.close[t["bar"]] - t["price"]) - t["fee"])
    fr, _, _ = funding_on_bars(c.time, np.zeros(0, np.int64), np.zeros(0), rate)
    move[s + 1:] += fr[s + 1:] * c.open[s + 1:] * hq[s:-1]  # the short receives positive funding
    assert np.allclose(np.diff(r.equity[s:]), move[s + 1:], rtol=0, atol=1e-7 * 1000)
    assert r.cash.min() >= -1e-9 and r.position.min() >= -1e-12
    # the bag is only ever sold down with hedge profit that existed at the time
    hedge_pnl = np.cumsum(np.where(np.isin(t["role"], [*hedge_roles, spot_kernel.HEDGE_LIQUIDATION]), t["pnl"], 0.0))
    offset = np.cumsum(np.where(t["role"] == spot_kernel.BAG_REDUCE, -t["pnl"], 0.0))
    assert np.all(offset[t["role"] == spot_kernel.BAG_REDUCE] <= hedge_pnl[t["role"] == spot_kernel.BAG_REDUCE] + 1e-9)


@pytest.mark.parametrize("name", ["BTCUSDT-5m-binance-2020-2021.csv", "BTCUSDT-1h-binance-2017-2022.csv"])
def test_real_btc_with_a_1x_hedge_has_no_liquidation(name):
    c = real_candles(name)
    r = run_spot_grid(c, HedgedGridConfig(levels=20, hedge_leverage=1.0, lot=0.00001, min_notional=5, tick=0.01),
                      load_funding(shared_file(FUNDING)))
    assert r.counters["hedge_liquidations"] == 0 and r.counters["hedge_opens"] > 10
    assert r.counters["fills"] > 500 and r.metrics["final_equity"] > 0


def test_bar_by_bar_gives_the_same_run_as_the_backtest():
    """The spot-grid kernel fed one closed candle at a time (as paper trading does) matches
    the backtest exactly, hedge included (the sample's crash)."""
    from engine.data import load_candles
    from engine.sample import SAMPLE_PATH

    c = load_candles(SAMPLE_PATH).slice(10_000, 14_000)
    cfg = HedgedGridConfig(levels=15, lot=0.00001, tick=0.01, hedge_ratio=1.0)
    whole = run_spot_grid(c, cfg)
    assert whole.counters["hedge_opens"] > 0
    from engine.kernels import indicators as ind

    p = build_params(cfg, float(c.close[whole.params.start_bar]), whole.params.start_bar)
    S, SI, F, I, H = spot_kernel.new_state(p, float(c.close[p.start_bar]))
    atr = ind.atr_nb(c.high, c.low, c.close, cfg.atr_period)
    ema = ind.ema_nb(c.close, cfg.ema_period)
    fund, _, _ = funding_on_bars(c.time, np.zeros(0, np.int64), np.zeros(0), cfg.funding_rate)
    n = len(c)
    trades = np.empty(20_000, dtype=spot_kernel.TRADE_DTYPE)
    orders = np.empty(20_000, dtype=spot_kernel.ORDER_DTYPE)
    eq = np.empty(n)
    counters = np.zeros(spot_kernel.N_COUNTERS, dtype=np.int64)
    money = np.zeros(spot_kernel.N_MONEY)
    bar = 0
    for i in range(n):
        k = i + 1
        bar = spot_kernel.spot_grid_nb(c.time[:k], c.open[:k], c.high[:k], c.low[:k], c.close[:k], atr[:k], ema[:k],
                              fund[:k], TIERS, p, S, SI, F, I, H, trades, orders, eq[:k], counters, money, bar)
        assert bar == k
    nt, _ = spot_kernel.record_counts(I)
    assert np.array_equal(trades[:nt], whole.trades)
    assert np.array_equal(eq, whole.equity)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_bars(), st.sampled_from([0.5, 1.0]), st.floats(0.3, 0.9))
def test_prefix_invariance_no_look_ahead(c, ratio, frac):
    cfg = HedgedGridConfig(levels=8, capital=1000.0, hedge_ratio=ratio, atr_period=5, ema_period=10, lot=0.0001,
                           range_pct=0.1)
    k = int(len(c) * frac)
    full = run_spot_grid(c, cfg)
    if k <= full.params.start_bar + 2:
        return
    part = run_spot_grid(c.slice(0, k), cfg)
    assert np.array_equal(full.trades[full.trades["bar"] < k], part.trades)
    assert np.array_equal(full.equity[:k], part.equity)
