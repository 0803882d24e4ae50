"""The trader live over ccxt against the fake Binance, through every fault the fake can inject:
at the end the exchange holds exactly the orders the strategy wants, no order was sent twice
and every fill reached the strategy and the journal once."""

from __future__ import annotations

import asyncio
import json

import fake_exchange
import numpy as np
import pytest
from fake_exchange import (
    FAULTS,
    FakeBinance,
    assert_invariants,
    live_client,
    trade_candles,
    trade_through_faults,
    until,
)

from engine.risk import RiskGate, RiskLimits
from engine.runtime import lifecycle
from engine.runtime.config import SystemConfig
from engine.runtime.trader import Trader
from engine.store import EventLog, read_json, read_jsonl

KEY, SECRET = "live-key", "live-secret"
ENDPOINTS = ("POST /api/v3/order", "DELETE /api/v3/order", "GET /api/v3/openOrders", "GET /api/v3/order",
             "GET /api/v3/klines")


@pytest.fixture
def fake(btc5m):
    c = btc5m.slice(0, 800)
    rows = np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]
    server = FakeBinance({"BTCUSDT": rows}, c.timeframe_ms, keys={KEY: SECRET}, balances={"USDT": 10_000.0},
                         cursor=60, slow_seconds=1.0, order_limit=50)
    server.start()
    yield server
    server.stop()


def live_trader(fake, tmp_path, **risk_limits):
    cfg = SystemConfig(name="live", timeframe="5m", mode="live", dry_run=False, capital=10_000.0,
                       params={"levels": 16, "spacing": "arithmetic", "range_pct": 0.03, "recenter": 1.0})
    ex = live_client(fake, timeout_ms=500, retries=3)
    # the account is this system's alone: no share-of-the-portfolio cap (tested on its own below)
    limits = {"atr_jump": 1e9, "max_symbol_share": float("inf"), "max_total_share": float("inf"), **risk_limits}
    return Trader(cfg, ex, RiskGate(RiskLimits(**limits)), tmp_path)


def live_runner(fake, tmp_path, **risk_limits):
    """A live trader and the runner that measures its account (``check_solvency``)."""
    from engine.runtime.runner import Runner

    trader = live_trader(fake, tmp_path, **risk_limits)
    runner = Runner([], tmp_path, risk=trader.risk)
    runner.traders["live"] = trader
    return trader, runner


async def boot_and_trade(trader, fake, candles: int = 5) -> None:
    await trader.boot()
    await trader.poll()
    for _ in range(candles):
        fake.advance()
        await trader.poll()


@pytest.mark.slow
def test_a_run_through_every_fault_ends_with_exactly_the_wanted_orders(fake, tmp_path):
    trader = live_trader(fake, tmp_path)
    asyncio.run(trade_through_faults(trader, fake, ENDPOINTS, steps=150, every=5, seed=5))
    assert len(fake.faults_served) >= 25 and {k for _, k in fake.faults_served} == set(FAULTS)
    assert fake.duplicate_attempts == []
    wanted = {lifecycle.client_order_id(trader.cfg.id, d.level, d.key) for d in trader.strategy.desired(0.0)}
    assert {o["cid"] for o in fake.open_orders_of()} == wanted == {o.cid for o in trader.book.live()}
    records, _problems = read_jsonl(trader.journal_path)
    fills = [r["cid"] for r in records if r["type"] == "fill"]
    filled = {o["cid"] for o in fake.orders.values() if o["status"] == "FILLED"}
    assert len(fills) == len(set(fills)) and set(fills) == filled and len(filled) > 20
    assert trader.strategy.books(1.0)["fills"] == len(filled)
    usdt = fake.free["USDT"] + sum(o["locked"] for o in fake.open_orders_of())
    assert trader.strategy.books(1.0)["cash"] == pytest.approx(usdt, rel=1e-9)
    assert_invariants(trader, fake)


