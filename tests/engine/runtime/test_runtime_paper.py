"""The paper runtime drives the backtest's own strategy code: on the same candles it makes the
same trades, and it survives a restart from its state file."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from paper_run import Clock, drive, paper_trader

from engine.exchange.replay import ReplaySource
from engine.kernels import spot_grid as spot_kernel
from engine.risk import RiskLimits
from engine.runtime import lifecycle
from engine.runtime.config import ConfigError, SystemConfig
from engine.store import read_jsonl
from engine.strategies.spot_grid import SpotGridConfig, run_spot_grid
from engine.summary import backtest_summary


def make_trader(candles, params, tmp_path, *, warmup=1, capital=10_000.0, atr_jump=1e9):
    """A paper trader on a replay that closes one candle per ``clock.now += 1``, with the
    default risk limits. The ATR circuit breaker is off unless ``atr_jump`` is given: the
    backtest has none."""
    cfg = SystemConfig(name="paper test", timeframe="5m", params=params, capital=capital)
    d = RiskLimits()
    return paper_trader(candles, cfg, tmp_path, warmup=warmup, atr_jump=atr_jump,
                        max_symbol_share=d.max_symbol_share, max_total_share=d.max_total_share)


def journal_fills(trader):
    recs, problems = read_jsonl(trader.journal_path)
    assert problems == []
    return [r for r in recs if r["type"] == "fill"]


GRIDS = [
    dict(mode="range", spacing="geometric", levels=30, trailing="both", fee=0.001),
    dict(mode="range", spacing="arithmetic", levels=12, range_pct=0.05, recenter=1.0, fee=0.001),
    dict(mode="lower-only", spacing="atr", levels=10, atr_period=14, fee=0.00075),
]
QUEUE = dict(mode="range", spacing="geometric", levels=30, fee=0.001, fill_rule="queue", queue_depth=0.002,
             fill_seed=11)


@pytest.mark.parametrize("params", [*GRIDS, QUEUE], ids=["geometric-trailing", "arithmetic-recenter", "lower-only-atr",
                                                        "queue-fills"])
def test_paper_trading_makes_the_backtests_trades(btc5m, tmp_path, params):
    n = 3_000
    candles = btc5m.slice(0, n)
    bt = run_spot_grid(candles, SpotGridConfig.from_dict(dict(params, capital=10_000.0)))
    start = bt.params.start_bar
    trader, clock = make_trader(btc5m.slice(0, n + 1), params, tmp_path, warmup=start + 1)
    asyncio.run(drive(trader, clock, int(candles.time[-1])))
    fills = journal_fills(trader)
    assert len(bt.trades) > 20
    assert len(fills) == len(bt.trades)
    got = np.array([(f["bar"], f["price"], f["qty"]) for f in fills])
    want = np.c_[bt.trades["bar"], bt.trades["price"], bt.trades["qty"]]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    np.testing.assert_allclose([f["pnl"] for f in fills], bt.trades["pnl"], rtol=1e-7, atol=1e-7)
    books = trader.strategy.books(float(candles.close[-1]))
    assert books["equity"] == pytest.approx(bt.equity[-1], rel=1e-9)
    # the paper exchange's balances agree with the strategy's books (fees charged the same way)
    assert trader.adapter.quote_total == pytest.approx(books["cash"], rel=1e-9)
    assert trader.adapter.base_total == pytest.approx(books["position"], rel=1e-9, abs=1e-9)
    # what rests on the paper exchange is what the strategy wants
    resting = {o.client_order_id for o in asyncio.run(trader.adapter.open_orders("BTC/USDT"))}
    wanted = {lifecycle.client_order_id(trader.cfg.id, d.level, d.key) for d in trader.strategy.desired(0.0)}
    assert resting == wanted == {o.cid for o in trader.book.live()}
    # the bot's summary (Market tab, Grid tab) is the backtest's: each figure, the running time
    # from the candle the grid started at
    bot, want = trader.summary()["bot"], backtest_summary(bt, 10_000.0)
    assert bot.keys() == want.keys()
    for name, value in want.items():
        assert bot[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
    assert bot["round_trips"] == np.count_nonzero(bt.trades["role"] == spot_kernel.GRID_SELL) > 0
    assert bot["running_ms"] == candles.time[-1] - candles.time[start]
    assert bot["apr"] == pytest.approx(bot["roi"] / (bot["running_ms"] / 86_400_000) * 365)
    assert bot["total_pnl"] == pytest.approx(bt.equity[-1] - 10_000.0)


@pytest.mark.parametrize("params", [GRIDS[0], GRIDS[2]], ids=["geometric", "lower-only-atr"])
def test_a_trigger_price_waits_then_lays_the_grid_where_the_backtest_does(btc5m, tmp_path, params):
    """The grid waits, saying so, for the first candle after its warm-up whose range reaches the
    trigger price (from above or below), then trades as the backtest with that trigger does."""
    n = 3_000
    candles = btc5m.slice(0, n)
    warm = run_spot_grid(candles, SpotGridConfig.from_dict(dict(params, capital=10_000.0))).params.start_bar
    # a price beyond the first 500 candles' range: above it if the market goes there later, else below
    above = float(candles.high[warm:warm + 500].max()) * 1.0005
    below = float(candles.low[warm:warm + 500].min()) * 0.9995
    trigger = above if candles.high[warm + 500:].max() >= above else below
    first = next(b for b in range(warm, n) if candles.low[b] <= trigger <= candles.high[b])  # the oracle
    assert first >= warm + 500
    params = dict(params, trigger_price=trigger)
    bt = run_spot_grid(candles, SpotGridConfig.from_dict(dict(params, capital=10_000.0)))
    assert bt.params.start_bar == first and (len(bt.trades) == 0 or bt.trades["bar"].min() > first)
    trader, clock = make_trader(btc5m.slice(0, n + 1), params, tmp_path, warmup=warm + 1)
    asyncio.run(drive(trader, clock, int(candles.time[first - 1])))
    assert not trader.strategy.started and trader.book.orders == {}
    assert trader.summary()["note"] == f"waiting for the price to reach {trigger:,.8g} (its trigger) to lay the grid"
    asyncio.run(drive(trader, clock, int(candles.time[-1])))
    assert trader.started_at == int(candles.time[first]) and trader.summary()["note"] == ""
    fills = journal_fills(trader)
    assert len(fills) == len(bt.trades) > 10
    got = np.array([(f["bar"], f["price"], f["qty"]) for f in fills])
    np.testing.assert_allclose(got, np.c_[bt.trades["bar"], bt.trades["price"], bt.trades["qty"]], rtol=1e-9)
    assert trader.strategy.books(float(candles.close[-1]))["equity"] == pytest.approx(bt.equity[-1], rel=1e-9)


@pytest.mark.parametrize("stop", ["clean", "killed", "older-version"])
@pytest.mark.parametrize("params", [GRIDS[0], GRIDS[2]], ids=["geometric", "lower-only-atr"])
def test_restart_from_the_state_file_goes_on_as_if_nothing_happened(btc5m, tmp_path, params, stop):
    """A clean stop saves the state; a killed process left the state of the last candle that
    changed an order (candles that changed none are not saved one by one): the candles since
    are replayed on start, to the same trades. (The ATR-spaced grid needs its indicator
    history back after a restart.) A state saved by the version before the queue fill model
    (its kernel settings named ``fill_through``) goes on as well."""
    n = 2_000
    candles = btc5m.slice(0, n)
    end = int(candles.time[-1])
    warmup = 15 if params["spacing"] == "atr" else 1
    straight, clock = make_trader(btc5m.slice(0, n + 1), params, tmp_path / "a", warmup=warmup)
    asyncio.run(drive(straight, clock, end))

    first, clock = make_trader(btc5m.slice(0, n + 1), params, tmp_path / "b", warmup=warmup)
    asyncio.run(drive(first, clock, int(candles.time[700])))
    if stop != "killed":
        asyncio.run(first._save())  # what Trader.run does on its way out
    if stop == "older-version":
        state = json.loads(first.state_path.read_text())
        kernel_params = state["strategy"]["params"]
        kernel_params["fill_through"] = kernel_params.pop("fill_model")
        del kernel_params["queue_depth"], kernel_params["fill_seed"]
        first.state_path.write_text(json.dumps(state))
    first.journal.close()
    again, _ = make_trader(btc5m.slice(0, n + 1), params, tmp_path / "b", warmup=warmup)
    again.adapter.source = first.adapter.source  # the same market, going on
    report = asyncio.run(again.boot())
    assert report["resumed"] and report["unknown"] == [] and report["missing"] == []
    replayed = asyncio.run(again.poll())  # the candles closed since the state was saved
    assert again.last_time == int(candles.time[700]) and (replayed == 0 if stop != "killed" else replayed > 0)
    if params["spacing"] == "atr":  # the indicator history is back, not restarted from one candle
        from engine.kernels.indicators import atr_nb

        full = atr_nb(candles.high, candles.low, candles.close, 14)[700]
        assert again.strategy.indicators(again.hist)["atr"] == pytest.approx(full, rel=1e-12)
    asyncio.run(drive(again, clock, end))
    a, b = journal_fills(straight), journal_fills(again)
    assert [(f["cid"], f["price"]) for f in a] == [(f["cid"], f["price"]) for f in b]
    assert again.strategy.books(1.0) == straight.strategy.books(1.0)
    assert again.started_at == straight.started_at == int(candles.time[warmup - 1])  # kept in the state


def test_on_again_after_off_goes_on_from_the_next_candle_of_the_replay(btc5m, tmp_path):
    """OFF then ON builds the system anew on a new replay of the file (as the runner does): it
    goes on from the candle after the last it processed, one candle a step as before, not from
    the replay's first candle again (where it waited, silent, as long as it had run)."""
    params = GRIDS[0]
    c = btc5m.slice(0, 1_000)
    first, clock = make_trader(c, params, tmp_path)
    asyncio.run(drive(first, clock, int(c.time[600])))
    asyncio.run(first._save())  # (its way out at OFF)
    first.journal.close()
    again, clock = make_trader(c, params, tmp_path)  # a new replay, its clock not started
    assert asyncio.run(again.boot())["resumed"]
    assert asyncio.run(again.poll()) == 0 and again.last_time == int(c.time[600])
    clock.now += 1.0  # one replay step
    assert asyncio.run(again.poll()) == 1 and again.last_time == int(c.time[601])


