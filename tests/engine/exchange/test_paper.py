"""The paper spot exchange (engine/exchange/paper.py), worked by hand: what it accepts and
refuses, what a candle fills and in which order, the money each fill moves, and its state
across a restart. (The paper perpetual: tests/engine/runtime/test_runtime_perp.py.)"""

import asyncio

import pytest

from engine.exchange.base import (
    CANCELED,
    CLOSED,
    OPEN,
    Adapter,
    InsufficientFunds,
    MarketRules,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
)
from engine.exchange.paper import PaperExchange

RULES = MarketRules("BTC/USDT", 0.01, 0.001, 0.001, 5.0, "BTC", "USDT")


def _exchange(**kw) -> PaperExchange:
    # (its market source serves nothing: the tests hand it each candle)
    return PaperExchange(Adapter(), RULES, quote=kw.pop("quote", 1_000.0), base=kw.pop("base", 1.0), maker_fee=0.001,
                         taker_fee=0.002, **kw)


def _order(side, price, qty, cid, kind="limit"):
    return OrderRequest("BTC/USDT", side, kind, qty, price, cid)


def test_a_candle_fills_along_its_path_at_the_prices_and_fees_of_the_semantics():
    ex = _exchange(base=2.0, slippage=0.01)

    async def go():
        for side, price, qty, cid in (("buy", 99.0, 2.0, "b99"), ("buy", 98.0, 2.0, "b98"), ("buy", 97.0, 2.0, "b97"),
                                      ("sell", 101.0, 0.5, "s101"), ("sell", 103.0, 0.5, "s103")):
            await ex.place(_order(side, price, qty, cid))
        await ex.place(_order("sell", 100.0, 0.1, "mkt", "market"))
        # a green candle: open 100, down to 97.5, up to 101.5, close 101
        return ex.on_candle(60_000, 100.0, 101.5, 97.5, 101.0)

    fills = asyncio.run(go())
    assert [(f.client_order_id, f.average, f.timestamp) for f in fills] == [
        ("mkt", 99.0, 60_000), ("b99", 99.0, 60_001), ("b98", 98.0, 60_002), ("s101", 101.0, 60_003)]
    assert fills[0].fee == pytest.approx(99.0 * 0.1 * 0.002)  # taker, at the open less 1% slippage
    assert fills[1].fee == pytest.approx(99.0 * 2.0 * 0.001)  # maker
    quote = 1_000.0 + 9.9 * 0.998 - 198.0 * 1.001 - 196.0 * 1.001 + 50.5 * 0.999
    assert ex.quote_total == pytest.approx(quote, abs=1e-9)
    assert ex.base_total == pytest.approx(2.0 - 0.1 + 4.0 - 0.5)
    assert ex.orders["b97"].status == OPEN and ex.orders["s103"].status == OPEN  # not reached
    assert ex.on_candle(60_000, 100.0, 200.0, 1.0, 100.0) == []  # a candle already matched fills nothing


def test_a_red_candle_sells_first_and_an_order_beyond_the_open_fills_at_the_open():
    ex = _exchange()

    async def go():
        await ex.place(_order("buy", 99.0, 1.0, "b"))
        await ex.place(_order("sell", 100.5, 0.5, "s"))
        return ex.on_candle(1, 101.0, 102.0, 98.0, 98.5)  # opens above the sell: it fills at the open

    fills = asyncio.run(go())
    assert [(f.client_order_id, f.average) for f in fills] == [("s", 101.0), ("b", 99.0)]


def test_fill_through_needs_the_price_more_than_a_tick_beyond_the_order():
    ex = _exchange(fill_rule="through")

    async def go():
        await ex.place(_order("buy", 99.0, 1.0, "b"))
        touched = ex.on_candle(1, 100.0, 100.0, 98.99, 99.5)  # one tick below: not through
        through = ex.on_candle(2, 99.5, 99.5, 98.98, 99.0)
        return touched, through

    touched, through = asyncio.run(go())
    assert touched == [] and [f.client_order_id for f in through] == ["b"]


