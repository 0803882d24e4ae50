"""Live perpetual trading over ccxt against the fake Binance USDT-M futures exchange: the
adapter sets the account up (hedge mode, isolated margin, leverage), sends each order in its
position side and each stop to the algo service, and reads a triggered stop's fill from the
market order it placed; the adaptive grid trades live through faults, and at the end the
exchange holds the strategy's positions and exactly the orders it wants, nothing sent twice,
every fill journaled once."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from conftest import FUNDING, shared_file
from fake_exchange import FAULTS, assert_invariants, live_client, trade_through_faults, until
from fake_futures import FUNDING_MS, FakeBinanceFutures

from engine.data import load_funding
from engine.exchange import base
from engine.exchange.live import CcxtExchange
from engine.risk import RiskGate, RiskLimits
from engine.runtime import lifecycle
from engine.runtime.config import SystemConfig
from engine.runtime.trader import Trader
from engine.store import EventLog, read_jsonl

KEY, SECRET = "perp-key", "perp-secret"
SYM = "BTC/USDT:USDT"
ENDPOINTS = ("POST /fapi/v1/order", "POST /fapi/v1/algoOrder", "DELETE /fapi/v1/order", "DELETE /fapi/v1/algoOrder",
             "GET /fapi/v1/openOrders", "GET /fapi/v1/openAlgoOrders", "GET /fapi/v1/order", "GET /fapi/v1/algoOrder",
             "GET /fapi/v3/positionRisk", "GET /fapi/v1/klines")


@pytest.fixture
def fake(btc5m):
    c = btc5m.slice(0, 800)
    f = load_funding(shared_file(FUNDING))
    rows = np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]
    rates = list(zip(f.time.tolist(), f.rate.tolist(), strict=True))
    server = FakeBinanceFutures({"BTCUSDT": rows}, c.timeframe_ms, keys={KEY: SECRET}, balances={"USDT": 10_000.0},
                                cursor=300, slow_seconds=0.6, funding=rates, order_limit=300)
    server.start()
    yield server
    server.stop()


def client(fake, **kw) -> CcxtExchange:
    return live_client(fake, market="perpetual", timeout_ms=300, retries=3, fee_rate=-0.00005, taker_rate=0.0002, **kw)


def test_the_adapter_sets_up_hedge_mode_and_trades_both_sides_with_stops(fake):
    async def go():
        ex = client(fake)
        await ex.prepare(SYM, 3)
        assert fake.hedge and fake.margin_type["BTCUSDT"] == "ISOLATED" and fake.leverage["BTCUSDT"] == 3
        await ex.prepare(SYM, 3)  # already so: nothing to change, no error
        assert await ex.symbols() == [SYM]  # (the Add System dialog's list for this market)
        with pytest.raises(base.OrderRejected, match="whole number"):
            await ex.prepare(SYM, 2.5)
        rules = await ex.market(SYM)
        assert (rules.tick, rules.lot, rules.min_notional) == (0.1, 0.001, 5.0)
        last = (await ex.candles(SYM, "5m", None, 2))[0][4]
        # a market long and a market short: two positions, not a net of zero; they trade at once
        # (ccxt asks for the RESULT answer of a market order: filled, with its price)
        for cid, side, pos in (("gd1-ml", "buy", "long"), ("gd1-ms", "sell", "short")):
            r = await ex.place(base.OrderRequest(SYM, side, "market", 0.01, last, cid, pos))
            assert r.position == pos and r.status == base.CLOSED and r.filled == 0.01 and r.average > 0
        fake.advance()
        assert await ex.positions(SYM) == {"long": 0.01, "short": 0.01}
        # stops for both, on the algo service; one far away is cancelled
        row = fake.candles["BTCUSDT"][fake.cursor]
        near = rules.round_price(float(row[3]) + 1.0, "sell")  # the next candle's low goes through it
        s1 = await ex.place(base.OrderRequest(SYM, "sell", "stop", 0.01, near, "gd1-sl", "long"))
        s2 = await ex.place(base.OrderRequest(SYM, "buy", "stop", 0.01, rules.round_price(last * 1.5, "buy"), "gd1-ss",
                                           "short"))
        assert (s1.type, s1.status, s1.price) == ("stop", base.OPEN, near)
        assert {a["cid"] for a in fake.open_algos_of()} == {"gd1-sl", "gd1-ss"} and fake.open_orders_of() == []
        assert {(o.client_order_id, o.type) for o in await ex.open_orders(SYM)} == {("gd1-sl", "stop"),
                                                                                   ("gd1-ss", "stop")}
        cancelled = await ex.cancel(SYM, s2)
        assert cancelled.status == base.CANCELED and cancelled.client_order_id == "gd1-ss"
        fake.advance()
        stop = await ex.order(SYM, "gd1-sl")  # triggered: its fill is the market order it placed
        want = min(float(row[1]), near)
        assert (stop.status, stop.type, stop.filled, stop.average, stop.position) == (base.CLOSED, "stop", 0.01, want,
                                                                                     "long")
        assert stop.fee == pytest.approx(0.01 * want * 0.0002)
        assert await ex.positions(SYM) == {"long": 0.0, "short": 0.01}
        # funding as the exchange settled it, in the range asked
        t0, t1 = int(fake.candles["BTCUSDT"][0, 0]), int(fake.candles["BTCUSDT"][fake.cursor, 0])
        rates = await ex.funding_rates(SYM, t0, t1)
        assert rates == [(t, r) for t, r in fake.funding if t0 <= t <= t1] and len(rates) >= 2
        # a lost answer to a stop placement: looked up (on the algo service) before any retry
        fake.inject("POST /fapi/v1/algoOrder", "lost")
        r = await ex.place(base.OrderRequest(SYM, "buy", "stop", 0.01, rules.round_price(last * 1.5, "buy"), "gd1-s3",
                                          "short"))
        assert r.client_order_id == "gd1-s3" and r.type == "stop" and fake.duplicate_attempts == []
        # a stop whose position is closed before it triggers: its market order has nothing to
        # close and expires (a process that was down could not cancel the stop in time)
        row = fake.candles["BTCUSDT"][fake.cursor]
        last = (await ex.candles(SYM, "5m", None, 2))[0][4]
        trigger = rules.round_price(float(row[2]) - 1.0, "buy")  # the next candle's high goes through it
        assert trigger > last
        await ex.place(base.OrderRequest(SYM, "buy", "stop", 0.01, trigger, "gd1-s4", "short"))
        await ex.place(base.OrderRequest(SYM, "buy", "market", 0.01, last, "gd1-cs", "short"))
        fake.advance()
        late = await ex.order(SYM, "gd1-s4")
        assert (late.status, late.filled, late.type) == (base.EXPIRED, 0.0, "stop")
        assert [(o["status"], o["executed"]) for o in fake.our_orders("gd1-s4")] == [("EXPIRED", 0.0)]
        assert await ex.positions(SYM) == {"long": 0.0, "short": 0.0}
        # a closing order larger than the position is refused; an unknown id is not found
        with pytest.raises(base.OrderRejected, match="ReduceOnly"):
            await ex.place(base.OrderRequest(SYM, "sell", "limit", 0.02, last * 1.1, "gd1-x", "long"))
        with pytest.raises(base.OrderNotFound):
            await ex.order(SYM, "gd1-none")
        await ex.close()

    asyncio.run(go())


def live_trader(fake, tmp_path, **kw):
    params = {"leverage": 3.0, "stop_m": 2.0, "prune_age_hours": 4.0, "levels": 8}
    cfg = SystemConfig(name="live perp", symbol=SYM, market="perpetual", strategy="adaptive-grid", timeframe="5m",
                       mode="live", dry_run=False, capital=10_000.0, params=params)
    limits = RiskLimits(atr_jump=1e9, max_symbol_share=float("inf"), max_total_share=float("inf"))  # its own account
    return Trader(cfg, client(fake, **kw.pop("client", {})), RiskGate(limits), tmp_path, **kw)


@pytest.mark.slow
def test_the_adaptive_grid_trades_live_through_faults_and_ends_holding_what_it_wants(fake, tmp_path):
    trader = live_trader(fake, tmp_path)
    asyncio.run(trade_through_faults(trader, fake, ENDPOINTS, steps=250, every=4, seed=11))
    assert len(fake.faults_served) >= 55 and {k for _, k in fake.faults_served} == set(FAULTS)
    assert fake.duplicate_attempts == [] and fake.liquidations == []
    # the exchange holds the strategy's positions, and rests exactly what it wants
    books = trader.strategy.books(float(fake.candles["BTCUSDT"][fake.cursor - 1, 4]))
    held = fake.positions_of()
    assert held["long"] == pytest.approx(books["long"], abs=1e-9)
    assert held["short"] == pytest.approx(books["short"], abs=1e-9)
    wanted = {lifecycle.client_order_id(trader.cfg.id, d.level, d.key): d for d in trader.strategy.desired(0.0)}
    resting = {o["cid"]: o for o in fake.open_orders_of()} | {a["cid"]: a for a in fake.open_algos_of()}
    assert set(resting) == set(wanted) == {o.cid for o in trader.book.live()}
    assert all(resting[k]["position"] == d.position.upper() for k, d in wanted.items())
    # every fill reached the strategy and the journal once: limits and market orders by their
    # ids, stops by theirs (the market order a stop placed carries the exchange's id)
    records, problems = read_jsonl(trader.journal_path)
    assert problems == []
    fills = [r for r in records if r["type"] == "fill"]
    filled = {o["cid"] for o in fake.orders.values() if o["status"] == "FILLED" and not o["cid"].startswith("algo")}
    filled |= {a["cid"] for a in fake.algos.values() if a["status"] == "FINISHED"}
    assert len(fills) == len({f["cid"] for f in fills}) and {f["cid"] for f in fills} == filled
    labels = {x[0] for f in fills for x in f["trades"]}
    assert len(fills) > 40 and {"BUY_OPEN_LONG", "SELL_CLOSE_LONG", "SELL_OPEN_SHORT"} <= labels
    assert any(a["status"] == "FINISHED" for a in fake.algos.values()), "no stop triggered: a weaker test"
    # the books agree: the exchange's wallet (realized PnL, its fees, funding) plus the
    # unrealized PnL of its average entries is the strategy's equity
    c = float(fake.candles["BTCUSDT"][fake.cursor - 1, 4])
    upnl = sum((1 if side == "LONG" else -1) * (c - p[1]) * p[0] for (_, side), p in fake.pos.items())
    assert fake.wallet + upnl == pytest.approx(trader.strategy.books(c)["equity"], rel=1e-9)
    assert_invariants(trader, fake)
    # funding: what the account's income history says it settled (8 decimals), each settlement once
    assert fake.income and trader.strategy.books(c)["funding"] == pytest.approx(
        sum(float(e["income"]) for e in fake.income), rel=1e-9)
    assert abs(trader.strategy.books(c)["funding"] + fake.funding_paid) < 1e-8 * len(fake.income)


@pytest.mark.slow
def test_funding_is_what_the_exchange_settled_when_fills_are_read_late(fake, tmp_path):
    """The process is away across each funding settlement (a crash, a stalled feed) while
    its orders fill; it comes back and replays the candles it missed. The exchange settled
    funding on what it held at each settlement; the books, replaying, booked the fills read on
    return before the settlements replayed since. The books take each settlement from the
    account's funding history (Binance GET /fapi/v1/income, FUNDING_FEE) and end equal to it."""
    events = EventLog(tmp_path / "logs")
    trader = live_trader(fake, tmp_path, event_log=events)
    rows = fake.candles["BTCUSDT"]
    away = 0

    async def go():
        nonlocal away
        await trader.boot()
        await trader.poll()
        while fake.cursor < len(rows) - 40:
            forming = int(rows[fake.cursor, 0])
            if trader.strategy.started and (forming + 2 * fake.timeframe_ms) % FUNDING_MS == 0:
                before = len(fake.fills)
                fake.advance(3)  # closes the candle that opens at the settlement: funding settled
                while len(fake.fills) == before and fake.cursor < len(rows) - 40:
                    fake.advance()  # away until one of its orders fills after the settlement
                away += 1
            fake.advance()
            await trader.poll()
        await trader.adapter.close()

    asyncio.run(go())
    settled = [r for r in read_jsonl(events.path)[0] if r["event"] == "funding_settled"]
    assert away >= 3 and len(settled) >= 3, (away, settled)
    assert any(abs(r["correction"]) > 0.01 for r in settled), settled
    c = float(rows[fake.cursor - 1, 4])
    books = trader.strategy.books(c)
    assert books["funding"] == pytest.approx(sum(float(e["income"]) for e in fake.income), abs=1e-6)
    upnl = sum((1 if side == "LONG" else -1) * (c - p[1]) * p[0] for (_, side), p in fake.pos.items())
    assert fake.wallet + upnl == pytest.approx(books["equity"], abs=1e-6)
    assert trader.funding_due == {}
    assert_invariants(trader, fake)


