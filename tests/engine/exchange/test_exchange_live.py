"""CcxtExchange (the real ccxt client) against the fake Binance on 127.0.0.1: signed requests,
our error types, retries that never duplicate an order, the order-rate budget."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from fake_exchange import FakeBinance, until

from engine.exchange import base
from engine.exchange.live import CcxtExchange, RateBudget

KEY, SECRET = "test-key-123", "test-secret-456"


@pytest.fixture
def fake(btc5m):
    c = btc5m.slice(0, 500)
    rows = np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]
    server = FakeBinance({"BTCUSDT": rows}, c.timeframe_ms, keys={KEY: SECRET},
                         balances={"USDT": 10_000.0, "BTC": 0.1}, cursor=100, slow_seconds=1.5)
    server.start()
    yield server
    server.stop()


def adapter(fake, **kw):
    kw.setdefault("backoff", 0.01)
    return CcxtExchange("binance", base_url=fake.url, api_key=KEY, secret=SECRET, timeout_ms=700, **kw)


def run(coro):
    return asyncio.run(coro)


def req(cid, price=15_000.0, qty=0.001, side="buy", type_="limit"):
    return base.OrderRequest("BTC/USDT", side, type_, qty, price, cid)


def test_rules_place_query_cancel_and_fills(fake):
    async def go():
        ex = adapter(fake)
        try:
            rules = await ex.market("BTC/USDT")
            assert (rules.tick, rules.lot, rules.min_notional) == (0.01, 1e-05, 5.0)
            assert rules.fee_in_received  # Binance spot: a buy's commission is taken in the coins bought
            r = await ex.place(req("gdt-1-1"))
            assert r.status == base.OPEN and r.client_order_id == "gdt-1-1" and r.qty == 0.001
            assert [o.client_order_id for o in await ex.open_orders("BTC/USDT")] == ["gdt-1-1"]
            sell = await ex.place(req("gdt-2-2", price=1.0e6, side="sell"))
            bal = await ex.balance()
            assert bal.free["USDT"] == pytest.approx(10_000 - 15.0)  # (its commission comes from the coins)
            assert bal.free["BTC"] == pytest.approx(0.099)
            c = await ex.cancel("BTC/USDT", sell)
            assert c.status == base.CANCELED
            # a buy far above the price fills when the next candle closes, at its open
            above = await ex.place(req("gdt-3-3", price=30_000.0))
            fake.advance()
            got = await ex.order("BTC/USDT", "gdt-3-3")
            assert got.status == base.CLOSED and got.filled == 0.001
            assert got.average == pytest.approx(float(fake.candles["BTCUSDT"][100, 1]))
            assert above.id == got.id
            # the placement's answer (FULL) tells the commission, in BTC; a lookup with the order's
            # trades (myTrades) too
            assert above.fee_told and above.fee == 0.0 and above.fee_base == pytest.approx(1e-6)
            assert got.fee_told and got.fee == 0.0 and got.fee_base == pytest.approx(1e-6)
            assert "GET /api/v3/myTrades" in " ".join(fake.requests)
            assert (await ex.balance()).free["BTC"] == pytest.approx(0.1 + 0.001 - 1e-6, abs=1e-12)
        finally:
            await ex.close()
    run(go())


def test_errors_are_ours_and_carry_no_secrets(fake):
    async def go():
        ex = adapter(fake)
        bad = CcxtExchange("binance", base_url=fake.url, api_key=KEY, secret="wrong-secret", backoff=0.01)
        try:
            with pytest.raises(base.OrderRejected, match="NOTIONAL"):
                await ex.place(req("gdt-1-1", qty=0.0001, price=100.0))
            with pytest.raises(base.InsufficientFunds):
                await ex.place(req("gdt-1-2", qty=5.0))
            with pytest.raises(base.OrderNotFound):
                await ex.order("BTC/USDT", "gdt-9-9")
            with pytest.raises(base.AuthError) as info:
                await bad.balance()
            assert "wrong-secret" not in str(info.value) and "signature=" not in str(info.value).lower().replace(
                "signature=***", "")
        finally:
            await ex.close()
            await bad.close()
    run(go())


@pytest.mark.parametrize("fault", ["timeout", "lost", "drop", "drop-after", "500", "429"])
def test_a_failed_placement_is_retried_without_a_duplicate(fake, fault):
    async def go():
        ex = adapter(fake)
        try:
            await ex.market("BTC/USDT")
            fake.inject("POST /api/v3/order", fault)
            r = await ex.place(req("gdt-5-5"))
            assert r.client_order_id == "gdt-5-5" and r.status == base.OPEN
        finally:
            await ex.close()
    run(go())
    assert fake.faults_served == [("POST /api/v3/order", fault)]
    assert [o["cid"] for o in fake.orders.values()] == ["gdt-5-5"]
    assert fake.duplicate_attempts == []


def test_temporary_errors_give_up_after_the_retry_limit(fake):
    async def go():
        ex = adapter(fake, retries=2)
        try:
            await ex.market("BTC/USDT")
            fake.inject("GET /api/v3/openOrders", "500", times=3)
            with pytest.raises(base.TemporaryError):
                await ex.open_orders("BTC/USDT")
            assert ex.retried == 2
            assert await ex.open_orders("BTC/USDT") == []  # the exchange is back
        finally:
            await ex.close()
    run(go())


def test_cancel_that_already_happened_reports_the_order(fake):
    async def go():
        ex = adapter(fake)
        try:
            r = await ex.place(req("gdt-1-1"))
            fake.inject("DELETE /api/v3/order", "drop-after")  # cancelled, the answer lost
            c = await ex.cancel("BTC/USDT", r)
            assert c.status == base.CANCELED
        finally:
            await ex.close()
    run(go())


def test_the_rate_budget_paces_a_100_order_grid_without_a_rejection(fake):
    clock = [0.0]
    budget = RateBudget(50, 10.0, clock=lambda: clock[0])

    async def go():
        ex = adapter(fake, budget=(50, 10.0))
        ex.budget = budget
        sleeps = []
        real_sleep = asyncio.sleep

        async def fake_sleep(s):
            sleeps.append(s)
            clock[0] += s
            await real_sleep(0)

        asyncio_sleep, asyncio.sleep = asyncio.sleep, fake_sleep
        try:
            reqs = [req(f"gdt-{i}-{i}", price=10_000.0 + i, qty=0.0006) for i in range(100)]
            results = await ex.place_many(reqs)
        finally:
            asyncio.sleep = asyncio_sleep
            await ex.close()
        return results, sleeps

    results, sleeps = run(go())
    assert all(isinstance(r, base.OrderReport) for r in results)
    assert len(fake.orders) == 100 and fake.duplicate_attempts == []
    # 100 orders at 50 per 10 s: the first fifty at once, the second fifty one window later
    # (ccxt's own pacing, whose sleeps the patch also counts, waits for none of them)
    assert 10.0 <= clock[0] < 10.1
    assert sum(sleeps) == pytest.approx(clock[0])


def test_the_rate_budget_never_lets_more_than_its_count_through_a_window():
    times = []

    async def go():
        b = RateBudget(5, 0.2)
        for _ in range(12):
            await b.acquire()
            times.append(time.monotonic())
    run(go())
    for i in range(5, len(times)):
        assert times[i] - times[i - 5] >= 0.2 - 1e-3


@pytest.mark.parametrize("market", ["spot", "perpetual"])
def test_the_clients_pacing_lets_a_minutes_weight_go_at_once_and_no_more(market):
    """ccxt's pacing of Binance requests by their weights: a restart's few dozen requests
    (one weighing 30, the position mode) go out at once, up to 1,200 in a minute (half of
    USDT-M's 2,400 a minute, a fifth of spot's 6,000); the next waits for the minute to pass.
    ccxt's default spaced each request by its weight from the first (50 ms a unit): a restarted
    grid waited 3-5 s to trade."""
    from engine.exchange.ccxt_factory import make_exchange

    async def go():
        client = make_exchange("binance", market=market)
        try:
            t = time.monotonic()
            for _ in range(40):
                await client.throttle(30)  # (the 40 weigh 1,200: 60 s at 50 ms a unit, spaced)
            at_once = time.monotonic() - t
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.throttle(1), 1.0)
            return at_once
        finally:
            await client.close()

    assert run(go()) < 5.0


def test_the_exchange_list_is_ccxts_without_importing_it():
    import subprocess
    import sys

    code = ("import sys; from engine.exchange.ccxt_factory import exchange_ids; ids = exchange_ids(); "
            "assert 'ccxt' not in sys.modules; import ccxt.async_support as c; assert ids == sorted(c.exchanges); "
            "assert 'binance' in ids and len(ids) > 50")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_candles_and_our_order_updates_come_on_the_streams(fake):
    """ccxt's pro client on the fake's websockets: the forming candle on subscribing, the closed
    one (final) and the next at each close; our order's updates (accepted, filled, cancelled)
    with its client order id, the fill's price and fee. (A stream is read by a loop that never
    stops watching: ccxt signals only the updates someone is waiting for.)"""
    async def go():
        ex = adapter(fake, websocket=True)
        assert ex.streams and ex.order_stream
        rows = fake.candles["BTCUSDT"]
        updates, candles = [], []

        async def read(watch, into):
            while True:
                into.append(await watch())

        readers = [asyncio.ensure_future(read(lambda: ex.watch_orders("BTC/USDT"), updates)),
                   asyncio.ensure_future(read(lambda: ex.watch_candles("BTC/USDT", "5m", 0), candles))]

        def seen(cid, status):
            return next((r for batch in updates for r in batch if r.client_order_id == cid and r.status == status),
                        None)

        await until(lambda: candles)
        assert [r[0] for r in candles[-1]] == [rows[100, 0]]  # the candle forming
        low = float(rows[101, 3])
        far = await ex.place(req("gd1-ws-far", price=low * 0.8, qty=0.002))
        await ex.place(req("gd1-ws-buy", price=low + 1, qty=0.002))
        await until(lambda: seen("gd1-ws-buy", base.OPEN) and seen("gd1-ws-far", base.OPEN))
        fake.advance()  # candle 100 closes (nothing fills), 101 forms
        await until(lambda: candles[-1][-1][0] == rows[101, 0])
        assert candles[-1][-2] == pytest.approx(list(rows[100, :6])) and not seen("gd1-ws-buy", base.CLOSED)
        fake.advance()  # 101 closes: the buy fills
        await until(lambda: seen("gd1-ws-buy", base.CLOSED))
        fill, want = seen("gd1-ws-buy", base.CLOSED), fake.fills[-1]
        assert fill.filled == pytest.approx(0.002) and want["cid"] == "gd1-ws-buy"
        assert fill.average == pytest.approx(want["price"])
        # each message tells its execution's commission (ccxt keeps them as the order's trades):
        # Binance spot takes a buy's in the coins bought
        assert fill.fee_told and fill.fee == 0.0 and fill.fee_base == pytest.approx(want["fee"]) and want["fee"] > 0
        await ex.cancel("BTC/USDT", far)
        await until(lambda: seen("gd1-ws-far", base.CANCELED))
        for r in readers:
            r.cancel()
        await ex.close()

    run(asyncio.wait_for(go(), 20))


def test_a_stream_that_drops_raises_our_temporary_error(fake):
    async def go():
        ex = adapter(fake, websocket=True)
        await ex.watch_candles("BTC/USDT", "5m", 0)
        pending = asyncio.ensure_future(ex.watch_candles("BTC/USDT", "5m", 0))
        await asyncio.sleep(0.2)
        await asyncio.get_running_loop().run_in_executor(None, fake.drop_streams)
        with pytest.raises(base.TemporaryError):
            await pending
        got = await ex.watch_candles("BTC/USDT", "5m", 0)  # a new connection: the candle forming
        assert got[-1][0] == fake.candles["BTCUSDT"][100, 0]
        await ex.close()

    run(asyncio.wait_for(go(), 20))