def test_the_atr_circuit_breaker_pauses_new_buys_and_resumes(btc5m, tmp_path):
    """On this data the candle after row 136 (a 3% flush) lifts ATR by more than 30%: the
    grid's new buys are denied with the reason until volatility calms down; sells go on."""
    params = GRIDS[2]
    trader, clock = make_trader(btc5m.slice(0, 400), params, tmp_path, warmup=15, atr_jump=0.30)
    asyncio.run(drive(trader, clock, int(btc5m.time[137])))
    status = trader.risk.status(trader.cfg.name)
    assert status.paused and status.label == "PAUSED" and "volatility spike" in status.reason
    denied = [d for d in trader.risk.audit if d.rule == "paused"]
    assert denied and all(trader.book.orders.get(d.client_order_id) is None for d in denied)
    sells = 0
    for row in range(138, 160):  # while paused, every sell the grid wants rests (a buy denied
        asyncio.run(drive(trader, clock, int(btc5m.time[row])))  # before it stopped none)
        if not trader.risk.status(trader.cfg.name).paused:
            break
        live = {o.cid for o in trader.book.live()}
        wanted = [lifecycle.client_order_id(trader.cfg.id, d.level, d.key) for d in trader.strategy.desired(0.0)
                  if d.reduces]
        assert set(wanted) <= live, row
        sells += len(wanted)
    assert sells > 0
    asyncio.run(drive(trader, clock, int(btc5m.time[398])))
    assert not trader.risk.status(trader.cfg.name).paused
    wanted = {lifecycle.client_order_id(trader.cfg.id, d.level, d.key) for d in trader.strategy.desired(0.0)}
    assert wanted == {o.cid for o in trader.book.live()}  # what waited has gone out


