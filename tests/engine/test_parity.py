"""The parity report (engine/parity.py): a paper system beside the backtest of its settings on
the same candles has no difference; every change to its journal is named with the money it
accounts for; a live system on the fake Binance, whose first layout the exchange fills at once
as taker and whose buys pay their commission in coins, has its differences named and adding up
to the gap between the two equities to the cent, with the books equal to the exchange."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from conftest import BTC_5M, shared_file
from fake_exchange import FakeBinance, assert_invariants, live_trader, trade_candles
from paper_run import drive, paper_trader

from app.cli import main
from engine.exchange.base import MarketRules
from engine.kernels import spot_grid as spot_kernel
from engine.parity import Fill, ParityError, parity, system_candles
from engine.runtime.config import SystemConfig, save_systems
from engine.store import read_jsonl

# lower-only, ATR-spaced: its spacing rests on the indicator's history, which the report's
# backtest must see as the system did (from its first candle), and it starts 60 candles in
PAPER = SystemConfig(name="paper parity", timeframe="5m", capital=10_000.0, data=str(shared_file(BTC_5M)),
                     params={"mode": "lower-only", "spacing": "atr", "levels": 10, "atr_period": 14, "fee": 0.00075})


def paper_system(candles, tmp_path, n: int = 1_500):
    rules = MarketRules("BTC/USDT", 0.01, 1e-5, 0.0, 5.0, "BTC", "USDT")  # (the exchange's, not the settings')
    trader, clock = paper_trader(candles.slice(0, n + 1), PAPER, tmp_path, warmup=60, rules=rules)
    asyncio.run(drive(trader, clock, int(candles.time[n - 1])))
    asyncio.run(trader._save())
    return trader


@pytest.fixture(scope="module")
def paper_run(btc5m, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper")
    return paper_system(btc5m, tmp), tmp


def test_a_paper_system_is_its_backtest_fill_for_fill(btc5m, paper_run):
    trader, tmp = paper_run
    r = parity(PAPER, tmp, btc5m)
    fills = [x for x in read_jsonl(trader.journal_path)[0] if x["type"] == "fill"]
    assert r.first == trader.started_at == int(btc5m.time[59]) and r.bars == 1_500 - 59
    assert r.system_fills == r.backtest_fills == r.matched == len(fills) > 30
    assert r.differences == [] and r.gap == pytest.approx(0.0, abs=1e-6)
    assert r.system_equity == pytest.approx(trader.strategy.books(r.last_close)["equity"], rel=1e-12)
    assert "no difference" in r.text()


def test_each_change_to_the_journal_is_named_with_its_money(btc5m, paper_run, tmp_path):
    """A fill taken out, one moved a candle, one at another price and fee: each is named, its
    money is the system's effect on the equity minus the backtest's, and they add up to the gap."""
    _, src = paper_run
    import shutil

    shutil.copytree(src, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "journal" / f"{PAPER.slug}.jsonl"
    records, _ = read_jsonl(path)
    at = [i for i, x in enumerate(records) if x["type"] == "fill"]
    gone, late, dear = records[at[5]], records[at[9]], records[at[14]]
    late["bar"] += 2
    dear["price"] *= 1.001
    dear["fee"] *= 2
    path.write_text("".join(json.dumps(x) + "\n" for x in records if x is not gone))
    r = parity(PAPER, tmp_path, btc5m)
    kinds = {d.kind: d for d in r.differences}
    assert sorted(kinds) == ["backtest only", "price, fee", "timing"] and len(r.differences) == 3
    last = r.last_close
    effect = lambda x: (1 if x["side"] == "buy" else -1) * x["qty"] * (last - x["price"]) - x["fee"]  # noqa: E731
    assert kinds["backtest only"].money == pytest.approx(-effect(gone), abs=1e-9)
    assert kinds["timing"].money == pytest.approx(0.0, abs=1e-9)  # the same fill two candles later
    original = dict(dear, price=dear["price"] / 1.001, fee=dear["fee"] / 2)
    assert kinds["price, fee"].money == pytest.approx(effect(dear) - effect(original), abs=1e-9)
    assert sum(d.money for d in r.differences) == pytest.approx(r.gap, abs=1e-9)
    assert r.matched == r.backtest_fills - 3
    text = r.text()
    assert "backtest only" in text and "the backtest filled it, the system did not" in text


def test_griddesk_parity_prints_the_report_and_writes_nothing(btc5m, paper_run, tmp_path, capsys):
    _, data_dir = paper_run
    config = tmp_path / "cryptos.json"
    save_systems(config, [PAPER])
    before = {p: p.stat().st_mtime_ns for p in data_dir.rglob("*")}
    assert main(["parity", PAPER.name, "--config", str(config), "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "GridDesk parity: paper parity" in out and "no difference" in out and BTC_5M in out
    assert {p: p.stat().st_mtime_ns for p in data_dir.rglob("*")} == before  # (read only)
    assert main(["parity", "nobody", "--config", str(config), "--data-dir", str(data_dir)]) == 2
    assert "has no system 'nobody'" in capsys.readouterr().err
    assert main(["parity", PAPER.name, "--config", str(config), "--data-dir", str(tmp_path / "empty")]) == 2
    assert "has not traded yet" in capsys.readouterr().err


def test_an_infinity_grid_on_paper_is_its_backtest_reserve_and_window_moves_included(btc5m, tmp_path):
    cfg = SystemConfig(name="infinity parity", timeframe="5m", capital=10_000.0, strategy="infinity-grid",
                       params={"step": 0.004, "levels": 12, "lot": 0.0})
    trader, clock = paper_trader(btc5m.slice(0, 3_001), cfg, tmp_path, warmup=20)
    asyncio.run(drive(trader, clock, int(btc5m.time[2_999])))
    asyncio.run(trader._save())
    r = parity(cfg, tmp_path, btc5m)
    moved = trader.strategy.arrays["counters"]
    assert moved[spot_kernel.C_TRAIL_UP] > 0 and moved[spot_kernel.C_TRAIL_DOWN] > 0
    assert r.system_fills == r.backtest_fills == r.matched > 50 and r.differences == []


def test_candles_that_do_not_cover_the_span_are_refused_by_name(btc5m, paper_run):
    _, tmp = paper_run
    with pytest.raises(ParityError, match="do not cover the system's span"):
        parity(PAPER, tmp, btc5m.slice(100, 5_000))


def test_a_live_system_on_the_fake_binance_names_what_the_exchange_did_otherwise(btc5m, tmp_path):
    """The first layout's buys above the market fill at once as taker (0.004 BTC at the touch
    each, the rest resting), Binance takes a buy's commission in the coins bought (so each buy
    goes out a lot larger): the report pairs each of those fills with the backtest's and names
    the quantity, price and fee, with money adding up to the gap; the system's equity is its
    books'; and the run ends with the invariants."""
    c = btc5m.slice(0, 800)
    fake = FakeBinance({"BTCUSDT": np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]}, c.timeframe_ms,
                       keys={"k": "s"}, balances={"USDT": 10_000.0}, cursor=60, slow_seconds=1.0)
    fake.taker_depth = 0.004
    fake.start()
    cfg = SystemConfig(name="live parity", timeframe="5m", mode="live", dry_run=False, capital=10_000.0,
                       params={"levels": 20, "spacing": "arithmetic", "range_pct": 0.03, "trailing": "both"})
    trader = live_trader(fake, cfg, tmp_path)

    async def go():
        await trade_candles(trader, fake, 50)
        await trader._save()
        return await system_candles(cfg, tmp_path, base_url=fake.url)

    try:
        candles, where = asyncio.run(go())
        assert_invariants(trader, fake)
    finally:
        fake.stop()
    r = parity(cfg, tmp_path, candles, candles_from=where)
    fills = [x for x in read_jsonl(trader.journal_path)[0] if x["type"] == "fill"]
    assert r.system_fills == len(fills) > 15
    assert r.system_equity == pytest.approx(trader.strategy.books(r.last_close)["equity"], abs=1e-6)
    assert sum(d.money for d in r.differences) == pytest.approx(r.gap, abs=1e-6)
    layout = r.first + 5 * 60_000  # the candle after the one the grid was laid at
    first = [d for d in r.differences if d.time == layout and d.kind == "quantity, price, fee"]
    assert len(first) >= 5  # the layout's buys above the market: taker, at the ask, commission in coins
    for d in first:
        assert d.system.fee_base > 0 and d.system.qty > d.backtest.qty and d.system.price > d.backtest.price
    assert all(isinstance(d.system or d.backtest, Fill) for d in r.differences)
    assert "quantity, price, fee" in r.text() and where == "binance's BTC/USDT 5m candles"