def test_the_perpetual_trades_on_the_futures_streams(fake, tmp_path):
    """USDT-M futures' websockets: candles from the market stream, our order updates from the
    listenKey user-data stream; no candle polled, every fill reported as it happens and
    journaled once."""
    events = EventLog(tmp_path / "logs")
    trader = live_trader(fake, tmp_path, event_log=events, client={"websocket": True})
    times = fake.candles["BTCUSDT"][:, 0]

    async def go():
        stop = asyncio.Event()
        task = asyncio.ensure_future(trader.run(stop, poll_seconds=1.0))
        await until(lambda: trader.strategy is not None and trader.strategy.started and trader.feed == "stream"
                    and fake.user_streams)
        polled = sum(r == "GET /fapi/v1/klines" for r in fake.requests)
        for _ in range(60):
            await asyncio.get_running_loop().run_in_executor(None, fake.advance)
            await until(lambda: trader.last_time == times[fake.cursor - 1])
        assert sum(r == "GET /fapi/v1/klines" for r in fake.requests) == polled
        stop.set()
        await task
        await trader.adapter.close()

    asyncio.run(asyncio.wait_for(go(), 90))
    assert fake.listen_keys
    records, _ = read_jsonl(trader.journal_path)
    fills = {r["cid"] for r in records if r["type"] == "fill"}
    assert len(fills) > 5, "few fills: a weaker test"
    limits = {o["cid"] for o in fake.orders.values() if o["status"] == "FILLED" and not o["cid"].startswith("algo")}
    assert fills == limits | {a["cid"] for a in fake.algos.values() if a["status"] == "FINISHED"}
    seen = {r["cid"] for r in read_jsonl(events.path)[0] if r["event"] == "order_update" and r["filled"] > 0}
    rested = {o["cid"] for o in fake.orders.values() if o["status"] == "FILLED" and o["update"] != o["time"]
              and not o["cid"].startswith("algo")}  # (not those that traded on arrival: booked from the answer)
    assert rested and rested <= seen  # (a stop's fill is the market order it placed, under the exchange's id)
    # the exchange moved on while the trader was still placing and cancelling (it does not wait
    # for the trader): an order that filled while being cancelled is booked apart from the grid's
    # levels, so the strategy holds what the exchange holds and no side is taken for liquidated
    held, books = fake.positions_of(), trader.strategy.books(float(fake.candles["BTCUSDT"][fake.cursor - 1, 4]))
    assert held["long"] == pytest.approx(books["long"], abs=1e-9)
    assert held["short"] == pytest.approx(books["short"], abs=1e-9)
    assert [r for r in records if r["type"] == "liquidation"] == [] and fake.liquidations == []
    assert_invariants(trader, fake)