def test_exposure_limits_hold_the_grids_buys_with_a_reason(btc5m, tmp_path):
    params = GRIDS[0]
    trader, clock = make_trader(btc5m.slice(0, 300), params, tmp_path)
    trader.risk.limits.max_symbol_notional = 3_000.0
    asyncio.run(drive(trader, clock, int(btc5m.time[200])))
    resting_buys = sum(o.price * o.qty for o in trader.book.live() if o.side == "buy")
    held = trader.strategy.books(0.0)["position"] * float(btc5m.close[200])
    assert trader.risk.exposure("BTC/USDT") == pytest.approx(resting_buys + held)
    assert resting_buys + held <= 3_000.0 * 1.02  # the last order in may overshoot by price moves
    denied = [d for d in trader.risk.audit if d.rule == "exposure_symbol"]
    assert denied and "over its limit 3,000.00" in denied[-1].reason


@pytest.mark.parametrize("name,needle", [
    (5, "cryptos.json: system 5: name: must be a non-empty text, got 5"),
    ("  ", "name: must be a non-empty text"),
    ("x" * 10_000, "name: is 10,000 characters long; at most 80"),
    ("live", "exchange: 'binanse': ccxt has no such exchange"),  # (was "live trading needs API keys")
])
def test_a_bad_system_name_is_one_line_naming_the_field(tmp_path, name, needle):
    """(name 5 was an AttributeError that stopped run and the app; 10,000 characters 'File name too long'.)"""
    import json

    from engine.runtime.config import ConfigError, load_systems

    path = tmp_path / "cryptos.json"
    system = {"name": name} if name != "live" else {"name": name, "exchange": "binanse", "mode": "live"}
    text = json.dumps({"schema_version": 1, "systems": [system]})
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_systems(path)
    assert needle in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 300
    assert path.read_text() == text  # nothing rewritten