@pytest.mark.parametrize("strategy,params", [
    ("futures-grid", {"direction": "neutral", "leverage": 3.0, "range_pct": 0.03, "levels": 15}),
    ("futures-grid", {"direction": "long", "leverage": 2.0, "range_pct": 0.025, "levels": 11, "stop_top": 19_800.0}),
    ("adaptive-grid", {"leverage": 3.0, "stop_m": 2.5, "prune_age_hours": 6.0}),
], ids=["futures-neutral", "futures-long-to-its-stop-top", "adaptive"])
def test_a_paper_perpetual_is_its_backtest_fill_for_fill_by_what_each_did(btc5m, tmp_path, strategy, params):
    """A perpetual grid's fills are paired by what they did (the label of the lots they opened or
    closed), a candle's of one label together (an end's market close, a stop closing several
    lots): on paper, with its funding, none differs."""
    from conftest import FUNDING
    from paper_run import perp_paper_trader

    from engine.data import load_funding
    from engine.risk import RiskLimits

    funding = load_funding(shared_file(FUNDING))
    cfg = SystemConfig(name=f"perp parity {strategy}", symbol="BTC/USDT:USDT", market="perpetual", timeframe="5m",
                       strategy=strategy, params=params, capital=10_000.0)
    alone = RiskLimits(atr_jump=1e9, max_symbol_share=float("inf"), max_total_share=float("inf"))  # (its account)
    trader, clock = perp_paper_trader(btc5m.slice(0, 1_501), cfg, tmp_path, warmup=60, funding=funding, limits=alone)
    asyncio.run(drive(trader, clock, int(btc5m.time[1_499])))
    asyncio.run(trader._save())
    r = parity(cfg, tmp_path, btc5m, funding)
    assert r.system_fills == r.backtest_fills == r.matched > 10 and r.differences == [], r.text()
    assert r.gap == pytest.approx(0.0, abs=1e-6)
    assert r.system_equity == pytest.approx(trader.strategy.books(r.last_close)["equity"], rel=1e-12)
    if "stop_top" in params:
        assert trader.strategy.ended == "STOP_TOP"
    # a take-profit the system never made, and the funding its books paid twice as much: each is
    # named, with the money it accounts for, and they add up to the gap
    path = tmp_path / "journal" / f"{cfg.slug}.jsonl"
    records, _ = read_jsonl(path)
    gone = next(x for x in records if x["type"] == "fill" and x["role"].startswith("TAKE_PROFIT"))
    path.write_text("".join(json.dumps(x) + "\n" for x in records if x is not gone))
    r = parity(cfg, tmp_path, btc5m, funding)
    (d,) = [d for d in r.differences if d.kind == "backtest only"]
    assert d.backtest.label == gone["trades"][0][0] and d.backtest.qty == pytest.approx(gone["qty"])
    assert d.money == pytest.approx(-d.backtest.effect(r.last_close)) and "level" not in d.text()
    assert sum(x.money for x in r.differences) == pytest.approx(r.gap, abs=1e-6)