def test_kill_switch_stops_new_orders_and_cancel_all_cancels_only_ours(fake, tmp_path):
    trader = live_trader(fake, tmp_path)

    async def go():
        await trader.boot()
        await trader.poll()
        resting = len(fake.open_orders_of())
        # someone else's order on the same account and pair
        await trader.adapter.client.create_order("BTC/USDT", "limit", "buy", 0.001, 10_000.0,
                                                 {"clientOrderId": "manual-1"})
        trader.risk.kill()
        placed = len(fake.orders)
        for _ in range(40):
            fake.advance()
            await trader.poll()
        assert len(fake.orders) == placed  # not one new order
        assert trader.risk.audit[-1].rule == "kill_switch"
        assert len(fake.open_orders_of()) >= 1
        n = await trader.cancel_all()
        left = fake.open_orders_of()
        await trader.adapter.close()
        return resting, n, left

    resting, n, left = asyncio.run(go())
    assert resting > 5 and n >= 1
    assert [o["cid"] for o in left] == ["manual-1"]  # never touched what is not ours


def test_hot_boot_adopts_ours_and_leaves_unknown_orders_alone(fake, tmp_path):
    first = live_trader(fake, tmp_path)

    async def run_first():
        await first.boot()
        await first.poll()
        await first.adapter.client.create_order("BTC/USDT", "limit", "buy", 0.001, 10_000.0,
                                                {"clientOrderId": f"gd{first.cfg.id}-0-99999"})
        await first.adapter.close()

    asyncio.run(run_first())
    first.journal.close()
    # the state file is lost: the trader comes back from its backup, which knows no orders
    state = first.state_path
    bak = state.with_name(state.name + ".bak")
    state.write_text("{ torn")
    second = live_trader(fake, tmp_path)
    assert bak.exists()

    async def run_second():
        report = await second.boot()
        await second.adapter.close()
        return report

    report = asyncio.run(run_second())
    assert "kept as" in report["problem"]
    assert f"gd{first.cfg.id}-0-99999" in report["unknown"]
    ours = {o["cid"] for o in fake.open_orders_of()} - {f"gd{first.cfg.id}-0-99999"}
    assert ours and ours == {o.cid for o in second.book.live()}  # the grid's own: adopted or known
    assert any(p.name.startswith(state.name + ".corrupt") for p in state.parent.iterdir())


def test_a_withdrawal_pauses_the_live_systems_with_the_reason(fake, tmp_path):
    trader, runner = live_runner(fake, tmp_path)

    async def go():
        await boot_and_trade(trader, fake)
        assert await runner.check_solvency() == ""
        fake.free["USDT"] -= 4_000.0  # someone withdrew from the account
        msg = await runner.check_solvency()
        await trader.adapter.close()
        return msg

    msg = asyncio.run(go())
    assert "every allocation is cut to" in msg
    status = trader.risk.status("live")
    assert status.paused and status.reason.startswith("solvency: the account holds")
    runner.events.close()