def test_a_replay_starts_at_the_same_candle_however_late_it_is_first_asked(btc5m, tmp_path):
    """Two runs of one file trade the same candles: the replay's clock starts at its first
    request (not when it was made), from the candle after the warm-up or the one at
    ``replay_from``, whatever the machine did in between."""
    from engine.runtime.runner import _replay

    c = btc5m.slice(0, 500)
    firsts = []
    for late in (0.0, 7.5):
        clock = Clock()
        source = ReplaySource(c, seconds_per_candle=1.0, warmup=200, clock=clock)
        clock.now += late  # booting, compiling, a slow disk
        rows = asyncio.run(source.candles("BTC/USDT", "5m", None, 50))
        firsts.append(rows[-1][0])  # the candle forming at the first request
    assert firsts[0] == firsts[1] == int(c.time[200])
    path = tmp_path / "c.csv"
    c.to_frame().to_csv(path, index=False)
    when = int(c.time[321])
    cfg = SystemConfig(name="r", data=str(path), replay_from=str(when)).validate()
    assert _replay(cfg, path).forming_index() == 321
    with pytest.raises(ConfigError, match=r"replay_from: .* leaves no candle before or after it"):
        _replay(SystemConfig(name="r", data=str(path), replay_from="2001-01-01"), path)
    with pytest.raises(ConfigError, match="replay_from: 'soon' is not a date"):
        SystemConfig(name="r", data=str(path), replay_from="soon").validate()
