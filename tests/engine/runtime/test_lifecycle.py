"""The order state table as the trader moves an order along what the exchange reports."""

from __future__ import annotations

import pytest

from engine.exchange import base
from engine.risk import RiskGate
from engine.runtime import lifecycle
from engine.runtime.config import SystemConfig
from engine.runtime.trader import ENDED, Trader
from engine.store import read_jsonl


def report(status: str, filled: float) -> base.OrderReport:
    return base.OrderReport("1", "gdx-0-1", "BTC/USDT", "buy", "limit", 100.0, 1.0, filled, 100.0 if filled else 0.0,
                          0.0, status)


def test_an_order_being_cancelled_keeps_its_state_and_reason_through_a_fill_until_the_exchange_ends_it(tmp_path):
    trader = Trader(SystemConfig(name="x"), None, RiskGate(), tmp_path, paper=True)
    o = trader.book.add(lifecycle.TrackedOrder("gdx-0-1", 1, "buy", "limit", 100.0, 1.0, 0, "GRID_BUY",
                                               state=lifecycle.OPEN))
    trader.book.move(o.cid, lifecycle.PENDING_CANCEL, "cancel: the user's")
    assert trader._apply_report(o, report(base.OPEN, 0.4)) == ""  # a fill while the cancel is on its way
    assert (o.state, o.note, o.filled) == (lifecycle.PENDING_CANCEL, "cancel: the user's", 0.4)
    assert trader._apply_report(o, report(base.CANCELED, 0.4)) == ENDED  # booked apart from the levels
    assert o.state == lifecycle.CANCELLED
    assert o.note == "cancel: the user's; 0.4 of 1 filled before (booked apart from the grid's levels)"
    with pytest.raises(lifecycle.LifecycleError, match="cancelled -> pending_cancel is not a valid transition"):
        trader.book.move(o.cid, lifecycle.PENDING_CANCEL, "again")
    trader.journal.close()
    journaled = [(r["state"], r["filled"]) for r in read_jsonl(trader.journal_path)[0] if r["type"] == "order"]
    assert journaled == [(lifecycle.OPEN, 0.0), (lifecycle.PENDING_CANCEL, 0.0), (lifecycle.PENDING_CANCEL, 0.4),
                         (lifecycle.CANCELLED, 0.4)]