def test_what_the_paper_exchange_refuses_and_what_resting_orders_hold_back():
    ex = _exchange(quote=300.0, base=0.5)

    async def go():
        await ex.place(_order("buy", 99.0, 2.0, "b1"))  # holds 198.198 of the 300
        with pytest.raises(InsufficientFunds, match=r"needs 109\.0089 USDT, free 101\.802"):
            await ex.place(_order("buy", 99.0, 1.1, "b2"))
        with pytest.raises(OrderRejected, match="duplicate client order id b1"):
            await ex.place(_order("buy", 50.0, 0.5, "b1"))
        with pytest.raises(OrderRejected, match=r"order value 0\.5000 is below the minimum 5"):
            await ex.place(_order("buy", 50.0, 0.01, "tiny"))  # 0.50 below the minimum of 5
        await ex.place(_order("sell", 110.0, 0.5, "s1"))
        with pytest.raises(InsufficientFunds, match="BTC"):
            await ex.place(_order("sell", 111.0, 0.1, "s2"))
        b = await ex.balance()
        cancelled = await ex.cancel("BTC/USDT", ex.orders["b1"])
        after = await ex.balance()
        return b, cancelled, after

    b, cancelled, after = asyncio.run(go())
    assert b.free["USDT"] == pytest.approx(300.0 - 198.198) and b.free["BTC"] == 0.0
    assert b.total == {"USDT": 300.0, "BTC": 0.5}
    assert cancelled.status == CANCELED and after.free["USDT"] == 300.0


def test_its_state_is_all_a_restart_needs():
    ex = _exchange()

    async def go():
        await ex.place(_order("buy", 99.0, 1.0, "b"))
        await ex.place(_order("sell", 120.0, 0.5, "s"))
        ex.on_candle(5, 100.0, 100.0, 98.0, 99.0)
        again = _exchange()
        again.restore(ex.state())
        books = (again.quote_total, again.base_total)
        await again.place(_order("buy", 90.0, 1.0, "b2"))
        return again, books, again.on_candle(5, 100.0, 130.0, 80.0, 99.0), again.on_candle(6, 100.0, 130.0, 80.0, 99.0)

    again, books, stale, fills = asyncio.run(go())
    assert books == (ex.quote_total, ex.base_total)
    assert stale == []  # the candle it had matched before the restart
    assert [f.client_order_id for f in fills] == ["s", "b2"] and all(f.status == CLOSED for f in fills)
    assert int(again.orders["b2"].id) > int(ex.orders["s"].id)  # ids go on, never reused


def test_ended_orders_leave_the_open_book_and_can_still_be_asked_about(monkeypatch):
    """What a candle and an order look through stays the size of the grid: ended orders leave
    the open book at the next candle, the last KEEP_ENDED are still answered for by id, and an
    id is never taken twice."""
    import engine.exchange.paper as paper

    monkeypatch.setattr(paper, "KEEP_ENDED", 3)
    ex = _exchange(quote=10_000.0)

    async def go():
        for i in range(5):
            await ex.place(_order("buy", 99.0 - i, 0.1, f"b{i}"))
        await ex.place(_order("buy", 50.0, 0.1, "far"))
        ex.on_candle(1, 100.0, 100.0, 94.0, 95.0)  # the five fill
        ex.on_candle(2, 95.0, 95.5, 94.5, 95.0)
        assert list(ex.orders) == ["far"] and list(ex.ended) == ["b2", "b3", "b4"]
        assert (await ex.order("BTC/USDT", "b4")).status == CLOSED
        with pytest.raises(OrderNotFound):
            await ex.order("BTC/USDT", "b0")  # beyond what is kept
        with pytest.raises(OrderRejected):
            await ex.place(_order("buy", 90.0, 0.1, "b4"))
        assert [o.client_order_id for o in await ex.open_orders("BTC/USDT")] == ["far"]

    asyncio.run(go())