def test_a_live_futures_grid_on_the_fake_binance_futures_names_what_the_exchange_did_otherwise(btc5m, tmp_path):
    """A long futures grid live on the fake USDT-M: its starting position's market order fills at
    the exchange's price, not the backtest's open plus slippage; the funding the account was
    charged is the exchange's (its rates read for the report, the paid amounts for the books).
    Each difference is named and they add up to the gap; the run ends with the invariants."""
    from conftest import FUNDING
    from fake_futures import FakeBinanceFutures

    from engine.data import load_funding
    from engine.exchange.live import CcxtExchange
    from engine.parity import system_funding
    from engine.risk import RiskGate, RiskLimits
    from engine.runtime.trader import Trader

    c = btc5m.slice(0, 800)
    f = load_funding(shared_file(FUNDING))
    fake = FakeBinanceFutures({"BTCUSDT": np.c_[c.time, c.open, c.high, c.low, c.close, c.volume]}, c.timeframe_ms,
                              keys={"k": "s"}, balances={"USDT": 10_000.0}, cursor=300, slow_seconds=1.0,
                              funding=list(zip(f.time.tolist(), f.rate.tolist(), strict=True)))
    fake.start()
    cfg = SystemConfig(name="live futures parity", symbol="BTC/USDT:USDT", market="perpetual", timeframe="5m",
                       strategy="futures-grid", mode="live", dry_run=False, capital=10_000.0,
                       params={"direction": "long", "leverage": 2.0, "range_pct": 0.025, "levels": 11,
                               "maker_fee": -0.00005, "taker_fee": 0.0002})  # (the fake's: VIP 9, a rebate)
    client = CcxtExchange("binance", market="perpetual", base_url=fake.url, api_key="k", secret="s", timeout_ms=1000,
                          backoff=0.01, retries=3, throttle=False)
    alone = RiskLimits(atr_jump=1e9, max_symbol_share=float("inf"), max_total_share=float("inf"))
    trader = Trader(cfg, client, RiskGate(alone), tmp_path)

    async def go():
        await trade_candles(trader, fake, 120)
        await trader._save()
        return (await system_candles(cfg, tmp_path, base_url=fake.url),
                await system_funding(cfg, tmp_path, base_url=fake.url))

    try:
        (candles, where), funding = asyncio.run(go())
        assert_invariants(trader, fake)
    finally:
        fake.stop()
    assert funding is not None and len(funding) > 0
    r = parity(cfg, tmp_path, candles, funding, candles_from=where)
    assert r.system_fills > 30 and r.matched > 30, r.text(40)
    assert r.system_equity == pytest.approx(trader.strategy.books(r.last_close)["equity"], abs=1e-6)
    assert sum(d.money for d in r.differences) == pytest.approx(r.gap, abs=1e-6)
    start = r.first + 5 * 60_000  # the starting position, at the next candle's open
    (market,) = [d for d in r.differences if d.time == start and d.system and d.system.label == "BUY_OPEN_LONG"]
    assert market.kind == "price, fee" and market.system.price < market.backtest.price  # (no slippage at its touch)
    assert "BUY_OPEN_LONG" in r.text() and where == "binance's BTC/USDT:USDT 5m candles"