@pytest.mark.parametrize("missing", ["algo service", "stop orders"])
def test_an_account_that_cannot_hold_the_grids_stops_is_refused_before_it_is_changed(fake, missing):
    """Without the conditional-order service (or where the symbol offers no stop-market
    orders) the grid's stops would be refused: the boot says so in one line and leaves the
    account's position mode, margin type and leverage as they were. (Before: it set them all,
    then failed with "ExchangeError: ExchangeError: ...".)"""
    from fake_futures import FUTURES_ORDER_TYPES

    if missing == "algo service":
        fake.algo_service = False
    else:
        fake.order_types = tuple(t for t in FUTURES_ORDER_TYPES if "STOP" not in t)

    async def go():
        ex = client(fake)
        try:
            await ex.prepare(SYM, 3)
        finally:
            await ex.close()

    with pytest.raises(base.OrderRejected, match="nothing was changed") as err:
        asyncio.run(go())
    assert fake.account_changes == [] and not fake.hedge and fake.margin_type["BTCUSDT"] == "CROSSED"
    assert str(err.value).count("ExchangeError") <= 1


@pytest.mark.slow
@pytest.mark.parametrize("params", [
    {"direction": "neutral", "leverage": 3.0, "range_pct": 0.02, "levels": 15},
    # its starting position bought at market at the start, then closed at market when the price
    # reaches its stop top (19,150: candles go to 19,342 by candle 389) with slots above it held
    {"direction": "long", "leverage": 2.0, "range_pct": 0.025, "levels": 11, "stop_top": 19_150.0},
], ids=["neutral", "long-stop-top"])
def test_the_futures_grid_trades_live_through_faults_and_ends_holding_what_it_wants(fake, tmp_path, params):
    """The futures grid on the fake Binance USDT-M, through faults: every fill journaled once, no
    client order id sent twice, the exchange's positions and wallet are the books', and what
    rests is what the grid wants (nothing, once it has ended)."""
    cfg = SystemConfig(name="live futures grid", symbol=SYM, market="perpetual", strategy="futures-grid",
                       timeframe="5m", mode="live", dry_run=False, capital=10_000.0, params=params)
    limits = RiskLimits(atr_jump=1e9, max_symbol_share=float("inf"), max_total_share=float("inf"))
    trader = Trader(cfg, client(fake), RiskGate(limits), tmp_path)
    plain = tuple(e for e in ENDPOINTS if "algo" not in e.lower())  # (it places no stops)
    asyncio.run(trade_through_faults(trader, fake, plain, steps=200, every=4, seed=5))
    assert len(fake.faults_served) >= 20 and {k for _, k in fake.faults_served} == set(FAULTS)
    assert fake.duplicate_attempts == [] and fake.liquidations == []
    records, problems = read_jsonl(trader.journal_path)
    assert problems == []
    fills = [r for r in records if r["type"] == "fill"]
    labels = {x[0] for f in fills for x in f["trades"]}
    c = float(fake.candles["BTCUSDT"][fake.cursor - 1, 4])
    books = trader.strategy.books(c)
    if params["direction"] == "neutral":
        assert {"BUY_OPEN_LONG", "SELL_CLOSE_LONG", "SELL_OPEN_SHORT", "BUY_CLOSE_SHORT"} <= labels and len(fills) > 20
        assert books["ended"] == ""
    else:
        assert trader.strategy.ended == "STOP_TOP" and {"OPEN_MARKET_LONG", "CLOSE_LONG"} <= {f["role"] for f in fills}
        assert {"SELL_CLOSE_LONG", "STOP_LONG"} <= labels and trader.strategy.positions() == (0.0, 0.0)
        assert trader.strategy.desired(c) == [] and trader.book.live() == []
    upnl = sum((1 if side == "LONG" else -1) * (c - p[1]) * p[0] for (_, side), p in fake.pos.items())
    assert fake.wallet + upnl == pytest.approx(books["equity"], rel=1e-9)
    wanted = {lifecycle.client_order_id(trader.cfg.id, d.level, d.key) for d in trader.strategy.desired(c)}
    assert {o["cid"] for o in fake.open_orders_of()} == wanted == {o.cid for o in trader.book.live()}
    assert_invariants(trader, fake)
