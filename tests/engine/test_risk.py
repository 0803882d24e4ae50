"""The risk gate: each rule, its reason, the audit trail, circuit breaker and solvency."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels.breaker import atr_breaker
from engine.risk import DENY, SEND, SIMULATE, AuditTrail, Market, OrderIntent, RiskGate, RiskLimits
from engine.store import EventLog, read_jsonl

MKT = Market(bid=99.9, ask=100.1, last=100.0, min_notional=5.0)


def order(**kw):
    base = dict(system="btc", symbol="BTC/USDT", side="buy", price=100.0, qty=1.0, client_order_id="gdbtc-1-1")
    return OrderIntent(**{**base, **kw})


def live_gate(**limits):
    g = RiskGate(RiskLimits(**limits))
    g.set_dry_run("btc", False)
    return g


def test_a_new_system_is_dry_run_and_an_order_is_simulated():
    g = RiskGate()
    d = g.check(order(), MKT)
    assert d.action == SIMULATE and d.allowed and d.rule == "dry_run"
    g.set_dry_run("btc", False)
    assert g.check(order(), MKT).action == SEND
    g.set_dry_run(None, True)  # the global switch wins
    assert g.check(order(), MKT).action == SIMULATE


def test_kill_switch_global_and_per_system_stop_every_new_order():
    g = live_gate()
    g.kill("btc")
    d = g.check(order(reduces=True), MKT)
    assert d.action == DENY and d.rule == "kill_switch" and "btc" in d.reason
    assert g.check(order(system="eth", symbol="ETH/USDT"), MKT).allowed
    g.release("btc")
    g.kill()
    assert g.check(order(system="eth"), MKT).reason == "the global kill switch is on"
    assert g.status("btc").reason == "global kill switch"
    g.release()
    assert g.check(order(), MKT).action == SEND


@pytest.mark.parametrize("kw,market,rule,text", [
    (dict(qty=0.01), MKT, "min_notional", "order value 1.00 is below the minimum 5"),
    ({}, Market(bid=99.0, ask=101.0, last=100.0), "spread", "spread 2.000% is wider than 0.500%"),
    (dict(price=107.0, type="market"), MKT, "deviation", "price 107 is 7.00% from the last trade 100"),
    (dict(qty=0.0), MKT, "invalid", "must be > 0"),
])
def test_pre_trade_checks_deny_with_a_reason(kw, market, rule, text):
    """(A limit order far from the price is the grid's design: only market orders are held to
    the deviation limit.)"""
    g = live_gate()
    d = g.check(order(**kw), market)
    assert d.action == DENY and d.rule == rule and text in d.reason
    assert g.audit[-1].rule == rule and g.audit[-1].client_order_id == "gdbtc-1-1"


def test_exposure_limits_per_symbol_and_total_but_reducing_orders_pass():
    g = live_gate(max_symbol_notional=1_000, max_total_notional=1_500)
    g.set_exposure("BTC/USDT", 950)
    d = g.check(order(), MKT)
    assert d.rule == "exposure_symbol" and "1,050.00, over its limit 1,000.00" in d.reason
    assert g.check(order(reduces=True, side="sell"), MKT).action == SEND
    g.set_exposure("BTC/USDT", 500)
    g.set_exposure("ETH/USDT", 950)
    d = g.check(order(), MKT)
    assert d.rule == "exposure_total" and "1,550.00" in d.reason


def test_the_capital_guard_holds_a_live_system_to_what_its_capital_allows():
    g = live_gate(max_symbol_share=float("inf"), max_total_share=float("inf"))
    assert g.check(order(qty=500.0), MKT).action == SEND  # a paper system, or not measured yet: no rule
    g.set_capital("btc", 1_000.0, 900.0)  # holds (on the exchange) and rests 900 of its 1,000
    assert g.check(order(qty=1.2), MKT).action == SEND  # 1,020: within the 2% slack
    g.commit("btc", 120.0)  # sent: counted until the next measure
    d = g.check(order(qty=1.0), MKT)
    assert d.action == DENY and d.rule == "capital" and "would hold 1,120.00" in d.reason and "1,000.00" in d.reason
    status = g.status("btc")  # and the system pauses, in red, with the reason
    assert status.paused and status.reason.startswith("capital guard: btc would hold 1,120.00")
    assert g.check(order(side="sell", reduces=True), MKT).action == SEND  # closing always passes
    assert g.check(order(system="eth", symbol="ETH/USDT"), MKT).allowed  # the rule is per system
    g.resume("btc")
    g.set_capital("btc", 1_000.0, 100.0)  # measured again after the user's look
    assert g.check(order(), MKT).action == SEND


def test_portfolio_shares_per_account_20_and_80_percent_by_default():
    """Paper systems share the paper account (100,000 by default); a live account's value is
    measured by the runtime, and until it is no order adds exposure there."""
    g = live_gate()
    g.set_exposure("BTC/USDT", 19_950.0, "btc")
    d = g.check(order(), MKT)  # 100 more
    assert d.rule == "exposure_symbol"
    assert "BTC/USDT exposure would be 20,050.00, over 20% of the paper account (20,000.00 of 100,000.00)" in d.reason
    g.set_exposure("BTC/USDT", 19_900.0, "btc")
    assert g.check(order(), MKT).action == SEND  # exactly 20%
    for i, sym in enumerate(("ETH/USDT", "SOL/USDT", "XRP/USDT")):
        g.set_exposure(sym, 20_050.0, f"other{i}")
    d = g.check(order(), MKT)
    assert d.rule == "exposure_total"
    assert "total exposure would be 80,150.00, over 80% of the paper account (80,000.00 of 100,000.00)" in d.reason
    assert g.check(order(reduces=True, side="sell"), MKT).action == SEND
    g.limits.paper_portfolio = 200_000.0  # the Risk tab's setting
    assert g.check(order(), MKT).action == SEND

    # a live account: its own systems only, against its own value
    g.set_account("live", "binance spot")
    live = order(system="live")
    g.set_dry_run("live", False)
    d = g.check(live, MKT)
    assert d.rule == "exposure_unknown" and "binance spot" in d.reason
    g.set_portfolio("binance spot", 1_000.0)
    assert g.check(live, MKT).action == SEND  # the paper systems' 80,000 are not this account's
    g.set_exposure("BTC/USDT", 150.0, "live")
    d = g.check(live, MKT)
    assert d.rule == "exposure_symbol" and "over 20% of the account binance spot (200.00 of 1,000.00)" in d.reason
    g.limits.max_symbol_share = float("inf")  # none: the total still holds
    g.set_exposure("BTC/USDT", 750.0, "live")
    assert g.check(live, MKT).rule == "exposure_total"


def test_share_limits_are_validated():
    with pytest.raises(ValueError, match="max_symbol_share: must be > 0"):
        RiskGate(RiskLimits(max_symbol_share=0.0))
    with pytest.raises(ValueError, match="paper_portfolio: must be > 0"):
        RiskGate(RiskLimits(paper_portfolio=-1.0))


def test_atr_jump_pauses_and_calm_candles_resume():
    g = live_gate(atr_jump=0.3, calm_candles=2)
    g.system("btc").on = True
    g.on_candle("btc", 10.0, "UP")
    assert g.status("btc").label == "ON" and g.status("btc").trend == "UP"
    st = g.on_candle("btc", 14.0)  # +40% in one candle
    assert st.paused and st.vol_spike and "ATR changed 40%" in st.reason and st.label == "PAUSED"
    d = g.check(order(), MKT)
    assert d.rule == "paused" and "volatility spike" in d.reason
    assert g.check(order(reduces=True, side="sell"), MKT).allowed  # closing still allowed
    g.on_candle("btc", 14.5)
    assert g.status("btc").paused  # one calm candle is not enough
    g.on_candle("btc", 14.6)
    assert not g.status("btc").paused and g.check(order(), MKT).action == SEND


def test_solvency_haircut_cuts_every_allocation_in_proportion():
    g = RiskGate()
    alloc, msg = g.solvency(15_000.0, {"btc": 10_000.0, "eth": 10_000.0})
    assert alloc == {"btc": 7_500.0, "eth": 7_500.0} and "cut to 75.0%" in msg
    alloc, msg = g.solvency(30_000.0, {"btc": 10_000.0, "eth": 10_000.0})
    assert alloc == {"btc": 10_000.0, "eth": 10_000.0} and msg == ""


def test_denials_are_logged_and_shown_newest_first(tmp_path):
    log = EventLog(tmp_path / "logs")
    g = RiskGate(event_log=log)
    g.set_dry_run("btc", False)
    g.kill("btc")
    g.check(order(client_order_id="gdbtc-1-1"), MKT)
    g.check(order(client_order_id="gdbtc-2-1"), MKT)
    log.close()
    recs, _ = read_jsonl(log.path)
    denied = [r for r in recs if r["event"] == "risk_denied"]
    assert [r["cid"] for r in denied] == ["gdbtc-1-1", "gdbtc-2-1"] and denied[0]["rule"] == "kill_switch"
    rows = AuditTrail(g).rows()
    assert [r[3] for r in rows] == ["gdbtc-2-1", "gdbtc-1-1"]
    json.dumps(rows)  # plain values, ready for a table or an export


def test_limits_are_validated():
    with pytest.raises(ValueError, match="max_spread"):
        RiskGate(RiskLimits(max_spread=0))


def test_a_denial_asked_again_is_recorded_once_and_killed_systems_say_so():
    g = live_gate()
    g.system("btc").on = True
    g.kill()
    assert g.status("btc").label == "KILLED" and g.status("btc").on
    for _ in range(5):  # the same order asked about on five candles
        assert g.check(order(), MKT).rule == "kill_switch"
    assert len([d for d in g.audit if d.rule == "kill_switch"]) == 1
    g.release()
    assert g.check(order(), MKT).action == SEND and g.status("btc").label.startswith("ON")
    g.kill()
    g.check(order(), MKT)
    assert len([d for d in g.audit if d.rule == "kill_switch"]) == 2  # a new episode is recorded


@settings(max_examples=200, deadline=None)
@given(mine=st.floats(0, 30_000), other_here=st.floats(0, 30_000), other_there=st.floats(0, 90_000),
       paper=st.floats(1_000, 500_000), fixed=st.sampled_from([float("inf"), 25_000.0, 60_000.0]),
       total=st.sampled_from([float("inf"), 70_000.0]))
def test_the_exposure_room_a_strategy_is_told_is_what_the_gate_lets_through(mine, other_here, other_there, paper,
                                                                             fixed, total):
    """The room is the largest opening rule 5 passes beside what every system holds: one an
    hundredth smaller passes, one an hundredth larger is refused (a strategy told the room never
    wants an order the gate would refuse, nor gives up one it would pass)."""
    g = live_gate(paper_portfolio=paper, max_symbol_notional=fixed, max_total_notional=total)
    g.set_exposure("BTC/USDT", mine, "btc")
    g.set_exposure("BTC/USDT", other_here, "btc2")
    g.set_exposure("ETH/USDT", other_there, "eth")
    room = g.exposure_room("btc", "BTC/USDT")
    space = room - mine  # what one more opening may add
    if space > 0.02:
        assert g.check(order(price=1.0, qty=space - 0.01), Market()).action == SEND
    assert g.check(order(price=1.0, qty=max(space, 0.0) + 0.01), Market()).action == DENY


def test_the_gate_tells_a_paused_system_to_open_nothing():
    g = live_gate()
    assert g.gate("btc", "BTC/USDT") == (False, 20_000.0)  # 20% of the paper account of 100,000
    g.pause("btc", "orders refused")
    assert g.gate("btc", "BTC/USDT").paused
    g.resume("btc")
    g.kill()
    assert g.gate("btc", "BTC/USDT").paused


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.just(float("nan")), st.floats(0.5, 2.0)), min_size=1, max_size=80),
       st.integers(1, 5))
def test_the_backtests_breaker_pauses_where_the_runtimes_does(steps, calm):
    """``atr_breaker`` over a series (the backtest's) pauses at the closes where feeding the gate
    one candle at a time (the runtime) pauses the system; a user's resume is the runtime's own."""
    atr = np.cumprod(np.nan_to_num(np.array(steps), nan=1.0)) * 100.0
    atr[np.isnan(steps)] = np.nan  # warming up: no ATR yet
    g = RiskGate(RiskLimits(atr_jump=0.3, calm_candles=calm))
    fed = [g.on_candle("btc", 0.0 if np.isnan(a) else a).paused for a in atr]
    assert atr_breaker(atr, 0.3, calm).tolist() == fed
    assert atr_breaker(atr, 0.3, calm, first=3).tolist()[:3] == [False] * min(3, len(atr))


def test_the_risk_tab_sees_each_exposure_against_its_tightest_limit():
    """The shares of the paper account (20% a symbol, 80% in all, of 100,000) and a quote cap
    of 15,000 a symbol: BTC's tightest is the cap, the total's is the share."""
    g = RiskGate(RiskLimits(max_symbol_notional=15_000.0))
    g.set_exposure("BTC/USDT", 12_000.0, system="a")
    g.set_exposure("BTC/USDT", 1_500.0, system="b")
    g.set_exposure("ETH/USDT", 4_000.0, system="c")
    rows = {what: (used, limit) for what, used, limit, _ in g.exposure_in_sight()}
    assert rows == {"BTC/USDT exposure": (13_500.0, 15_000.0), "ETH/USDT exposure": (4_000.0, 15_000.0),
                    "total exposure": (17_500.0, 80_000.0)}
    assert RiskGate(RiskLimits(max_symbol_share=float("inf"), max_total_share=float("inf"))).exposure_in_sight() == []