def test_a_system_behind_replays_what_it_missed_and_sends_orders_for_now_only(fake, tmp_path):
    """Down for ten hours: the exchange filled what rested meanwhile. On return the trader reads
    those fills, replays the 120 candles through the strategy and sends one grid, priced for the
    market of now: nothing sent for an old candle and cancelled a moment later."""
    first = live_trader(fake, tmp_path)

    async def run_first():
        await first.boot()
        await first.poll()
        for _ in range(5):
            fake.advance()
            await first.poll()
        await first.adapter.close()

    asyncio.run(run_first())
    first.journal.close()
    filled = {o["cid"] for o in fake.orders.values() if o["status"] == "FILLED"}
    sent_before = set(fake.orders)
    fake.advance(120)
    filled_while_down = {o["cid"] for o in fake.orders.values() if o["status"] == "FILLED"} - filled
    assert filled_while_down

    second = live_trader(fake, tmp_path)

    async def run_second():
        await second.boot()
        n = await second.poll()
        await second.adapter.close()
        return n

    saved = read_json(second.state_path).data["last_time"]  # (the last candle that changed an order)
    behind = int((fake.candles["BTCUSDT"][fake.cursor - 1, 0] - saved) // second.tf)
    assert behind >= 120 and asyncio.run(run_second()) == behind
    close = float(fake.candles["BTCUSDT"][fake.cursor - 1, 4])
    sent = [o for oid, o in fake.orders.items() if oid not in sent_before]
    limits = [o for o in sent if o["type"] == "LIMIT"]  # (the recentred grid sells its stock at market)
    assert limits and all(o["status"] == "NEW" for o in limits)  # none cancelled again at once
    assert all(o["status"] == "FILLED" for o in sent if o["type"] == "MARKET")  # (at once, booked below)
    assert limits and all(o["price"] < close if o["side"] == "BUY" else o["price"] > close for o in limits)
    wanted = {lifecycle.client_order_id(second.cfg.id, d.level, d.key) for d in second.strategy.desired(close)}
    assert {o["cid"] for o in fake.open_orders_of()} == wanted == {o.cid for o in second.book.live()}
    records, _problems = read_jsonl(second.journal_path)
    journaled = [r["cid"] for r in records if r["type"] == "fill"]
    assert len(journaled) == len(set(journaled)) and filled_while_down <= set(journaled)
    assert {o["cid"] for o in sent if o["status"] == "FILLED"} <= set(journaled)


def test_a_live_grid_holds_to_its_share_of_what_the_account_holds(fake, tmp_path):
    """The default caps, 20% of the portfolio per symbol: a 10,000 grid in a 10,000 account lays
    orders up to 2,000 and the rest is denied with the reason; after a deposit the runtime's
    next measure of the account lets the grid lay more."""
    trader, runner = live_runner(fake, tmp_path, max_symbol_share=0.2, max_total_share=0.8)

    async def go():
        await trader.boot()
        await trader.poll()
        first = trader.risk.exposure("BTC/USDT", trader.account)
        denied = [d for d in trader.risk.audit if d.rule == "exposure_symbol"]
        fake.free["USDT"] += 40_000.0  # a deposit
        await runner.check_solvency()
        fake.advance()
        await trader.poll()
        await trader.adapter.close()
        return first, denied, trader.risk.exposure("BTC/USDT", trader.account)

    first, denied, after = asyncio.run(go())
    assert trader.account == "binance spot"
    assert 1_000 < first <= 2_000
    assert denied and "over 20% of the account binance spot (2,000.00 of 10,000.00)" in denied[0].reason
    assert trader.risk.portfolio(trader.account) == pytest.approx(50_000.0, rel=0.01)
    assert after > 4_000  # the whole grid: about half of it in resting buys
    runner.events.close()


def test_candles_come_on_the_stream_and_what_it_misses_is_refetched(fake, tmp_path):
    """With the exchange's websockets, a candle is processed as soon as the stream shows it
    closed, with no REST poll for candles; fills are reported from the order stream as they
    happen. The stream misses three closes (no REST poll meanwhile: the safety poll is a
    minute away): the candles it never carried are fetched, none is skipped. The stream drops
    and cannot reconnect for a while: the candles are polled meanwhile, and it reopens."""
    cfg = SystemConfig(name="live", timeframe="5m", mode="live", dry_run=False, capital=10_000.0,
                       params={"levels": 16, "spacing": "arithmetic", "range_pct": 0.03, "recenter": 1.0})
    ex = live_client(fake, websocket=True)
    limits = RiskLimits(atr_jump=1e9, max_symbol_share=float("inf"), max_total_share=float("inf"))
    events = EventLog(tmp_path / "logs")
    trader = Trader(cfg, ex, RiskGate(limits), tmp_path, event_log=events)
    times = fake.candles["BTCUSDT"][:, 0]

    def klines():
        return sum(r == "GET /api/v3/klines" for r in fake.requests)

    def logged(event):
        return [r for r in read_jsonl(events.path)[0] if r["event"] == event]

    async def advance(n=1):
        await asyncio.get_running_loop().run_in_executor(None, fake.advance, n)

    def caught_up():
        return trader.last_time == times[fake.cursor - 1]

    async def go():
        stop = asyncio.Event()
        task = asyncio.ensure_future(trader.run(stop, poll_seconds=1.0))
        await until(lambda: trader.strategy is not None and trader.strategy.started and trader.feed == "stream"
                    and fake.user_streams)
        before = klines()
        for _ in range(25):
            await advance()
            await until(caught_up)
        assert klines() == before  # every candle from the stream
        ours = [f for f in fake.fills if f["cid"].startswith(f"gd{cfg.id}-")]
        assert ours, "no fill: a weaker test"
        seen = {r["cid"] for r in logged("order_update") if r["filled"] > 0}
        rested = {f["cid"] for f in ours if f["time"] != fake.orders[fake.by_cid[f["cid"]]]["time"]}
        assert rested and rested <= seen  # each fill of a resting order reported from the stream (those
        # that traded on arrival are booked from the answer)

        fake.mute_klines = 3
        last = trader.last_time
        await advance(3)
        await asyncio.sleep(0.5)
        assert trader.last_time == last  # the stream said nothing; the REST poll is a minute away
        await advance()
        await until(caught_up)
        assert logged("stream_gap") and klines() == before + 1  # the three refetched, at once

        fake.streams = False
        await asyncio.get_running_loop().run_in_executor(None, fake.drop_streams)
        await until(lambda: not trader.streaming.get("candles"))
        for _ in range(3):
            await advance()
            await until(caught_up, 5)  # polled while the stream is down
        fake.streams = True
        await until(lambda: trader.feed == "stream", 20)  # (no poll meant for the time it was down)
        polled = klines()
        for _ in range(3):
            await advance()
            await until(caught_up)
        assert klines() == polled  # from the stream again
        assert logged("stream_error") and [r["stream"] for r in logged("stream_open")].count("candles") == 2
        stop.set()
        await task
        await ex.close()

    asyncio.run(asyncio.wait_for(go(), 90))
    records, _ = read_jsonl(trader.journal_path)
    fills = [r["cid"] for r in records if r["type"] == "fill"]
    assert set(fills) == {f["cid"] for f in fake.fills} and len(fills) == len(set(fills))
    assert (np.diff(trader.hist[:, 0]) == trader.tf).all()  # no candle skipped, none twice
    assert_invariants(trader, fake)


@pytest.mark.parametrize("streams", [True, False])
def test_paper_on_the_exchanges_candles_takes_them_from_the_stream_unless_told_not_to(fake, tmp_path, streams):
    """A paper system on live candles reads them from the exchange's public stream; with
    ``streams: false`` in its config it polls them."""
    from engine.runtime.runner import build_adapter

    cfg = SystemConfig(name="paper", timeframe="5m", exchange_url=fake.url, streams=streams, capital=10_000.0,
                       params={"levels": 16, "spacing": "arithmetic", "range_pct": 0.03, "recenter": 1.0})
    adapter = build_adapter(cfg)
    limits = RiskLimits(atr_jump=1e9, max_symbol_share=float("inf"), max_total_share=float("inf"))
    trader = Trader(cfg, adapter, RiskGate(limits), tmp_path)
    times = fake.candles["BTCUSDT"][:, 0]

    async def go():
        stop = asyncio.Event()
        task = asyncio.ensure_future(trader.run(stop, poll_seconds=0.05))
        for _ in range(1000):
            if trader.strategy is not None and trader.strategy.started and (trader.feed == "stream"
                                                                             or not streams):
                break
            await asyncio.sleep(0.01)
        before = fake.requests.count("GET /api/v3/klines")
        for _ in range(10):
            await asyncio.get_running_loop().run_in_executor(None, fake.advance)
            for _ in range(1000):
                if trader.last_time == times[fake.cursor - 1]:
                    break
                await asyncio.sleep(0.01)
        stop.set()
        await task
        await adapter.close()
        return fake.requests.count("GET /api/v3/klines") - before

    polled = asyncio.run(asyncio.wait_for(go(), 60))
    assert trader.last_time == times[fake.cursor - 1] and trader.strategy.books(1.0)["fills"] > 0
    assert (polled == 0) if streams else (polled >= 10)


def test_a_first_layout_across_the_market_is_booked_as_the_exchange_fills_it(fake, tmp_path):
    """A grid's first layout holds buys above the market: the exchange fills them at once as
    taker and says so in its answer, here only in part (0.004 BTC at the touch: the rest rests,
    and what a re-lay cancels is booked too; unlimited depth: the fault run above, whose first
    layout crosses too). Every such fill is booked when it happens, nothing is sent
    again, and after 50 candles the books equal the exchange and each fill is journaled once.
    (Before: the answer's fills were never booked, and each level was sent again, new id and
    all, at the next candle: the account spent several times the grid's capital.)"""
    fake.taker_depth = 0.004
    cfg = SystemConfig(name="cross", timeframe="5m", mode="live", dry_run=False, capital=10_000.0,
                       params={"levels": 20, "spacing": "arithmetic", "range_pct": 0.03, "trailing": "both"})
    ex = live_client(fake)
    limits = RiskLimits(atr_jump=1e9, max_symbol_share=float("inf"), max_total_share=float("inf"))
    trader = Trader(cfg, ex, RiskGate(limits), tmp_path)

    async def go():
        await trader.boot()
        await trader.poll()
        at_once = [f for f in fake.fills if f["time"] == fake._now()]
        for _ in range(50):
            fake.advance()
            await trader.poll()
        await ex.close()
        return at_once

    at_once = asyncio.run(go())
    assert len(at_once) >= 5  # the layout's buys above the market, filled on arrival
    assert_invariants(trader, fake)
    spent = sum(f["price"] * f["qty"] for f in fake.fills if f["cid"].startswith("gd"))
    assert trader.strategy.books(1.0)["fills"] > 20 and spent < 20 * cfg.capital
    parts = [f["cid"] for f in fake.fills]  # orders filled in parts: some of it on arrival, the rest later
    assert any(parts.count(cid) > 1 for cid in set(parts))


def test_what_a_resting_order_filled_in_part_counts_in_the_exposure(fake, tmp_path):
    """A buy filled in part that rests on (0.004 BTC at the touch) holds coins the books take
    only when it ends: the exposure the risk gate caps counts them meanwhile, as the order's
    whole size (before: neither the books nor the resting remainder held that part)."""
    fake.taker_depth = 0.004
    cfg = SystemConfig(name="part", timeframe="5m", mode="live", dry_run=False, capital=10_000.0,
                       params={"levels": 20, "spacing": "arithmetic", "range_pct": 0.03})
    trader = fake_exchange.live_trader(fake, cfg, tmp_path)

    async def go():
        await trader.boot()
        await trader.poll()
        await trader.adapter.close()

    asyncio.run(go())
    parts = [o for o in trader.book.live() if not o.reduces and 0 < o.filled < o.qty]
    assert parts, "no order rests filled in part: a weaker test"
    close = float(trader.hist[-1, 3])
    books = trader.strategy.books(close)["exposure"]
    want = books + sum(o.price * o.qty for o in trader.book.live() if not o.reduces)
    assert trader.risk.exposure("BTC/USDT") == pytest.approx(want, rel=1e-12)
    filled = sum(o.price * o.filled for o in parts)
    assert filled > 0 and want - books - sum(o.price * (o.qty - o.filled) for o in trader.book.live()
                                              if not o.reduces) == pytest.approx(filled, rel=1e-9)


def test_a_buys_commission_taken_in_coins_leaves_every_sell_its_coins_and_the_books_exact(fake, tmp_path):
    """Binance spot takes a buy's commission from the coins bought. The account holds no BTC
    but the grid's: each buy goes out a lot or so larger, so that what it leaves covers its
    level's sell; no sell is ever refused for want of coins, the books hold the exchange's
    balances to the satoshi-lot and the cent, and the journal holds each commission as the
    exchange took it. (Before: the books took every commission in USDT; each sell asked for
    coins the account did not have, was refused, and the system paused itself.)"""
    trader = live_trader(fake, tmp_path)
    asyncio.run(trade_candles(trader, fake, 120))
    ours = [o for o in fake.our_orders(f"gd{trader.cfg.id}-") if o["executed"] > 0]
    sells = [o for o in ours if o["side"] == "SELL"]
    assert len(sells) >= 10 and fake.short_of_funds == [] and not trader.refusals
    assert not trader.risk.status("live").paused
    fills, _ = read_jsonl(trader.journal_path)
    in_coins = sum(r.get("fee_base", 0.0) for r in fills if r["type"] == "fill")
    assert in_coins == pytest.approx(sum(f["fee"] for f in fake.fills if f["asset"] == "BTC"), rel=1e-9)
    assert in_coins > 0
    assert_invariants(trader, fake)
    books = trader.strategy.books(1.0)
    held = fake.free.get("BTC", 0.0) + sum(o["qty"] - o["executed"] for o in fake.open_orders_of()
                                          if o["side"] == "SELL")
    assert books["position"] == pytest.approx(held, abs=1e-9)  # to the coin, not only within a lot


def test_a_refused_order_backs_off_and_the_system_pauses_itself_with_the_reason(fake, tmp_path):
    """The account holds 300 USDT for a 10,000 grid: the exchange refuses most buys for want of
    balance (-2010). Each refused order is tried again after 1, 2, 4 candles (never at every
    candle), each time under a new client order id, the reason in the status; refused four
    times in a row, the system pauses its openings, in red, with the reason. (Before: 45
    re-sends in one run, nothing in the status.)"""
    fake.free["USDT"] = 300.0
    trader = live_trader(fake, tmp_path)
    asyncio.run(trade_candles(trader, fake, 12))
    refused = [c for c in fake.sent_cids if c not in fake.by_cid]  # (the exchange keeps no refused order)
    assert refused, "nothing refused: a weaker test"
    tries: dict[str, int] = {}
    for cid in refused:  # the same order's attempts: gd<id>-<level>-<key>, then .1, .2 ...
        key = cid.split(".")[0]
        tries[key] = tries.get(key, 0) + 1
    assert max(tries.values()) == 4  # 1 + 3 backed-off tries in 12 candles (1, 2, 4 candles apart), then paused
    assert len(fake.sent_cids) == len(set(fake.sent_cids)) and fake.duplicate_attempts == []
    status = trader.risk.status("live")
    assert status.paused and status.reason.startswith("orders refused 4 times in a row: InsufficientFunds")
    assert trader.summary()["status"] == "PAUSED"


def test_two_systems_never_share_a_state_file_and_a_trader_refuses_anothers(tmp_path):
    """"a/b" and "a b" would both be a_b.json: refused, naming both. A state file that names
    another system is never resumed, and never overwritten."""
    from engine.runtime.config import ConfigError, load_systems
    from engine.runtime.trader import StateNotOurs

    config = tmp_path / "cryptos.json"
    for a, b in (("a/b", "a b"), ("网格 grid", "比特 grid"), ("Grid", "grid")):
        config.write_text(json.dumps({"schema_version": 1, "systems": [{"name": a}, {"name": b}]}))
        with pytest.raises(ConfigError, match=f"systems {a!r} and {b!r} would share the state file"):
            load_systems(config)
    first = Trader(SystemConfig(name="a/b"), None, RiskGate(), tmp_path, paper=True)
    first.state_path.parent.mkdir(parents=True)
    first.state_path.write_text(json.dumps({"schema_version": 1, "system": "a/b", "id": first.cfg.id, "epoch": 0,
                                            "last_time": 0, "orders": []}))
    before = first.state_path.read_bytes()
    other = Trader(SystemConfig(name="a b"), None, RiskGate(), tmp_path, paper=True)
    assert other.state_path == first.state_path  # (what the refusal above prevents)
    with pytest.raises(StateNotOurs, match="the state of system 'a/b'"):
        other._load()
    assert first.state_path.read_bytes() == before


def test_books_that_differ_from_the_exchange_stop_the_openings_with_the_difference(fake, tmp_path):
    """What the account holds beyond the systems' books is measured when they start and must
    stay put. Fills the exchange made that the books apply at the next close are not a
    difference (seen once, gone at the next check); 0.01 BTC gone from the account outside
    GridDesk is, once seen at two checks in a row: the system's openings stop, the difference
    named in an error."""
    fake.free["USDT"] = 11_000.0  # (more than the grid's capital: the solvency check stays quiet)
    trader, runner = live_runner(fake, tmp_path)

    async def go():
        await boot_and_trade(trader, fake)
        assert await runner.check_solvency() == ""  # measured: the books agree
        in_flight = 0
        for _ in range(6):  # fills on the exchange before the trader has read them
            fills = len(fake.fills)
            fake.advance()
            in_flight += len(fake.fills) > fills
            assert await runner.check_solvency() == ""
            await trader.poll()
            assert await runner.check_solvency() == ""
        assert in_flight, "no fill in flight: a weaker test"
        with fake._lock:
            fake.free["BTC"] -= 0.01  # sold or withdrawn outside GridDesk
        assert await runner.check_solvency() == ""  # (once: it may be a fill not read yet)
        fake.advance()
        await trader.poll()
        msg = await runner.check_solvency()
        await trader.adapter.close()
        return msg

    msg = asyncio.run(go())
    assert "differ from the exchange: it holds BTC -0.01 more than the journal says" in msg
    status = trader.risk.status("live")
    assert status.paused and "differ from the exchange" in status.reason
    logged = read_jsonl(runner.events.path)[0]
    assert any(r["event"] == "books_mismatch" and r["difference"] == {"BTC": pytest.approx(-0.01)} for r in logged)
    runner.events.close()


def test_the_capital_guard_measures_the_exchange_and_stops_a_grid_spending_beyond_its_capital(fake, tmp_path):
    """The second line behind the books: were a fill ever lost to the books (the bug of a first
    layout across the market, simulated here by books that take no fill), the strategy would
    want the same level again and again, and each order would spend more of the account. The
    capital rule measures what the system holds on the exchange (the account's coins less what
    was not its own when it started, plus its resting buys) against its equity: past it, the
    system pauses in red and sends no more openings. (Before: the account spent several times
    the grid's capital.)"""
    fake.free["USDT"] = 50_000.0  # an account with more in it than this grid was given
    cfg = SystemConfig(name="cross", timeframe="5m", mode="live", dry_run=False, capital=10_000.0,
                       params={"levels": 20, "spacing": "arithmetic", "range_pct": 0.03, "trailing": "both"})
    ex = live_client(fake)
    limits = RiskLimits(atr_jump=1e9, max_symbol_share=float("inf"), max_total_share=float("inf"))
    trader = Trader(cfg, ex, RiskGate(limits), tmp_path)
    trader._apply_fill = lambda *a, **k: None  # a booking bug: the books never hear of a fill

    async def go():
        await trader.boot()
        for _ in range(40):
            await trader.poll()
            fake.advance()
        await ex.close()

    asyncio.run(go())
    status = trader.risk.status("cross")
    assert status.paused and status.reason.startswith("capital guard: cross would hold"), status.reason
    price = float(fake.candles["BTCUSDT"][fake.cursor - 1, 4])
    spent = sum(o["quote_qty"] for o in fake.our_orders("gd") if o["side"] == "BUY")
    one_order = max(o["price"] * o["qty"] for o in fake.our_orders("gd"))
    # at most what the capital allows, and the order in flight when it was measured
    assert spent <= cfg.capital * 1.02 + 2 * one_order, spent
    assert fake.free.get("BTC", 0.0) * price + sum(o["locked"] for o in fake.open_orders_of()) < 1.1 * cfg.capital
    # (the books here are broken on purpose, so of the invariants only these can hold: no id of
    # ours sent twice, and every order of ours on the exchange one the trader knows)
    assert fake.duplicate_attempts == [] and len(fake.sent_cids) == len(set(fake.sent_cids))
    assert {o["cid"] for o in fake.open_orders_of()} <= set(trader.book.orders)


def test_a_cancel_the_exchange_did_not_confirm_stays_pending_and_nothing_doubles_its_order(fake, tmp_path):
    """A cancel that fails (the exchange unreachable through every retry) leaves the order
    PENDING_CANCEL: it is still on the exchange and may fill, so nothing new goes out for its
    level; the next candle asks again, and once the exchange confirms it the level goes out
    with its next id. (Before, the order was told apart by its note only, and a level the
    grid still wanted was taken as resting.)"""
    trader = live_trader(fake, tmp_path)

    async def go():
        await trader.boot()
        await trader.poll()
        o = next(o for o in trader.book.live() if o.side == "buy")
        fake.inject("DELETE /api/v3/order", "500", times=4)  # the first try and its three retries
        await trader.cancel(o, "cancel: the user's")
        assert o.state == lifecycle.PENDING_CANCEL and o.note == "cancel: the user's"
        assert o.cid in {x["cid"] for x in fake.open_orders_of()}  # still on the exchange
        same_key = [c for c in fake.sent_cids if lifecycle.parse_client_order_id(c)[1] == o.key]
        fake.advance()
        await trader.poll()  # the grid still wants the level; the cancel is asked again, confirmed
        assert o.state == lifecycle.CANCELLED and o.note == "cancel: the user's"
        sent = [c for c in fake.sent_cids if lifecycle.parse_client_order_id(c)[1] == o.key]
        assert sent == same_key  # nothing new yet
        fake.advance()
        await trader.poll()
        again = [x for x in trader.book.live() if x.key == o.key]
        assert [x.cid for x in again] == [f"{o.cid}.1"]  # its next id
        await trader.adapter.close()

    asyncio.run(go())
    assert_invariants(trader, fake)
